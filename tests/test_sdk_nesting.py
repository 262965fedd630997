"""The LLM span is the parent of the spans opened inside the call (an HTTP client instrumentation's)."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from llmmeter_collector.fakeprovider import FakeProvider
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
