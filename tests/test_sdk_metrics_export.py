"""Metrics follow the app: OTEL_METRICS_EXPORTER=none, or an app that set up tracing itself, starts no exporter."""

from __future__ import annotations

import os
import subprocess
import sys

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
