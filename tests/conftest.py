"""Fixtures on real components: Postgres (the machine's or the embedded one), the fake provider,
a collector on a free port, and OpenTelemetry providers whose export each test can redirect."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import time_machine
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter
from llmmeter_collector.config import Settings
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

# Instants where calendar logic breaks: a month's first hour, its last hour, a Monday 00:00 UTC, a year's last
# hour. tests/test_calendar.py pins each; `LLMMETER_TEST_CLOCK=<one of them> make pytest` runs the suite there.
CALENDAR_EDGES = (
    "2027-02-01T00:20:00+00:00",
    "2026-11-30T23:40:00+00:00",
    "2026-12-28T00:00:00+00:00",
    "2026-12-31T23:30:00+00:00",
)


class _Clock:
    """The suite's travel under LLMMETER_TEST_CLOCK, and whether it is on now."""

    travel: time_machine.travel | None = None
    on = False


def pytest_configure(config: pytest.Config) -> None:
    """LLMMETER_TEST_CLOCK=<ISO instant>: the test process starts at that instant (the clock then ticks), so the
    suite can be run at a calendar edge. Before collection, so module-level ``now`` values are moved too."""
    config.addinivalue_line(
        "markers", "real_clock: talks to a process with its own clock (Prometheus, a collector subprocess); "
        "runs at the real time under LLMMETER_TEST_CLOCK"
    )  # fmt: skip
    clock = os.environ.get("LLMMETER_TEST_CLOCK")
    if clock:
        _Clock.travel = time_machine.travel(datetime.fromisoformat(clock), tick=True)
        _Clock.travel.start()
        _Clock.on = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under LLMMETER_TEST_CLOCK, a ``real_clock`` test (and its module's fixtures) runs at the real time."""
    if _Clock.travel is None:
        return
    real = item.get_closest_marker("real_clock") is not None
    if real == _Clock.on:
        (_Clock.travel.stop if real else _Clock.travel.start)()
        _Clock.on = not real


class _Router(SpanProcessor):
    """The one span processor of the test process; tests plug exporters in and out."""

    def __init__(self) -> None:
        self.processors: list[SpanProcessor] = []

    def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
        for p in self.processors:
            p.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for p in self.processors:
            p.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)


class _Exporter(InMemorySpanExporter):
    """Finished spans, read the way an app reads them: after ``force_flush()`` (llmmeter ends an LLM span
    off the call path; a flush ends every span whose call returned)."""

    def get_finished_spans(self):  # type: ignore[no-untyped-def]
        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        return super().get_finished_spans()


# litellm (tests/test_litellm.py) fetches its model cost map from GitHub at import unless told to use its own copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_ROUTER = _Router()
_METRIC_READER = InMemoryMetricReader()
trace.set_tracer_provider(TracerProvider())
trace.get_tracer_provider().add_span_processor(_ROUTER)  # type: ignore[attr-defined]
metrics.set_meter_provider(MeterProvider(metric_readers=[_METRIC_READER]))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """LLMMETER_TEST_DATABASE_URL when set (CI: the machine's Postgres), otherwise the embedded one."""
    url = os.environ.get("LLMMETER_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from llmmeter_collector.ledger.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")))
    yield embedded.start()
    embedded.stop()


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """A clean schema for one test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def settings(database_url: str, pg_schema: str) -> Settings:
    return Settings(database_url=database_url, database_schema=pg_schema, http_port=0)


@pytest.fixture
def collector(settings: Settings) -> Iterator[BackgroundCollector]:
    with BackgroundCollector(settings) as running:
        yield running


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_fake(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test, in memory."""
    exporter = _Exporter()
    processor = SimpleSpanProcessor(exporter)
    _ROUTER.processors.append(processor)
    yield exporter
    _ROUTER.processors.remove(processor)


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    _METRIC_READER.get_metrics_data()  # drop what earlier tests recorded (delta not needed: cumulative read)
    return _METRIC_READER


def export_to(exporter: SpanExporter) -> SimpleSpanProcessor:
    processor = SimpleSpanProcessor(exporter)
    _ROUTER.processors.append(processor)
    return processor


def stop_export(processor: SimpleSpanProcessor) -> None:
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]  # LLM spans of returned calls end
    _ROUTER.processors.remove(processor)


@pytest.fixture
def instrumented() -> Iterator[None]:
    """llmmeter.instrument() using the test process's providers; uninstrumented afterwards."""
    llmmeter.instrument(configure_export=False)
    yield
    llmmeter.uninstrument()
