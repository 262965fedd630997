"""Real peer instrumentations' exports, replayed into a real collector: one row per provider call, the token
classes the fake provider answered, and the catalog's price of them.

The fixtures were captured by ``tests/interop/capture.py`` from each peer's real library (its version is in
the fixture) calling the fake provider with a known usage. Where a peer is known not to report a token class
(``GAPS``), the row carries what the peer reported, is marked ``usage_missing`` with the missing classes, and is
priced on what it reported: the test states that cost effect instead of hiding it.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import anthropic
import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .interop.fixtures import Fixture, edited, load, replay

FIXTURES = load(duplicates=False)

# (peer, case) -> token classes the peer does not report in that case, checked against the captures (and
# listed in docs/instrumentations.md). Everything not listed must come out exact.
GAPS: dict[tuple[str, str], frozenset[str]] = {
    ("otel-openai-v2", "openai-plain"): frozenset({"cache_read", "reasoning"}),
    ("otel-openai-v2", "openai-stream"): frozenset({"cache_read", "reasoning"}),
    ("openllmetry", "openai-stream"): frozenset({"reasoning"}),
    ("openlit", "openai-plain"): frozenset({"reasoning"}),
    ("openlit", "openai-stream"): frozenset({"reasoning"}),
}
# (peer, case) -> tokens a peer miscounts, by class (not corrected: documented in docs/instrumentations.md).
# OpenLLMetry adds message_start's placeholder output_tokens=1 to the stream's final cumulative count.
MISCOUNTS: dict[tuple[str, str], dict[str, int]] = {("openllmetry", "anthropic-stream"): {"output": 1}}
# (peer, case) whose stream flag is checked true; the others may not say a call streamed (it costs the same).
STREAM_FLAG = frozenset(
    {
        ("openllmetry", "openai-stream"),  # gen_ai.is_streaming
        ("anthropic-sdk", "anthropic-stream"),
        ("openinference", "openai-stream"),  # llm.invocation_parameters {"stream": true}
        ("openinference", "anthropic-stream"),
    }
)


def expected_usage(fixture: Fixture) -> dict[str, int]:
    """The token classes the row must have: the provider's answer less what the peer cannot report."""
    usage = fixture.truth["usage"]
    full = {
        "input": usage["input_tokens"],
        "output": usage["output_tokens"],
        "cache_read": usage.get("cached_tokens", 0),
        "cache_write": usage.get("cache_creation_input_tokens", 0),
        "reasoning": usage.get("reasoning_tokens", 0),
    }
    for missing in GAPS.get((fixture.peer, fixture.case), frozenset()):
        full[missing] = 0
    for name, extra in MISCOUNTS.get((fixture.peer, fixture.case), {}).items():
        full[name] += extra
    return full


