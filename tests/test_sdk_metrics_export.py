"""Metrics follow the app: OTEL_METRICS_EXPORTER=none, or an app that set up tracing itself, starts no exporter
and makes no export attempt; an endpoint that is down is logged once per outage, not once per retry."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = """
import threading
from opentelemetry import metrics
{setup}
import llmmeter
llmmeter.instrument()
exporting = [t.name for t in threading.enumerate() if "Metric" in t.name or "OtelPeriodic" in t.name]
print(type(metrics.get_meter_provider()).__name__, exporting)
"""

APP_TRACING = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
"""


def _run(setup: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(env, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(setup=setup)], env=environ, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_default_starts_the_metrics_exporter() -> None:
    assert _run("") == "MeterProvider ['OtelPeriodicExportingMetricReader']"


def test_metrics_exporter_none_starts_no_exporter() -> None:
    assert _run("", OTEL_METRICS_EXPORTER="none") == "_ProxyMeterProvider []"


def test_an_app_that_set_up_tracing_gets_no_metrics_exporter_it_did_not_ask_for() -> None:
    assert _run(APP_TRACING) == "_ProxyMeterProvider []"


# An app making calls for a while with a short export interval (metric points every 0.2 s).
BUSY_APP = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
import llmmeter
llmmeter.instrument()
from opentelemetry import metrics
counter = metrics.get_meter("app").create_counter("app.requests")
for _ in range({rounds}):
    counter.add(1)
    time.sleep(0.2)
    sys.stdout.write("tick\\n"); sys.stdout.flush()
    sys.stdin.readline()  # the test says when to go on
"""


class _Receiver:
    """An OTLP/HTTP endpoint counting what is posted to it, started and stopped on one port."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.posts = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.posts += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


def _busy_app(receiver: _Receiver, rounds: int, between: Callable[[int], None], **env: str) -> str:
    """Run BUSY_APP against ``receiver``'s port, calling ``between(round)`` after each round; its stderr."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(
        env, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}", OTEL_METRIC_EXPORT_INTERVAL="200"
    )
    app = subprocess.Popen([sys.executable, "-c", BUSY_APP.format(rounds=rounds)], env=environ, text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert app.stdin is not None and app.stdout is not None
    for n in range(rounds):
        assert app.stdout.readline() == "tick\n"
        between(n)
        app.stdin.write("\n")
        app.stdin.flush()
    _, err = app.communicate(timeout=60)
    assert app.returncode == 0, err
    return err


def test_an_endpoint_that_is_down_is_logged_once_and_its_return_too() -> None:
    receiver = _Receiver()

    def wait_for_posts() -> None:
        deadline = time.monotonic() + 20
        while receiver.posts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    # down for 2 s (exports every 0.2 s, each retried), up until points arrive, down again for 2 s
    phases: dict[int, Callable[[], None]] = {
        0: lambda: time.sleep(2),
        1: lambda: (receiver.start(), wait_for_posts()),
        2: lambda: (receiver.stop(), time.sleep(2)),
    }
    err = _busy_app(receiver, 4, lambda n: phases.get(n, lambda: None)(), OTEL_EXPORTER_OTLP_METRICS_TIMEOUT="0.5")
    lines = [line for line in err.splitlines() if "127.0.0.1" in line and "metrics" in line]
    down = [line for line in lines if "cannot export metrics" in line]
    again = [line for line in lines if "exporting metrics" in line and "again" in line]
    assert receiver.posts > 0
    assert len(down) == 2, err  # once per outage, not once per retry or per export
    assert len(again) == 1, err
    assert [line for line in err.splitlines() if "opentelemetry.exporter" in line] == down  # nothing else


def test_metrics_exporter_none_makes_no_export_attempts() -> None:
    receiver = _Receiver()
    receiver.start()
    try:
        _busy_app(receiver, 5, lambda n: None, OTEL_METRICS_EXPORTER="none", OTEL_TRACES_EXPORTER="none")
        assert receiver.posts == 0
        _busy_app(receiver, 5, lambda n: None)  # the same app with the default: points are posted
        assert receiver.posts > 0
    finally:
        receiver.stop()
