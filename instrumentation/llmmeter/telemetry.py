"""The tracer, meter and GenAI instruments llmmeter emits with, and the OTLP export it sets up.

``configure()`` installs an OTLP/HTTP exporter (standard ``OTEL_EXPORTER_OTLP_*`` variables respected,
default ``http://localhost:4318``) only when the app has not set a tracer or meter provider itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from llmmeter import recorder, semconv, spanids

SCOPE_NAME = "llmmeter"
try:
    from importlib.metadata import version as _version

    SCOPE_VERSION = _version("llmmeter")
except Exception:  # pragma: no cover - not installed as a distribution
    SCOPE_VERSION = "0.0.0"

DEFAULT_ENDPOINT = "http://localhost:4318"


@dataclass(slots=True)
class Instruments:
    """Everything the hot path needs, created once per ``instrument()``."""

    tracer: Tracer
    meter: Meter
    metrics: recorder.CallMetrics  # the GenAI client histograms, recorded off the call path
    ids: spanids.ReservedIds | None = None  # the tracer's id generator: hands out ids reserved on the call path


def configure(*, service_name: str | None = None, endpoint: str | None = None, export_metrics: bool = True) -> bool:
    """Install OTLP/HTTP export unless the app already set providers. Returns True if it installed one."""
    from opentelemetry.sdk.resources import Resource

    installed = False
    base = (endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    attrs = {"service.name": service_name} if service_name else {}
    resource = Resource.create(attrs)

    app_traces = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    if not app_traces:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if endpoint or not traces_endpoint:
            traces_endpoint = base + "/v1/traces"
        provider = TracerProvider(resource=resource)
        span_exporter = OTLPSpanExporter(endpoint=traces_endpoint)
        _log_failures_once(span_exporter, "spans", traces_endpoint)
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(provider)
        installed = True

    # Metrics follow the app: its meter provider when it set one; none exported when OTEL_METRICS_EXPORTER=none
    # or when the app configured tracing itself and no meter provider (it chose what to export).
    metrics_off = os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none" or app_traces
    if export_metrics and not metrics_off and _is_default_meter_provider(metrics.get_meter_provider()):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        metrics_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        if endpoint or not metrics_endpoint:
            metrics_endpoint = base + "/v1/metrics"
        metric_exporter = OTLPMetricExporter(endpoint=metrics_endpoint)
        _log_failures_once(metric_exporter, "metrics", metrics_endpoint)
        reader = PeriodicExportingMetricReader(metric_exporter)
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
        installed = True
    return installed


class _FailingExports(logging.Filter):
    """One line when an exporter llmmeter installed starts failing (the endpoint is down), then silence until an
    export succeeds again: the OTLP exporters log every retry of every export, every few seconds."""

    def __init__(self, signal: str, endpoint: str) -> None:
        super().__init__()
        self.signal = signal
        self.endpoint = endpoint
        self.failing = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if self.failing:
            return False
        self.failing = True
        reason = record.getMessage()[:200]
        record.msg = "llmmeter: cannot export %s to %s (%s); not logged again until an export succeeds"
        record.args = (self.signal, self.endpoint, reason)
        return True

    def succeeded(self) -> None:
        if self.failing:
            self.failing = False
            logging.getLogger("llmmeter").info("llmmeter: exporting %s to %s again", self.signal, self.endpoint)


def _log_failures_once(exporter: Any, signal: str, endpoint: str) -> None:
    """Install ``_FailingExports`` on the exporter's logger and reset it whenever ``exporter`` exports."""
    once = _FailingExports(signal, endpoint)
    logging.getLogger(type(exporter).__module__).addFilter(once)
    export = exporter.export

    def export_then_reset(*args: Any, **kwargs: Any) -> Any:
        result = export(*args, **kwargs)
        if getattr(result, "name", "") == "SUCCESS":
            once.succeeded()
        return result

    exporter.export = export_then_reset


def _is_default_meter_provider(provider: object) -> bool:
    return isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider"


def flush(timeout_millis: int = 5000) -> None:
    """Export everything buffered now (e.g. before a short script exits)."""
    recorder.drain()
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush(timeout_millis)


def create_instruments() -> Instruments:
    tracer = trace.get_tracer(SCOPE_NAME, SCOPE_VERSION)
    meter = metrics.get_meter(SCOPE_NAME, SCOPE_VERSION)
    call_metrics = recorder.CallMetrics(
        meter,
        token_usage=meter.create_histogram(
            semconv.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(semconv.TOKEN_USAGE_BUCKETS),
        ),
        duration=meter.create_histogram(
            semconv.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS),
        ),
        time_to_first_chunk=meter.create_histogram(
            semconv.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS),
        ),
    )
    return Instruments(tracer=tracer, meter=meter, metrics=call_metrics, ids=spanids.adopt(tracer))
