"""A collector (the real process) started while Postgres is down: it takes exports into the spool, says it is
not ready and why, then migrates and replays when Postgres comes up, storing each call exactly once.

Postgres here is a throwaway cluster of this test's own (initdb + pg_ctl as the postgres user, on a free port),
never the machine's server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from .test_collector_shutdown import _free_port
from .test_receiver import CHAT, PROTOBUF, export_request

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Cluster:
    """A Postgres cluster in a temporary directory, run as the ``postgres`` user; created stopped."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llmmeter-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(PG_BIN / "initdb", "-D", self.dir / "data", "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_postgres(self, *args: object) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            PG_BIN / "pg_ctl", "-D", self.dir / "data", "-o", options, "-l", self.dir / "log", "-w", "start"
        )

    def stop(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
             "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def stopped_cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.fail("this test needs Postgres 15's server binaries and runuser")
    cluster = Cluster()
    yield cluster
    cluster.stop()


_BASE_NS = time.time_ns()


def _export(url: str, span: int) -> httpx.Response:
    """Export number ``span``: the same number always sends the same span (a retry)."""
    request = export_request({**CHAT, "llmmeter.feature": f"f{span}"}, start_ns=_BASE_NS + span)
    request.resource_spans[0].scope_spans[0].spans[0].span_id = span.to_bytes(8, "big")
    return httpx.post(url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF, timeout=30)


def _until(predicate, what: str, seconds: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_started_while_postgres_is_down_it_spools_then_stores_each_call_once(
    stopped_cluster: Cluster, tmp_path: Path
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"
    env = {
        **os.environ,
        "LLMMETER_DATABASE_URL": stopped_cluster.url,
        "LLMMETER_HTTP_PORT": str(port),
        "LLMMETER_GRPC_PORT": "0",
        "LLMMETER_DATA_DIR": str(tmp_path / "data"),
        "LLMMETER_SPOOL_DIR": str(spool),
    }
    log = (tmp_path / "collector.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "llmmeter_collector"], env=env, stdout=log, stderr=log)
    try:
        _until(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, "the collector to listen")
        ready = httpx.get(url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["storage_unreachable"] and ready.json()["accepting"] is True
        assert [_export(url, n).status_code for n in (1, 2, 3)] == [200, 200, 200]  # durable in the spool
        assert _export(url, 2).status_code == 200  # a sender's retry of an export already spooled
        assert len(list(spool.glob("*.calls.jsonl"))) >= 1
        metrics = httpx.get(url + "/metrics").text
        assert 'llmmeter_collector_storage_problem{reason="storage_unreachable"} 1.0' in metrics
        assert "llmmeter_collector_spooled_calls_total 4.0" in metrics

        stopped_cluster.start()
        _until(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200, "readiness after Postgres is up")
        _until(lambda: not list(spool.glob("*.calls.jsonl")), "the spool to be replayed")
        with psycopg.connect(stopped_cluster.url) as conn:
            calls = conn.execute("SELECT count(*), count(DISTINCT span_id) FROM llm_calls").fetchone()
            rolled = conn.execute("SELECT sum(calls) FROM llm_rollup_hour").fetchone()
        assert calls == (3, 3) and rolled == (3,)  # each call exactly once, in the ledger and the rollups
        assert httpx.get(url + "/readyz", timeout=10).json()["reasons"] == []
        text = httpx.get(url + "/metrics").text
        counted = sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("llmmeter_calls_total{")
        )
        assert counted == 3
        assert _export(url, 4).status_code == 200  # and it goes on as usual
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    assert proc.returncode == 0
    assert b"storage problem storage_unreachable" in (tmp_path / "collector.log").read_bytes()