def _rows(running: BackgroundCollector) -> list[dict[str, Any]]:
    collector = running.collector
    with psycopg.connect(collector.dsn, options=f"-c search_path={collector.schema}") as conn:
        cur = conn.execute(
            "SELECT provider, model, operation, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
            " reasoning_tokens, cost_usd, usage_missing, streaming, reported_cost_usd FROM llm_calls ORDER BY ts"
        )
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _price(running: BackgroundCollector, fixture: Fixture, tokens: dict[str, int]) -> Decimal:
    call = LlmCall(
        trace_id="0" * 32,
        span_id="0" * 16,
        start_ns=time.time_ns(),
        end_ns=time.time_ns(),
        provider=fixture.truth["provider"],
        operation="chat",
        request_model=fixture.truth["model"],
        usage=Usage(
            input_tokens=tokens["input"],
            output_tokens=tokens["output"],
            cache_read_tokens=tokens["cache_read"],
            cache_write_tokens=tokens["cache_write"],
            reasoning_tokens=tokens["reasoning"],
        ),
    )
    cost = running.collector.catalog.price(call)
    assert cost is not None, f"the catalog has no price for {fixture.truth['model']}: pick a priced model"
    return cost.total


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.id for f in FIXTURES])
def test_a_peer_capture_becomes_one_exact_priced_row(
    collector: BackgroundCollector, fixture: Fixture, encoding: str
) -> None:
    answers = replay(collector.url, fixture, encoding)
    assert all(not a.get("partialSuccess") for a in answers), answers
    rows = _rows(collector)
    assert len(rows) == fixture.truth["provider_calls"] == 1, rows
    row = rows[0]
    tokens = expected_usage(fixture)
    assert (row["provider"], row["model"]) == (fixture.truth["provider"], fixture.truth["model"])
    assert row["operation"] in ("chat", "generate_content")  # Gemini's: OpenLIT says chat, the others generate_content
    assert {
        "input": row["input_tokens"],
        "output": row["output_tokens"],
        "cache_read": row["cache_read_tokens"],
        "cache_write": row["cache_write_tokens"],
        "reasoning": row["reasoning_tokens"],
    } == tokens
    if (fixture.peer, fixture.case) in STREAM_FLAG:
        assert row["streaming"] is True
    else:
        assert row["streaming"] <= fixture.truth["streaming"]  # never a plain call said streamed
    assert row["cost_usd"] == _price(collector, fixture, tokens)
    assert row["usage_missing"] is ((fixture.peer, fixture.case) in GAPS)
    assert row["reported_cost_usd"] is None  # OpenLIT's 0 for a model its price list lacks is not "free"


def test_every_peer_was_captured() -> None:
    """The fixtures cover the peers the compatibility table documents (a peer that failed to capture shows here)."""
    peers = {f.peer for f in FIXTURES}
    assert peers == {
        "otel-openai-v2",
        "otel-google-genai",
        "anthropic-sdk",
        "openllmetry",
        "openlit",
        "openinference",
        "langfuse",
        "logfire",
    }


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropics_own_tracing_live_is_one_exact_priced_row(
    collector: BackgroundCollector, fake: FakeProvider, stream: bool
) -> None:
    """The one peer that co-installs with the test dependencies (anthropic >= 2 traces itself), run live."""
    fixture = next(f for f in FIXTURES if f.id == f"anthropic-sdk/anthropic-{'stream' if stream else 'plain'}")
    usage = fixture.truth["usage"]
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x", max_retries=0)
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
    try:
        answer = client.messages.create(
            model=fixture.truth["model"],
            max_tokens=1024,
            messages=[{"role": "user", "content": "Say something short about the sea."}],
            stream=stream,
            extra_headers={"x-fake-usage": json.dumps(usage)},
        )
        if stream:
            for _ in answer:  # type: ignore[union-attr]
                pass
    finally:
        stop_export(processor)
    rows = _rows(collector)
    assert len(rows) == 1, rows
    tokens = expected_usage(fixture)
    assert (rows[0]["input_tokens"], rows[0]["cache_read_tokens"], rows[0]["cache_write_tokens"]) == (
        tokens["input"],
        tokens["cache_read"],
        tokens["cache_write"],
    )
    assert rows[0]["output_tokens"] == tokens["output"] and rows[0]["usage_missing"] is False
    assert rows[0]["cost_usd"] == _price(collector, fixture, tokens)


def test_langfuse_cost_details_are_kept_as_the_reported_cost(collector: BackgroundCollector) -> None:
    """Langfuse sends the cost it computed as a JSON string; it is kept beside llmmeter's own price."""
    source = next(f for f in FIXTURES if f.id == "langfuse/openai-plain")
    cost = {"key": "langfuse.observation.cost_details", "value": {"stringValue": '{"input": 0.001, "total": 0.0025}'}}
    replay(collector.url, edited(source, lambda attrs: [*attrs, cost]))
    (row,) = _rows(collector)
    assert row["reported_cost_usd"] == Decimal("0.0025")
    assert row["cost_usd"] == _price(collector, source, expected_usage(source))
