"""The LiteLLM hook (llmmeter.litellm), run with the real litellm Router against the fake provider and the real
collector: every call LiteLLM makes is one priced ledger row with its cache and reasoning tokens and attribution,
once even when llmmeter's OpenAI instrumentation traces it too; the budget policy swaps the model or refuses the
call (nothing reaches the provider, no retries), as the SDK guard does."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import litellm
import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter
from llmmeter import guard, semconv
from llmmeter.litellm import BudgetExceeded, LLMMeterHook
from llmmeter_collector.config import Settings
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .test_guard import POLICY  # the SDK guard's policy: the same rules apply to LiteLLM

HI = [{"role": "user", "content": "hi"}]  # 11 input tokens, 20 output tokens at the fake provider
USAGE = {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 1000, "reasoning_tokens": 50}
ANTHROPIC_USAGE = {
    "input_tokens": 1500,
    "output_tokens": 200,
    "cached_tokens": 1000,
    "cache_creation_input_tokens": 300,
}


def _router(fake: FakeProvider) -> litellm.Router:
    def deployment(name: str, model: str, base: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": model, "api_base": base, "api_key": "x"}}

    return litellm.Router(
        model_list=[
            deployment("gpt-4o", "openai/gpt-4o", fake.openai_base_url),
            deployment("o3", "openai/o3", fake.openai_base_url),
            deployment("claude", "anthropic/claude-sonnet-4-5", fake.anthropic_base_url),
        ]
    )


@pytest.fixture
def hook() -> Iterator[LLMMeterHook]:
    installed = LLMMeterHook()
    litellm.callbacks = [installed]
    yield installed
    litellm.callbacks = []
    guard.disable()


def _rows(running: BackgroundCollector, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(running.collector.dsn, options=f"-c search_path={running.collector.schema}") as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]  # a literal query of this module


def _wait_rows(running: BackgroundCollector, count: int, where: str = "true") -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _rows(running, f"SELECT count(*) FROM llm_calls WHERE {where}")[0][0] >= count:
            return
        time.sleep(0.1)
    got = _rows(running, "SELECT request_model, usage_missing, error_type, response_id FROM llm_calls")
    raise AssertionError(f"the ledger did not get {count} calls: {got}")


def _price(running: BackgroundCollector, provider: str, model: str, **tokens: int) -> Decimal:
    call = LlmCall(
        trace_id="0" * 32,
        span_id="0" * 16,
        start_ns=time.time_ns(),
        end_ns=time.time_ns(),
        provider=provider,
        operation="chat",
        request_model=model,
        usage=Usage(**tokens),
    )
    cost = running.collector.catalog.price(call)
    assert cost is not None, f"the catalog has no price for {model}"
    return cost.total


def _flush_litellm() -> None:
    """LiteLLM runs success callbacks off the call path; wait until the spans they record have ended."""
    time.sleep(0.3)
    llmmeter.flush()


def test_router_calls_become_one_priced_row_each_with_their_tokens_and_attribution(
    collector: BackgroundCollector, fake: FakeProvider, hook: LLMMeterHook
) -> None:
    router = _router(fake)
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))

    async def calls() -> None:
        with llmmeter.attributes(project="shop"):
            await router.acompletion(
                model="o3",
                messages=HI,
                user="u-42",
                metadata={"llmmeter": {"feature": "search", "tags": {"team": "growth"}}},
                extra_headers={"x-fake-usage": json.dumps(USAGE)},
            )
            stream = await router.acompletion(
                model="gpt-4o", messages=HI, stream=True, metadata={"llmmeter": {"feature": "chat"}}
            )
            async for _ in stream:
                pass
            await router.acompletion(
                model="claude",
                messages=HI,
                max_tokens=200,
                extra_headers={"x-fake-usage": json.dumps(ANTHROPIC_USAGE)},
                metadata={"llmmeter": {"feature": "support"}},
            )

    async def failing() -> None:
        fake.fail_next(status=500)  # the first attempt fails, the Router's retry succeeds
        await router.acompletion(
            model="gpt-4o", messages=HI, num_retries=1, metadata={"llmmeter": {"feature": "retry"}}
        )
        fake.fail_next(status=500)
        with pytest.raises(litellm.InternalServerError):
            await router.acompletion(
                model="gpt-4o", messages=HI, num_retries=0, metadata={"llmmeter": {"feature": "fail"}}
            )

    try:
        asyncio.run(calls())
        asyncio.run(failing())
        with llmmeter.attributes(project="shop", feature="batch"):
            router.completion(model="gpt-4o", messages=HI)  # LiteLLM's synchronous path
        _flush_litellm()
    finally:
        stop_export(processor)
    _wait_rows(collector, 7)
    failures = _rows(
        collector, "SELECT feature, error_type, cost_usd FROM llm_calls WHERE error_type <> '' ORDER BY ts"
    )
    assert failures == [("retry", "InternalServerError", 0), ("fail", "InternalServerError", 0)]  # each attempt, once
    rows = _rows(
        collector,
        "SELECT provider, request_model, feature, project, user_id, input_tokens, output_tokens, cache_read_tokens,"
        " cache_write_tokens, reasoning_tokens, cost_usd, tags->>'team'"
        " FROM llm_calls WHERE error_type = '' AND feature <> 'retry' ORDER BY feature",
    )
    by_feature = {row[2]: row for row in rows}
    assert len(rows) == 4 and set(by_feature) == {"search", "chat", "support", "batch"}
    assert all(row[3] == "shop" for row in rows)  # the llmmeter.attributes block around the call

    o3 = by_feature["search"]
    assert o3[:10] == ("openai", "o3", "search", "shop", "u-42", 1200, 300, 1000, 0, 50)
    assert o3[10] == _price(
        collector, "openai", "o3", input_tokens=1200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=50
    )
    assert o3[11] == "growth"

    # the stream's usage is the provider's (the hook asked for it), not LiteLLM's own count
    stream = by_feature["chat"]
    assert stream[:10] == ("openai", "gpt-4o", "chat", "shop", "", 11, 20, 0, 0, 0)
    assert stream[10] == _price(collector, "openai", "gpt-4o", input_tokens=11, output_tokens=20)
    assert fake.requests[1].json["stream_options"] == {"include_usage": True}

    claude = by_feature["support"]
    assert claude[:10] == ("anthropic", "claude-sonnet-4-5", "support", "shop", "", 1500, 200, 1000, 300, 0)
    assert claude[10] == _price(
        collector,
        "anthropic",
        "claude-sonnet-4-5",
        input_tokens=1500,
        output_tokens=200,
        cache_read_tokens=1000,
        cache_write_tokens=300,
    )
    assert by_feature["batch"][:7] == ("openai", "gpt-4o", "batch", "shop", "", 11, 20)


def test_a_call_traced_by_the_hook_and_by_litellms_own_opentelemetry_logger_is_billed_once(
    collector: BackgroundCollector, fake: FakeProvider, hook: LLMMeterHook
) -> None:
    from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig

    # LiteLLM's logger exports its spans to the collector with a tracer provider of its own
    exporter = OTLPSpanExporter(endpoint=collector.url + "/v1/traces")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    litellm.callbacks = [hook, OpenTelemetry(config=OpenTelemetryConfig(exporter=exporter), tracer_provider=provider)]
    router = _router(fake)
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))

    async def search() -> None:
        await router.acompletion(model="o3", messages=HI, metadata={"llmmeter": {"feature": "search"}})
        await asyncio.sleep(0.5)  # LiteLLM's logger reports from a task of the loop: an app's loop goes on

    try:
        asyncio.run(search())
        router.completion(model="claude", messages=HI, metadata={"llmmeter": {"feature": "sync"}})
        _flush_litellm()
        provider.force_flush()
    finally:
        stop_export(processor)
        provider.shutdown()
    _wait_rows(collector, 2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _rows(collector, "SELECT count(*) FROM llm_call_duplicates")[0][0] < 2:
        time.sleep(0.1)
    rows = _rows(
        collector,
        "SELECT request_model, feature, input_tokens, output_tokens, cost_usd, error_type FROM llm_calls ORDER BY ts",
    )
    assert [r[:4] for r in rows[:2]] == [("o3", "search", 11, 20), ("claude-sonnet-4-5", "sync", 11, 20)]
    assert rows[0][4] == _price(collector, "openai", "o3", input_tokens=11, output_tokens=20)
    assert len(rows) == 2
    (duplicates,) = _rows(collector, "SELECT count(*) FROM llm_call_duplicates")[0]
    assert duplicates == 2  # LiteLLM's spans of the two answered calls: kept for audit, not billed


def test_the_budget_policy_swaps_and_refuses_router_calls(
    tmp_path: Path,
    settings: Settings,
    fake: FakeProvider,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with BackgroundCollector(Settings(**{**settings.__dict__, "budgets_refresh_seconds": 1})) as running:
        api = running.url + "/api/v1/budgets"
        # one gpt-4o call ("hi": 11 input, 20 output tokens) costs $0.0002275: the second search call is over
        assert httpx.post(
            api, json={"name": "search-team", "limit": "0.0002", "scope": {"feature": "search"}}
        ).is_success
        assert httpx.post(api, json={"name": "total", "limit": "1000"}).is_success
        path = tmp_path / "policy.yaml"
        path.write_text(POLICY)
        os.environ["LLMMETER_URL"] = running.url
        try:
            hook = LLMMeterHook(budget_policy=path)
        finally:
            del os.environ["LLMMETER_URL"]
        litellm.callbacks = [hook]
        processor = export_to(OTLPSpanExporter(endpoint=running.url + "/v1/traces"))
        try:
            _spend_and_refuse(fake, spans, caplog, api)
        finally:
            stop_export(processor)
            litellm.callbacks = []
            guard.disable()


def _spend_and_refuse(
    fake: FakeProvider, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture, api: str
) -> None:
    router = _router(fake)

    async def search(model: str = "gpt-4o") -> Any:
        return await router.acompletion(model=model, messages=HI, metadata={"llmmeter": {"feature": "search"}})

    guard.refresh_now()
    assert guard.state()["tripped"] == []
    asyncio.run(search())  # within budget: runs as asked, and spends the budget
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        _flush_litellm()
        if {b["name"]: b for b in httpx.get(api + "/status").json()["budgets"]}["search-team"]["state"] == "exceeded":
            break
    guard.refresh_now()
    assert guard.state()["tripped"] == ["search-team"]
    spans.clear()

    answer = asyncio.run(search())
    with llmmeter.attributes(feature="support"):
        asyncio.run(router.acompletion(model="gpt-4o", messages=HI))
    asyncio.run(search("o3"))
    assert [r.json["model"] for r in fake.requests] == ["gpt-4o", "gpt-4o-mini", "gpt-4o", "o3"]
    assert answer.model.startswith("gpt-4o-mini")
    _flush_litellm()
    swapped = next(s for s in spans.get_finished_spans() if s.attributes.get(semconv.FEATURE) == "search")
    assert swapped.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert swapped.attributes[semconv.REQUESTED_MODEL] == "gpt-4o"

    # the sync path cannot change a request: the swap is not applied, and the log says so once
    with caplog.at_level(logging.WARNING, logger="llmmeter"), llmmeter.attributes(feature="search"):
        router.completion(model="gpt-4o", messages=HI)
        router.completion(model="gpt-4o", messages=HI)
    assert fake.requests[-1].json["model"] == "gpt-4o"
    assert [r.getMessage() for r in caplog.records].count(
        "llmmeter: the budget policy swaps 'gpt-4o' for 'gpt-4o-mini', but LiteLLM's synchronous Router path cannot"
        " change a request's model; the call runs on 'gpt-4o' (use the async Router methods for model swaps)"
    ) == 1

    # the total budget over 100 %: every call is refused before it reaches the provider, at once and only once
    assert httpx.put(api + "/total", json={"limit": "0.0001"}).is_success
    guard.refresh_now()
    sent, started = len(fake.requests), time.monotonic()
    with pytest.raises(BudgetExceeded, match="total") as refused:
        asyncio.run(router.acompletion(model="gpt-4o", messages=HI))
    assert isinstance(refused.value, llmmeter.BudgetExceeded) and refused.value.budget == "total"
    with pytest.raises(BudgetExceeded, match="total"):
        router.completion(model="claude", messages=HI)
    assert len(fake.requests) == sent
    assert time.monotonic() - started < 2  # the Router did not retry with backoff
    _flush_litellm()
    assert not [s for s in spans.get_finished_spans() if s.status.status_code.name == "ERROR"]


def test_bad_attribution_metadata_is_logged_and_the_call_still_runs(
    fake: FakeProvider, hook: LLMMeterHook, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    router = _router(fake)
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        asyncio.run(router.acompletion(model="gpt-4o", messages=HI, metadata={"llmmeter": {"team": "x"}}))
        _flush_litellm()
    assert len(fake.requests) == 1
    assert "unknown key 'team'" in caplog.text
    (span,) = spans.get_finished_spans()  # reported, without the attribution it could not read
    assert span.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o"
