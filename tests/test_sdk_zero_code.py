"""Zero-code start: ``opentelemetry-instrument python app.py`` with the usual ``OTEL_*`` variables instruments
OpenAI, Anthropic, Gemini and LangChain through llmmeter's ``opentelemetry_instrumentor`` entry points, in an app
that never imports llmmeter; a real collector prices the calls."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import psycopg
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

# A plain app: the provider SDKs and LangChain, no llmmeter, no OpenTelemetry.
APP = """
import sys
import anthropic, openai
from google import genai
from langchain_openai import ChatOpenAI

fake = sys.argv[1]
openai.OpenAI(base_url=fake + "/v1", api_key="x").chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
anthropic.Anthropic(base_url=fake, api_key="x").messages.create(
    model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
gemini = genai.Client(api_key="x", http_options={"base_url": fake})  # kept: a dropped client closes its HTTP client
gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
ChatOpenAI(model="gpt-4o", base_url=fake + "/v1", api_key="x").invoke("hi")
print("done")
"""

LLMMETER_ENTRY_POINTS = {"llmmeter_openai", "llmmeter_anthropic", "llmmeter_google_genai", "llmmeter_langchain"}


def _run_instrumented(tmp_path: Path, collector: BackgroundCollector, fake: FakeProvider, **env: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMMETER_"))}
    environ.update(
        OTEL_SERVICE_NAME="zero-code-app",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        # the official openai-v2 and httpx instrumentations are installed beside llmmeter in the test environment
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="openai,httpx,httpx2",
    )
    environ.update(env)
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    done = subprocess.run([str(instrument), sys.executable, str(app), fake.url], env=environ, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "Traceback" not in done.stderr, done.stderr


def _calls(collector: BackgroundCollector, expected: int) -> list[tuple[object, ...]]:
    """The ledger's calls, once ``expected`` have arrived (the app's exporter flushes at exit; the collector
    commits right after)."""
    deadline = time.monotonic() + 20
    with psycopg.connect(collector.collector.dsn, options=f"-c search_path={collector.collector.schema}") as conn:
        while True:
            rows = conn.execute(
                "SELECT provider, model, scope, service_name, input_tokens > 0, cost_usd IS NOT NULL AND cost_usd > 0"
                " FROM llm_calls ORDER BY provider, model"
            ).fetchall()
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows


def test_an_app_that_never_imports_llmmeter_is_priced_under_opentelemetry_instrument(
    tmp_path: Path, collector: BackgroundCollector, fake: FakeProvider
) -> None:
    _run_instrumented(tmp_path, collector, fake)
    assert _calls(collector, 4) == [
        ("anthropic", "claude-sonnet-4-5", "llmmeter", "zero-code-app", True, True),
        ("gcp.gemini", "gemini-2.5-flash", "llmmeter", "zero-code-app", True, True),
        ("openai", "gpt-4o", "llmmeter", "zero-code-app", True, True),  # LangChain's call, priced once
        ("openai", "gpt-4o-mini", "llmmeter", "zero-code-app", True, True),
    ]


def test_an_instrumentation_can_be_turned_off_by_its_entry_point_name(
    tmp_path: Path, collector: BackgroundCollector, fake: FakeProvider
) -> None:
    _run_instrumented(
        tmp_path, collector, fake, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="openai,httpx,httpx2,llmmeter_anthropic"
    )
    # anthropic >= 2 traces itself: with llmmeter's Anthropic instrumentation off, that span is the priced one
    assert [row[:3] for row in _calls(collector, 4)] == [
        ("anthropic", "claude-sonnet-4-5", "com.anthropic.sdk.python"),
        ("gcp.gemini", "gemini-2.5-flash", "llmmeter"),
        ("openai", "gpt-4o", "llmmeter"),
        ("openai", "gpt-4o-mini", "llmmeter"),
    ]


def test_the_entry_points_are_registered_and_load_instrumentors() -> None:
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name.startswith("llmmeter")}
    assert set(found) == LLMMETER_ENTRY_POINTS
    for ep in found.values():
        assert issubclass(ep.load(), BaseInstrumentor)
