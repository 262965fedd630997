"""The collector as a real process: SIGHUP reloads prices, SIGTERM finishes in-flight exports, commits them
and exits 0, and logs are one JSON object per line with LLMMETER_LOG_FORMAT=json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from .test_receiver import CHAT, PROTOBUF, export_request

pytestmark = pytest.mark.real_clock  # collector subprocesses, which keep the real time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "collector exited early"
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("collector did not become ready")


def _batch(n: int, spans: int = 50) -> bytes:
    request = export_request(*([{**CHAT, "gen_ai.request.model": "acme-private-7b"}] * spans), start_ns=time.time_ns())
    for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.trace_id = n.to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
    return request.SerializeToString()


def test_sighup_reloads_prices_and_sigterm_drains_and_commits(
    database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "version: 1\nmodels:\n  - model: acme-private-7b\n    input_per_mtok: 1\n    output_per_mtok: 2\n"
    )
    port = _free_port()
    env = {
        **os.environ,
        "LLMMETER_DATABASE_URL": database_url,
        "LLMMETER_DATABASE_SCHEMA": pg_schema,
        "LLMMETER_HTTP_PORT": str(port),
        "LLMMETER_GRPC_PORT": str(_free_port()),
        "LLMMETER_DATA_DIR": str(tmp_path / "data"),
        "LLMMETER_PRICES_FILE": str(prices),
        "LLMMETER_LOG_FORMAT": "json",
    }
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmmeter_collector"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_ready(url, proc)
        prices.write_text(
            "version: 1\nmodels:\n  - model: acme-private-7b\n    input_per_mtok: 3\n    output_per_mtok: 4\n"
        )
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while 'price_reloads_total{result="ok"} 1.0' not in httpx.get(url + "/metrics").text:
            assert time.monotonic() < deadline, "SIGHUP did not reload the prices"
            time.sleep(0.1)

        acked: list[int] = []
        lock = threading.Lock()

        def send(n: int) -> None:
            try:
                r = httpx.post(url + "/v1/traces", content=_batch(n), headers=PROTOBUF, timeout=30)
            except httpx.HTTPError:
                return  # refused after shutdown began: not acknowledged, the sender keeps it
            if r.status_code == 200:
                with lock:
                    acked.append(n)

        with psycopg.connect(database_url, options=f"-c search_path={pg_schema}") as blocker:
            blocker.execute("LOCK TABLE llm_rollup_minute IN ACCESS EXCLUSIVE MODE")  # exports wait in flight
            senders = [threading.Thread(target=send, args=(n,)) for n in range(1, 11)]
            for t in senders:
                t.start()
            deadline = time.monotonic() + 30
            while "llmmeter_collector_queue_spans 500.0" not in httpx.get(url + "/metrics").text:
                assert time.monotonic() < deadline, "exports did not reach the queue"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # 10 exports in flight, none committed yet
            time.sleep(0.5)
            late = threading.Thread(target=send, args=(99,))  # after the signal: refused, never acknowledged
            late.start()
            blocker.rollback()
        for t in [*senders, late]:
            t.join(60)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _, stderr = proc.communicate()

    assert sorted(acked) == list(range(1, 11))  # every in-flight export finished and was acknowledged
    with psycopg.connect(database_url, options=f"-c search_path={pg_schema}") as conn:
        stored = {
            int(row[0], 16): row[1] for row in conn.execute("SELECT trace_id, count(*) FROM llm_calls GROUP BY 1")
        }
        cost = conn.execute("SELECT DISTINCT cost_usd FROM llm_calls").fetchall()
    assert {n: stored.get(n) for n in acked} == {n: 50 for n in acked}  # every acknowledged span committed
    assert cost == [(Decimal(1000 * 3 + 100 * 4) / 10**6,)]  # priced with the reloaded file
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    messages = [line["message"] for line in lines]
    assert any("prices reloaded" in m for m in messages)
    assert any("queue drained and committed" in m for m in messages)
