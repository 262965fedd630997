"""Anthropic SDK instrumentation: messages create / stream=True / stream() helper, cache normalisation."""

from __future__ import annotations

import asyncio

import anthropic
import httpx2
import pytest
from anthropic.resources.messages.messages import Messages

import llmmeter
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from tests.sdk_support import llm_spans, only_span, points, usage_header

MSG = [{"role": "user", "content": "hello there"}]  # 12 input tokens
MODEL = "claude-haiku-4-5"
CACHE = usage_header(input_tokens=1200, output_tokens=300, cached_tokens=800, cache_creation_input_tokens=200,
                     cache_creation_1h_input_tokens=150, reasoning_tokens=50)  # fmt: skip


@pytest.fixture
def client(fake: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x", max_retries=3)


def _assert_normalised(attrs: dict) -> None:  # type: ignore[type-arg]
    # Anthropic reports input_tokens=200 (uncached); the convention's input includes reads and writes.
    assert attrs["gen_ai.usage.input_tokens"] == 1200
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 800
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 200
    assert attrs["llmmeter.usage.cache_creation_1h.input_tokens"] == 150
    assert attrs["gen_ai.usage.output_tokens"] == 300 and attrs["gen_ai.usage.reasoning.output_tokens"] == 50


def test_create_normalises_cache_tokens(client, instrumented, spans, metric_reader) -> None:  # type: ignore[no-untyped-def]
    tools = [
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
    ]
    question = [{"role": "user", "content": "weather?"}]
    message = client.messages.create(
        model="claude-opus-4-1", max_tokens=500, messages=question, tools=tools, extra_headers=CACHE
    )
    assert message.usage.input_tokens == 200  # the app sees Anthropic's own numbers, untouched
    attrs = only_span(spans)
    _assert_normalised(attrs)
    assert attrs["gen_ai.provider.name"] == "anthropic" and attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.response.id"] == message.id and attrs["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert attrs["llmmeter.tool.definitions"] == 1 and attrs["llmmeter.tool.calls"] == 1
    assert attrs["gen_ai.request.max_tokens"] == 500
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points(metric_reader, "gen_ai.client.token.usage")
              if p.attributes["gen_ai.request.model"] == "claude-opus-4-1"}  # fmt: skip
    assert tokens == {"input": 1200, "output": 300}


def test_sdk_native_span_is_not_billed_twice(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    client.messages.create(model=MODEL, max_tokens=100, messages=MSG)
    native = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name != "llmmeter"]
    ours = llm_spans(spans)
    assert len(ours) == 1
    for span in native:  # anthropic 2.x traces itself; its span must not be priced beside ours
        if span.attributes.get("gen_ai.operation.name") == "chat":
            assert span.attributes["llmmeter.billable"] is False


def test_stream_true_and_stream_helper(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    events = list(client.messages.create(model=MODEL, max_tokens=500, messages=MSG, stream=True, extra_headers=CACHE))
    assert events[0].type == "message_start" and isinstance(events[0].message.usage.input_tokens, int)
    with client.messages.stream(model=MODEL, max_tokens=500, messages=MSG, extra_headers=CACHE) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Fake answer") and final.usage.output_tokens == 300
    first, second = (dict(s.attributes) for s in llm_spans(spans))
    for attrs in (first, second):
        _assert_normalised(attrs)
        assert attrs["gen_ai.request.stream"] is True and attrs["gen_ai.response.time_to_first_chunk"] > 0


def test_helper_left_early_and_failed_stream(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MSG) as stream:
        for _ in stream.text_stream:
            break
    with (
        pytest.raises((anthropic.APIError, httpx2.HTTPError)),
        client.messages.stream(
            model=MODEL, max_tokens=100, messages=MSG, extra_headers={"x-fake-stream-fail-after": "4"}
        ) as stream,
    ):
        stream.until_done()
    early, failed = (dict(s.attributes) for s in llm_spans(spans))
    assert early["llmmeter.stream.closed_early"] is True
    assert early["gen_ai.usage.input_tokens"] == 12  # message_start had reported the input side
    assert failed["error.type"] and failed["llmmeter.provider_billed"] is True
    assert failed["gen_ai.usage.input_tokens"] == 12


def test_retries_count_tokens_and_http_errors(client, instrumented, spans, fake) -> None:  # type: ignore[no-untyped-def]
    fake.fail_next(429, count=2)
    client.messages.create(model=MODEL, max_tokens=100, messages=MSG)
    assert client.messages.count_tokens(model=MODEL, messages=MSG).input_tokens == 12
    assert only_span(spans)["llmmeter.retries"] == 2  # count_tokens is free: no span
    spans.clear()
    fake.fail_next(400, count=1)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=100, messages=MSG)
    attrs = only_span(spans)
    assert attrs["error.type"] == "BadRequestError" and attrs["http.response.status_code"] == 400
    assert attrs["llmmeter.provider_billed"] is False


def test_async_create_stream_and_helper(fake, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    aclient = anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="x")

    async def main() -> None:
        await aclient.messages.create(model=MODEL, max_tokens=100, messages=MSG, extra_headers=CACHE)
        stream = await aclient.messages.create(model=MODEL, max_tokens=100, messages=MSG, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        async for _ in stream:
            pass
        async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=MSG) as helper:
            final = await helper.get_final_message()
        assert final.usage.output_tokens == 20

    asyncio.run(main())
    found = [dict(s.attributes) for s in llm_spans(spans)]
    _assert_normalised(found[0])
    assert [a["gen_ai.usage.output_tokens"] for a in found[1:]] == [20, 20]


def test_raw_response_and_uninstrument(client, spans) -> None:  # type: ignore[no-untyped-def]
    original = Messages.create
    llmmeter.instrument(configure_export=False)
    try:
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=MSG)
        assert raw.parse().usage.output_tokens == 20
    finally:
        llmmeter.uninstrument()
    assert Messages.create is original
    assert only_span(spans)["gen_ai.usage.output_tokens"] == 20
