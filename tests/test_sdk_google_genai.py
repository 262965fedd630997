"""google-genai instrumentation: generate, stream, embed, aio, Gemini vs Vertex AI, thoughts and cache."""

from __future__ import annotations

import asyncio

import pytest
from google import genai
from google.genai import errors, types
from google.genai.models import Models

import llmmeter
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from tests.sdk_support import llm_spans, only_span, usage_header

MODEL = "gemini-2.5-flash"


@pytest.fixture
def client(fake: FakeProvider) -> genai.Client:
    return genai.Client(api_key="x", http_options=fake.gemini_http_options)


def _config(**usage: int) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(http_options=types.HttpOptions(headers=usage_header(**usage)))


def test_generate_thoughts_and_cache(client, instrumented, spans, fake) -> None:  # type: ignore[no-untyped-def]
    config = _config(input_tokens=1200, output_tokens=300, cached_tokens=800, reasoning_tokens=50)
    response = client.models.generate_content(model=MODEL, contents="hello there", config=config)
    assert response.usage_metadata.candidates_token_count == 250  # Gemini's own number, untouched
    attrs = only_span(spans)
    assert attrs["gen_ai.provider.name"] == "gcp.gemini" and attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.usage.input_tokens"] == 1200 and attrs["gen_ai.usage.cache_read.input_tokens"] == 800
    assert attrs["gen_ai.usage.output_tokens"] == 300  # candidates 250 + thoughts 50
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 50
    assert attrs["gen_ai.response.finish_reasons"] == ("STOP",) and attrs["gen_ai.response.model"] == MODEL
    assert attrs["server.port"] == fake.port


def test_stream_embed_and_vertex(client, fake, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="hello there"))
    assert "".join(c.text or "" for c in chunks).startswith("Fake answer")
    client.models.embed_content(model="text-embedding-004", contents=["a b c"])
    vertex = genai.Client(**fake.gemini_vertex_client_kwargs())
    vertex.models.generate_content(model=MODEL, contents="hello there")
    stream, embed, on_vertex = (dict(s.attributes) for s in llm_spans(spans))
    assert stream["gen_ai.request.stream"] is True and stream["gen_ai.response.time_to_first_chunk"] > 0
    assert stream["gen_ai.usage.input_tokens"] == 12 and stream["gen_ai.usage.output_tokens"] == 20
    assert embed["gen_ai.operation.name"] == "embeddings" and embed["gen_ai.usage.input_tokens"] == 13
    assert on_vertex["gen_ai.provider.name"] == "gcp.vertex_ai" and on_vertex["gen_ai.usage.input_tokens"] == 12


def test_function_calls_and_tool_definitions(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", description="w")])
    config = types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    client.models.generate_content(model=MODEL, contents="weather in Paris?", config=config)
    attrs = only_span(spans)
    assert attrs["llmmeter.tool.definitions"] == 1 and attrs["llmmeter.tool.calls"] == 1


def test_retries_errors_and_failed_stream(fake, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    retry = {"attempts": 4, "initial_delay": 0.01, "max_delay": 0.02}
    client = genai.Client(api_key="x", http_options={**fake.gemini_http_options, "retry_options": retry})
    fake.fail_next(429, count=2)
    client.models.generate_content(model=MODEL, contents="hello")
    fake.fail_next(429, count=2)
    list(client.models.generate_content_stream(model=MODEL, contents="hello"))
    fake.fail_next(400, count=1)
    with pytest.raises(errors.ClientError):
        client.models.generate_content(model=MODEL, contents="hello")
    ok, streamed, failed = (dict(s.attributes) for s in llm_spans(spans))
    assert ok["llmmeter.retries"] == 2 and streamed["llmmeter.retries"] == 2
    assert failed["error.type"] == "ClientError" and failed["llmmeter.provider_billed"] is False


def test_aio_variants(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        await client.aio.models.generate_content(model=MODEL, contents="hello there")
        async for _ in await client.aio.models.generate_content_stream(model=MODEL, contents="hello there"):
            pass
        await client.aio.models.embed_content(model="text-embedding-004", contents="a b c")

    asyncio.run(main())
    found = [dict(s.attributes) for s in llm_spans(spans)]
    assert [a["gen_ai.usage.input_tokens"] for a in found] == [12, 12, 13]
    assert found[1]["gen_ai.usage.output_tokens"] == 20 and found[1]["gen_ai.request.stream"] is True


def test_uninstrument_restores_models(client, spans) -> None:  # type: ignore[no-untyped-def]
    original = Models.__dict__["_generate_content"]
    llmmeter.instrument(configure_export=False)
    llmmeter.uninstrument()
    assert Models.__dict__["_generate_content"] is original
    client.models.generate_content(model=MODEL, contents="hello")
    assert llm_spans(spans) == []
