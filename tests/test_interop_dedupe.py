"""Two instrumentations of one SDK in one app (captured by tests/interop/capture.py): one billable row per
provider call, at the true usage and price, whichever instrumentation traced it (the ledger's identity rule,
ingest/identity.py), in one export and in two exports in either order; and llmmeter beside the official
openai-v2, run live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import psycopg
import pytest
from opentelemetry import context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import llmmeter
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .interop.fixtures import load, replay
from .test_interop import _price, expected_usage

DUPLICATES = load(duplicates=True)
CASES = [pytest.param(f, id=f.id) for f in DUPLICATES]


def _ledger(collector: BackgroundCollector, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(collector.collector.dsn, options=f"-c search_path={collector.collector.schema}") as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]  # a literal query of this module


@pytest.mark.parametrize("fixture", CASES)
def test_a_call_traced_twice_is_billed_once(collector: BackgroundCollector, fixture) -> None:  # type: ignore[no-untyped-def]
    replay(collector.url, fixture)
    rows = _ledger(
        collector,
        "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd"
        " FROM llm_calls WHERE cost_usd IS NOT NULL AND usage_missing = false",
    )
    (total,) = _ledger(collector, "SELECT sum(cost_usd) FROM llm_calls")
    tokens = expected_usage(fixture)
    price = _price(collector, fixture, tokens)
    assert len(rows) == fixture.truth["provider_calls"] == 1
    assert rows[0][:5] == (
        tokens["input"],
        tokens["output"],
        tokens["cache_read"],
        tokens["cache_write"],
        tokens["reasoning"],
    )
    assert total is not None and total[0] == price  # the duplicate spans add nothing to the spend


def test_the_duplicate_pairs_were_captured() -> None:
    assert {f.peer for f in DUPLICATES} == {
        "llmmeter-with-openai-v2",
        "openllmetry-with-anthropic-sdk",
        "openinference-with-anthropic-sdk",
    }


@pytest.fixture(params=["openai-v2-first", "llmmeter-first"])
def llmmeter_and_openai_v2(request: pytest.FixtureRequest) -> Iterator[str]:
    """The official openai-v2 instrumentation and llmmeter in one app (it co-installs with the test dependencies),
    instrumented in either order: the one instrumented last wraps the other's wrapper (and its stream)."""
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    if request.param == "openai-v2-first":
        instrumentor.instrument()
        llmmeter.instrument(configure_export=False)
    else:
        llmmeter.instrument(configure_export=False)
        instrumentor.instrument()
    yield request.param
    llmmeter.uninstrument()
    instrumentor.uninstrument()


def _openai_call(fake: FakeProvider, usage: dict[str, int], use_async: bool, stream: bool) -> None:
    headers = {"x-fake-usage": json.dumps(usage)}
    kwargs: dict[str, Any] = {
        "model": "o4-mini",
        "messages": [{"role": "user", "content": "Say something short about the sea."}],
        "extra_headers": headers,
    }
    if stream:
        kwargs |= {"stream": True, "stream_options": {"include_usage": True}}
    if not use_async:
        before = context.get_current()
        answer = openai.OpenAI(base_url=fake.openai_base_url, api_key="x", max_retries=0).chat.completions.create(
            **kwargs
        )
        if stream:
            for _ in answer:
                pass
        assert context.get_current() is before  # the app's context is its own again, whoever wrapped whom
        return

    async def call() -> None:
        before = context.get_current()
        client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="x", max_retries=0)
        answer = await client.chat.completions.create(**kwargs)
        if stream:
            async for _ in answer:
                pass
        assert context.get_current() is before

    asyncio.run(call())


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_llmmeter_and_openai_v2_live_are_one_call_at_the_true_price(
    collector: BackgroundCollector, fake: FakeProvider, llmmeter_and_openai_v2: str, use_async: bool, stream: bool
) -> None:
    """Whichever wraps the other, and whether the app reads a stream sync or async: one row, with the usage the
    provider reported (cached and reasoning tokens included, which only llmmeter reads), at the true price."""
    fixture = next(f for f in DUPLICATES if f.id == f"llmmeter-with-openai-v2/openai-{'stream' if stream else 'plain'}")
    usage = fixture.truth["usage"]
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
    try:
        _openai_call(fake, usage, use_async, stream)
    finally:
        stop_export(processor)
    rows = _ledger(
        collector,
        "SELECT scope, input_tokens, output_tokens, cache_read_tokens, reasoning_tokens, usage_missing, cost_usd"
        " FROM llm_calls",
    )
    (duplicates,) = _ledger(collector, "SELECT count(*) FROM llm_call_duplicates")
    tokens = expected_usage(fixture)
    assert [row[:6] for row in rows] == [
        ("llmmeter", tokens["input"], tokens["output"], tokens["cache_read"], tokens["reasoning"], False)
    ]
    assert rows[0][6] == _price(collector, fixture, tokens)
    if llmmeter_and_openai_v2 == "openai-v2-first":  # openai-v2's span opened inside llmmeter's call: non-billable
        assert duplicates == (0,)
    else:  # llmmeter's span inside openai-v2's: one call by response id, openai-v2's span kept for audit
        assert duplicates == (1,)
