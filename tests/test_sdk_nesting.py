"""The LLM span is the parent of the spans opened inside the call (an HTTP client instrumentation's)."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from llmmeter_collector.devtools.fakeprovider import FakeProvider
from tests.sdk_support import llm_spans

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def httpx_traced() -> Any:
    """The real HTTP client instrumentation, for httpx and httpx2 (which recent openai/anthropic use)."""
    instrumentors = [HTTPXClientInstrumentor(), HTTPX2ClientInstrumentor()]
    for instrumentor in instrumentors:
        instrumentor.instrument()
    yield
    for instrumentor in instrumentors:
        instrumentor.uninstrument()


@pytest.mark.parametrize("stream", [False, True])
def test_http_request_span_is_a_child_of_the_llm_span(
    fake: FakeProvider, instrumented, httpx_traced, spans, stream
) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=stream)
    if stream:
        for _ in result:
            pass
    (llm,) = llm_spans(spans)
    http = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name.endswith("httpx")]
    assert http, [s.name for s in spans.get_finished_spans()]
    for span in http:
        assert span.parent is not None and span.parent.span_id == llm.context.span_id
        assert span.context.trace_id == llm.context.trace_id


@pytest.mark.parametrize("stream", [False, True])
def test_async_http_request_span_is_a_child_of_the_llm_span(
    fake: FakeProvider, instrumented, httpx_traced, spans, stream
) -> None:  # type: ignore[no-untyped-def]
    async def call() -> None:
        client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="x")
        result = await client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=stream)
        if stream:
            async for _ in result:
                pass

    asyncio.run(call())
    (llm,) = llm_spans(spans)
    http = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name.endswith("httpx")]
    assert http
    for span in http:
        assert span.parent is not None and span.parent.span_id == llm.context.span_id


def _anthropic_call(fake: FakeProvider, use_async: bool, stream: bool) -> None:
    kwargs: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": MSG, "stream": stream}
    if not use_async:
        result = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x").messages.create(**kwargs)
        if stream:
            for _ in result:
                pass
        return

    async def call() -> None:
        client = anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="x")
        result = await client.messages.create(**kwargs)
        if stream:
            async for _ in result:
                pass

    asyncio.run(call())


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropics_own_span_is_a_non_billable_child_of_the_llm_span(
    fake: FakeProvider, instrumented, httpx_traced, spans, use_async, stream
) -> None:  # type: ignore[no-untyped-def]
    _anthropic_call(fake, use_async, stream)
    (llm,) = llm_spans(spans)
    finished = spans.get_finished_spans()
    native = [s for s in finished if "anthropic" in s.instrumentation_scope.name]
    assert native, [(s.name, s.instrumentation_scope.name) for s in finished]  # anthropic 2.x traces itself
    for span in native:
        assert span.parent is not None and span.parent.span_id == llm.context.span_id
        assert span.context.trace_id == llm.context.trace_id
        if span.attributes.get("gen_ai.operation.name") == "chat":
            assert span.attributes["llmmeter.billable"] is False
    http = [s for s in finished if s.instrumentation_scope.name.endswith("httpx")]
    assert http and all(s.parent is not None for s in http)
    assert {s.parent.span_id for s in http} <= {llm.context.span_id} | {s.context.span_id for s in native}
