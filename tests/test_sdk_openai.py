"""OpenAI SDK instrumentation: every call shape, sync and async, against the fake provider."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import Iterator

import httpx2
import openai
import pytest
from openai.resources.chat.completions.completions import AsyncCompletions, Completions

import llmmeter
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from tests.sdk_support import instrumented_with, llm_spans, only_span, points, usage_header

MSG = [{"role": "user", "content": "hello there"}]  # 2 words + 10 = 12 input tokens


@pytest.fixture
def client(fake: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="x", max_retries=3)


@pytest.fixture
def aclient(fake: FakeProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="x", max_retries=3)


@pytest.fixture
def stream_usage() -> Iterator[None]:
    yield from instrumented_with(stream_usage=True)


def test_chat_create_span_usage_and_metrics(client, instrumented, spans, metric_reader, fake) -> None:  # type: ignore[no-untyped-def]
    headers = usage_header(input_tokens=1200, output_tokens=300, cached_tokens=1000, reasoning_tokens=50,
                           cache_creation_input_tokens=80, audio_input_tokens=30, audio_output_tokens=20)  # fmt: skip
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    result = client.chat.completions.create(
        model="gpt-4.1-nano", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools,
        temperature=0.2, max_completion_tokens=400, service_tier="flex", extra_headers=headers,
    )  # fmt: skip
    attrs = only_span(spans)
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4.1-nano" and attrs["gen_ai.response.model"] == result.model
    assert attrs["gen_ai.response.id"] == result.id
    assert attrs["gen_ai.usage.input_tokens"] == 1200 and attrs["gen_ai.usage.output_tokens"] == 300
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 50
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 80
    assert attrs["llmmeter.usage.audio.input_tokens"] == 30 and attrs["llmmeter.usage.audio.output_tokens"] == 20
    assert "llmmeter.usage.cache_creation_1h.input_tokens" not in attrs
    assert attrs["gen_ai.request.temperature"] == 0.2 and attrs["gen_ai.request.max_tokens"] == 400
    assert attrs["openai.request.service_tier"] == "flex" and attrs["openai.response.service_tier"] == "flex"
    assert attrs["llmmeter.tool.definitions"] == 1 and attrs["llmmeter.tool.calls"] == 1
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == fake.port
    assert attrs["gen_ai.request.stream"] is False
    assert len(attrs["llmmeter.prompt.fingerprint"]) == 16
    assert "gen_ai.input.messages" not in attrs  # content capture is off by default
    tokens = {p.attributes["gen_ai.token.type"]: p for p in points(metric_reader, "gen_ai.client.token.usage")
              if p.attributes["gen_ai.request.model"] == "gpt-4.1-nano"}  # fmt: skip
    assert tokens["input"].sum == 1200 and tokens["output"].sum == 300
    assert list(tokens["input"].explicit_bounds)[:3] == [1, 4, 16]
    (duration,) = [p for p in points(metric_reader, "gen_ai.client.operation.duration")
                   if p.attributes["gen_ai.request.model"] == "gpt-4.1-nano"]  # fmt: skip
    assert duration.count == 1 and duration.attributes["gen_ai.provider.name"] == "openai"
    assert list(duration.explicit_bounds)[:2] == [0.01, 0.02]


def test_parse_responses_completions_embeddings(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    from pydantic import BaseModel

    class Answer(BaseModel):
        city: str

    parsed = client.chat.completions.parse(model="gpt-4o", messages=MSG, response_format=Answer)
    assert parsed.choices[0].message.parsed.city == "fake"
    response = client.responses.create(model="gpt-4o", input="hello there", instructions="be brief",
                                       extra_headers=usage_header(cached_tokens=4, reasoning_tokens=3))  # fmt: skip
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi")
    client.embeddings.create(model="text-embedding-3-small", input=["a b c"], encoding_format="float")
    by_op = [(dict(s.attributes)) for s in llm_spans(spans)]
    assert [a["gen_ai.operation.name"] for a in by_op] == ["chat", "chat", "text_completion", "embeddings"]
    assert by_op[0]["gen_ai.usage.input_tokens"] == 12 and by_op[0]["gen_ai.usage.output_tokens"] == 20
    assert by_op[1]["gen_ai.response.id"] == response.id
    assert by_op[1]["gen_ai.usage.input_tokens"] == 14 and by_op[1]["gen_ai.usage.cache_read.input_tokens"] == 4
    assert by_op[1]["gen_ai.usage.reasoning.output_tokens"] == 3
    assert by_op[2]["gen_ai.usage.input_tokens"] == 12 and by_op[2]["gen_ai.usage.output_tokens"] == 20
    assert by_op[3]["gen_ai.usage.input_tokens"] == 13 and "gen_ai.usage.output_tokens" not in by_op[3]
    assert by_op[3]["gen_ai.request.encoding_formats"] == ("float",)


def test_streams_pass_chunks_untouched_and_record_ttfc(client, instrumented, spans, metric_reader) -> None:  # type: ignore[no-untyped-def]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    assert isinstance(stream, openai.Stream) and isinstance(stream.response, httpx2.Response)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Fake answer")
    attrs = only_span(spans)
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.usage.input_tokens"] == 12 and attrs["gen_ai.usage.output_tokens"] == 20
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    ttfc = [p for p in points(metric_reader, "gen_ai.client.operation.time_to_first_chunk")
            if p.attributes["gen_ai.provider.name"] == "openai"]  # fmt: skip
    assert ttfc and ttfc[0].count >= 1


def test_stream_without_usage_is_marked_missing_not_guessed(client, instrumented, spans, fake) -> None:  # type: ignore[no-untyped-def]
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
        pass
    attrs = only_span(spans)
    assert attrs["llmmeter.usage.missing"] is True and "gen_ai.usage.input_tokens" not in attrs
    assert "stream_options" not in fake.requests[-1].json


def test_stream_usage_option_injects_include_usage(client, stream_usage, spans, fake) -> None:  # type: ignore[no-untyped-def]
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # the documented extra final chunk
    assert only_span(spans)["gen_ai.usage.output_tokens"] == 20


def test_stream_helpers_and_early_close(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MSG, stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    assert final.usage.prompt_tokens == 12
    with client.responses.stream(model="gpt-4o", input="hello there") as s:
        for event in s:
            if event.type == "response.output_text.delta":
                break  # leave early: the helper's exit ends the span
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    next(iter(stream))
    stream.close()
    found = [dict(s.attributes) for s in llm_spans(spans)]
    assert len(found) == 3
    assert found[0]["gen_ai.usage.input_tokens"] == 12 and "llmmeter.stream.closed_early" not in found[0]
    assert found[1]["llmmeter.stream.closed_early"] is True and found[1]["gen_ai.response.model"] == "gpt-4o"
    assert found[2]["llmmeter.stream.closed_early"] is True and found[2]["llmmeter.usage.missing"] is True


def test_abandoned_stream_ends_on_garbage_collection(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    next(iter(stream))
    assert llm_spans(spans) == []
    del stream
    gc.collect()
    assert only_span(spans)["llmmeter.stream.closed_early"] is True
    spans.clear()
    never_read = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    del never_read  # dropped before its first chunk: no reference cycle keeps it, it ends at once
    assert only_span(spans)["llmmeter.usage.missing"] is True


def test_failed_stream_records_error_and_billing(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                            extra_headers={"x-fake-stream-fail-after": "3"})  # fmt: skip
    with pytest.raises(openai.APIError) as raised:
        list(stream)
    (span,) = llm_spans(spans)
    assert span.attributes["error.type"] == type(raised.value).__qualname__
    assert span.attributes["llmmeter.provider_billed"] is True  # output had started
    assert span.status.status_code.name == "ERROR"


def test_retried_call_counts_retries_and_http_error(client, instrumented, spans, fake) -> None:  # type: ignore[no-untyped-def]
    fake.fail_next(429, count=2)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert only_span(spans)["llmmeter.retries"] == 2
    spans.clear()
    fake.fail_next(500, count=5)
    with pytest.raises(openai.InternalServerError):
        client.with_options(max_retries=1).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    attrs = only_span(spans)
    assert attrs["error.type"] == "InternalServerError" and attrs["http.response.status_code"] == 500
    assert attrs["llmmeter.provider_billed"] is False and attrs["llmmeter.retries"] == 1


def test_raw_and_streaming_responses_keep_app_parsing(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    assert raw.parse().usage.prompt_tokens == 12 and raw.headers["content-type"].startswith("application/json")
    raw_stream = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                                  stream_options={"include_usage": True})  # fmt: skip
    assert len(list(raw_stream.parse())) > 1
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG) as response:
        assert response.parse().usage.completion_tokens == 20
    found = [dict(s.attributes) for s in llm_spans(spans)]
    assert [a["gen_ai.usage.input_tokens"] for a in found] == [12, 12, 12]


def test_azure_client_is_its_own_provider(fake, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    azure = openai.AzureOpenAI(azure_endpoint=fake.url, api_key="x", api_version="2024-10-21")
    azure.chat.completions.create(model="my-deployment", messages=MSG)
    assert only_span(spans)["gen_ai.provider.name"] == "azure.ai.openai"


def test_server_follows_a_changed_base_url_and_a_dropped_client_is_freed(fake, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    with FakeProvider() as other:
        client.base_url = other.openai_base_url  # type: ignore[assignment]
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        ports = [s.attributes["server.port"] for s in llm_spans(spans)]  # type: ignore[index]
        assert ports == [fake.port, other.port]
    freed = weakref.ref(client)
    llmmeter.flush()
    del client
    gc.collect()
    assert freed() is None  # llmmeter's per-client cache does not keep a client (and its connections) alive


def test_async_create_stream_and_retries(aclient, instrumented, spans, fake) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[str]:
        fake.fail_next(429, count=1)
        await aclient.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                       stream_options={"include_usage": True})  # fmt: skip
        assert isinstance(stream, openai.AsyncStream)
        async with stream:
            kinds = [c.object async for c in stream]
        await aclient.responses.create(model="gpt-4o", input="hello there")
        await aclient.embeddings.create(model="text-embedding-3-small", input="a b c")
        async with aclient.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as s:
            async for _ in s:
                break
        return kinds

    kinds = asyncio.run(main())
    assert set(kinds) == {"chat.completion.chunk"}
    found = [dict(s.attributes) for s in llm_spans(spans)]
    assert len(found) == 5
    assert found[0]["llmmeter.retries"] == 1 and found[0]["gen_ai.usage.input_tokens"] == 12
    assert found[1]["gen_ai.usage.output_tokens"] == 20 and found[1]["gen_ai.response.time_to_first_chunk"] > 0
    assert found[2]["gen_ai.usage.input_tokens"] == 12 and found[3]["gen_ai.operation.name"] == "embeddings"
    assert found[4]["llmmeter.stream.closed_early"] is True


def _stable(value: object) -> object:
    """A response without the fields that differ between two identical calls (ids, timestamps)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in ("id", "created")}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def test_results_identical_with_and_without_instrumentation(client, fake, spans) -> None:  # type: ignore[no-untyped-def]
    def run() -> tuple[object, ...]:
        fake.reset()
        created = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        chunks = [
            c.model_dump() for c in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        ]
        fake.fail_next(400, count=1)
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        except openai.BadRequestError as exc:
            error = (type(exc), exc.status_code, exc.body)
        return _stable(created.model_dump()), _stable(chunks), error

    bare = run()
    llmmeter.instrument(configure_export=False)
    try:
        assert run() == bare
    finally:
        llmmeter.uninstrument()
    assert len(llm_spans(spans)) == 3


def test_uninstrument_restores_every_method_and_twice_is_harmless() -> None:
    import importlib

    from llmmeter.openai import PATCHED

    def current() -> list[object]:
        return [getattr(importlib.import_module(m), c).__dict__[name] for m, c, name, _ in PATCHED]

    originals = current()
    create = Completions.create
    llmmeter.instrument(configure_export=False)
    llmmeter.instrument(configure_export=False)  # harmless
    assert Completions.create is not create
    assert all(now is not before for now, before in zip(current(), originals, strict=True))
    llmmeter.uninstrument()
    assert Completions.create is create and AsyncCompletions.create is originals[1]
    assert all(now is before for now, before in zip(current(), originals, strict=True))


def test_errors_inside_llmmeter_never_reach_the_app(client, instrumented, spans, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    from llmmeter.openai import response

    monkeypatch.setattr(response, "chat_usage", lambda usage: 1 / 0)
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert result.usage.prompt_tokens == 12  # the app got its answer
    assert json.loads(result.model_dump_json())["id"] == result.id
    assert only_span(spans)["llmmeter.usage.missing"] is True  # the span still ends
    assert "instrumentation error" in caplog.text  # logged (off the call path: the response is read there)
