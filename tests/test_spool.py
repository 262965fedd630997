"""Postgres goes away mid-run: acknowledged exports are spooled on disk and replayed, never lost.

The collector reaches the real Postgres through a TCP proxy this test controls; ``cut()`` makes every
connection (new and open) fail as a dead server would, ``restore()`` lets them through again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from google.rpc import status_pb2

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF, export_request


class TcpProxy:
    """Forwards 127.0.0.1:<port> to Postgres (a TCP address, or the Unix socket path of the embedded server);
    cut() drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                if isinstance(self.target, str):
                    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    server.connect(self.target)
                else:
                    server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    port = parts.port or 5432
    if socket_dir.startswith("/"):  # the embedded Postgres listens on a Unix socket only
        p = TcpProxy(f"{socket_dir}/.s.PGSQL.{port}")
    else:
        p = TcpProxy((parts.hostname or "127.0.0.1", port))
    yield p
    p.close()


def _via(database_url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(database_url)
    netloc = (parts.username + "@" if parts.username else "") + f"127.0.0.1:{proxy.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _rows(database_url: str, schema: str) -> int:
    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
        calls = conn.execute("SELECT count(*) FROM llm_calls").fetchone()
        rolled = conn.execute("SELECT coalesce(sum(calls), 0) FROM llm_rollup_hour").fetchone()
    assert calls is not None and rolled is not None
    assert calls[0] == rolled[0], "rows and rollups disagree"
    return int(calls[0])


_BASE_NS = time.time_ns()


def _export(url: str, span_offset: int) -> httpx.Response:
    """Export number ``span_offset``: the same number always sends the same span (a retry)."""
    request = export_request(*[{**CHAT, "llmmeter.feature": f"f{span_offset}"}], start_ns=_BASE_NS + span_offset)
    request.resource_spans[0].scope_spans[0].spans[0].span_id = span_offset.to_bytes(8, "big")
    return httpx.post(url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF, timeout=30)


def _wait(predicate, what: str, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_exports_acknowledged_during_an_outage_are_spooled_and_replayed(
    settings: Settings, database_url: str, pg_schema: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    via = Settings(**{**settings.__dict__, "database_url": _via(database_url, proxy), "spool_dir": str(tmp_path)})
    with BackgroundCollector(via) as running:
        assert _export(running.url, 1).status_code == 200
        assert _rows(database_url, pg_schema) == 1
        proxy.cut()
        acked = [_export(running.url, n).status_code for n in (2, 3, 4)]
        assert acked == [200, 200, 200]
        assert _rows(database_url, pg_schema) == 1  # not in Postgres yet: on disk
        assert list(tmp_path.glob("*.calls.jsonl"))
        # not ready (the ledger is not being written) but still accepting into the spool, and saying why
        ready = httpx.get(running.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["postgres"] is False and ready.json()["spool_bytes"] > 0
        assert ready.json()["accepting"] is True and ready.json()["reasons"] == ["storage_unreachable"]
        metrics = httpx.get(running.url + "/metrics").text
        assert "llmmeter_collector_postgres_up 0.0" in metrics
        assert "llmmeter_collector_spooled_calls_total 3.0" in metrics
        assert 'llmmeter_collector_storage_problem{reason="storage_unreachable"} 1.0' in metrics
        assert "llmmeter_collector_spool_bytes 0.0" not in metrics
        proxy.restore()
        _wait(lambda: not list(tmp_path.glob("*.calls.jsonl")), "the spool to be replayed")
        assert _rows(database_url, pg_schema) == 4
        assert _export(running.url, 3).status_code == 200  # a retried export after the replay: still once
        assert _rows(database_url, pg_schema) == 4
        text = httpx.get(running.url + "/metrics").text
        calls = sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("llmmeter_calls_total{")
        )
        assert calls == 4
        assert "llmmeter_collector_spool_bytes 0.0" in text
        assert 'llmmeter_collector_storage_problem{reason="storage_unreachable"} 0.0' in text
        _wait(lambda: httpx.get(running.url + "/readyz", timeout=10).json()["reasons"] == [], "readiness")


def test_a_spool_left_by_a_stopped_collector_is_replayed_by_the_next(
    settings: Settings, database_url: str, pg_schema: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    via = Settings(**{**settings.__dict__, "database_url": _via(database_url, proxy), "spool_dir": str(tmp_path)})
    with BackgroundCollector(via) as running:
        proxy.cut()
        assert [_export(running.url, n).status_code for n in (1, 2)] == [200, 200]
    assert len(list(tmp_path.glob("*.calls.jsonl"))) >= 1  # shut down while Postgres was away: kept on disk
    proxy.restore()
    with BackgroundCollector(via):
        _wait(lambda: not list(tmp_path.glob("*.calls.jsonl")), "the next collector to replay the spool")
    assert _rows(database_url, pg_schema) == 2


def test_without_a_spool_an_outage_is_refused_as_retryable_and_not_ready(
    settings: Settings, database_url: str, pg_schema: str, proxy: TcpProxy
) -> None:
    via = Settings(**{**settings.__dict__, "database_url": _via(database_url, proxy), "spool": False})
    with BackgroundCollector(via) as running:
        proxy.cut()
        refused = _export(running.url, 1)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "storage unavailable" in status_pb2.Status.FromString(refused.content).message
        assert httpx.get(running.url + "/readyz", timeout=10).status_code == 503
        proxy.restore()
        _wait(lambda: httpx.get(running.url + "/readyz", timeout=10).status_code == 200, "readiness")
        assert _export(running.url, 1).status_code == 200  # the sender's retry
        assert _rows(database_url, pg_schema) == 1


def test_a_full_spool_refuses_with_503(
    settings: Settings, database_url: str, pg_schema: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    tiny = Settings(
        **{
            **settings.__dict__,
            "database_url": _via(database_url, proxy),
            "spool_dir": str(tmp_path),
            "spool_max_bytes": 100,
        }
    )
    with BackgroundCollector(tiny) as running:
        proxy.cut()
        refused = _export(running.url, 1)
        assert refused.status_code == 503
        assert "spool is full" in status_pb2.Status.FromString(refused.content).message
        ready = httpx.get(running.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and "spool_full" in ready.json()["reasons"]
        assert ready.json()["accepting"] is False
        proxy.restore()
    assert _rows(database_url, pg_schema) == 0
