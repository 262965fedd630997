"""The fake provider answers the REAL provider SDKs in their own wire formats, with predictable usage."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from pydantic import BaseModel

from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.devtools.fakeprovider.usage import answer_words

USER = [{"role": "user", "content": "Say hello in five words"}]  # 5 words -> 15 input tokens


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeProvider) -> None:
    fake.reset()


@pytest.fixture
def oai(fake: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="x")


def usage_header(**usage: int) -> dict[str, str]:
    return {"x-fake-usage": json.dumps(usage)}


def test_start_stop_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    for _ in range(3):
        with FakeProvider() as fake:
            assert fake.url.startswith("http://127.0.0.1:")
            assert fake.openai_base_url == fake.url + "/v1"
    assert set(threading.enumerate()) <= before


def test_chat_completion_default_usage(fake: FakeProvider, oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert resp.model == "gpt-4o-mini"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (15, 20, 35)
    assert resp.choices[0].message.content is not None
    assert len(resp.choices[0].message.content.split()) == 20
    assert resp.choices[0].finish_reason == "stop"
    [req] = fake.requests
    assert (req.method, req.path, req.json["model"]) == ("POST", "/v1/chat/completions", "gpt-4o-mini")


def test_chat_completion_max_tokens_and_override(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, max_completion_tokens=7)
    assert resp.usage is not None and resp.usage.completion_tokens == 7
    resp = oai.chat.completions.create(
        model="o4-mini",
        messages=USER,
        service_tier="flex",
        extra_headers=usage_header(input_tokens=1200, output_tokens=300, cached_tokens=1000, reasoning_tokens=50),
    )
    usage = resp.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1200, 300, 1500)
    assert usage.prompt_tokens_details.cached_tokens == 1000
    assert usage.completion_tokens_details.reasoning_tokens == 50
    assert resp.service_tier == "flex"


class Step(BaseModel):
    explanation: str
    output: int


class Plan(BaseModel):
    steps: list[Step]
    final: str | None
    done: bool


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
WEATHER_ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_chat_stream_usage_only_with_include_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).split() == answer_words(20)
    assert chunks[-1].choices[0].finish_reason == "stop"

    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
            service_tier="priority",
            extra_headers=usage_header(input_tokens=100, cached_tokens=60, output_tokens=9),
        )
    )
    *content, last = chunks
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (100, 9)
    assert last.usage.prompt_tokens_details and last.usage.prompt_tokens_details.cached_tokens == 60
    assert all(c.usage is None and c.choices for c in content)
    assert {(c.id, c.model, c.system_fingerprint, c.service_tier) for c in chunks} == {
        (last.id, "gpt-4o-mini", "fp_fake", "priority")
    }


def test_chat_parse_raw_response_and_stream_helper(oai: openai.OpenAI) -> None:
    parsed = oai.chat.completions.parse(model="gpt-4o", messages=USER, response_format=Plan)
    assert parsed.choices[0].message.parsed == Plan(
        steps=[Step(explanation="fake", output=0)], final="fake", done=False
    )

    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    assert raw.headers["content-type"] == "application/json"
    completion = raw.parse()
    assert completion.usage is not None and completion.usage.total_tokens == 35

    with oai.chat.completions.stream(
        model="gpt-4o", messages=USER, stream_options={"include_usage": True}, max_tokens=4
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Fake answer w3 w4"
    assert final.usage is not None and final.usage.completion_tokens == 4


def test_chat_tool_calls(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(model="gpt-4o", messages=WEATHER_ASK, tools=[WEATHER_TOOL])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"location": "Paris"})

    # A tool result as last message ends the loop with a text answer.
    followup = [
        *WEATHER_ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    resp = oai.chat.completions.create(model="gpt-4o", messages=followup, tools=[WEATHER_TOOL])
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.tool_calls is None

    with oai.chat.completions.stream(
        model="gpt-4o",
        messages=USER,
        tools=[openai.pydantic_function_tool(Step)],
        extra_headers={"x-fake-tool-call": "1"},
    ) as stream:
        final = stream.get_final_completion()
    [streamed] = final.choices[0].message.tool_calls or []
    assert streamed.function.parsed_arguments == Step(explanation="fake", output=0)


def test_responses_create_stream_parse(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(
        model="gpt-4.1",
        instructions="Be brief",
        input="hello world",
        extra_headers=usage_header(input_tokens=100, cached_tokens=40, output_tokens=30, reasoning_tokens=10),
    )
    assert resp.output_text.split() == answer_words(20)
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (100, 30, 130)
    assert resp.usage.input_tokens_details.cached_tokens == 40
    assert resp.usage.output_tokens_details.reasoning_tokens == 10

    with oai.responses.stream(model="gpt-4.1", input=[{"role": "user", "content": "hello there"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 20
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (12, 20)

    parsed = oai.responses.parse(model="gpt-4.1", input="plan", text_format=Plan)
    assert parsed.output_parsed is not None and parsed.output_parsed.steps[0].explanation == "fake"

    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}
    resp = oai.responses.create(model="gpt-4.1", input="weather in Paris?", tools=[tool])
    [item] = resp.output
    assert item.type == "function_call" and item.name == "get_weather"


def test_legacy_completions_embeddings_models(oai: openai.OpenAI) -> None:
    resp = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=5)
    assert resp.choices[0].text == "Fake answer w3 w4 w5"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (14, 5)
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="hi", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices).split() == answer_words(20)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 31

    default = oai.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])  # base64
    floats = oai.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "bye"], encoding_format="float"
    )
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert len(default.data[0].embedding) == 8 and default.data[0].embedding != default.data[1].embedding
    assert (default.usage.prompt_tokens, default.usage.total_tokens) == (13, 13)
    assert len(oai.embeddings.create(model="m", input="x", dimensions=3).data[0].embedding) == 3

    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]


def test_azure_openai(fake: FakeProvider) -> None:
    azure = openai.AzureOpenAI(azure_endpoint=fake.url, api_key="x", api_version="2024-10-21")
    resp = azure.chat.completions.create(model="my-deployment", messages=USER)
    assert resp.usage is not None and resp.usage.total_tokens == 35
    emb = azure.embeddings.create(model="emb-deployment", input="hello")
    assert emb.usage.prompt_tokens == 11
    chat_req, emb_req = fake.requests
    assert chat_req.path == "/openai/deployments/my-deployment/chat/completions"
    assert chat_req.query == {"api-version": "2024-10-21"}
    assert emb_req.path == "/openai/deployments/emb-deployment/embeddings"


def test_openai_batch(oai: openai.OpenAI) -> None:
    lines = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]},
        }
        for i in range(3)
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = oai.files.create(file=("input.jsonl", io.BytesIO(jsonl)), purpose="batch")
    batch = oai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id
    assert batch.request_counts is not None and batch.request_counts.completed == 3
    results = [json.loads(line) for line in oai.files.content(batch.output_file_id).text.splitlines()]
    assert [r["custom_id"] for r in results] == ["req-0", "req-1", "req-2"]
    assert {r["response"]["status_code"] for r in results} == {200}
    assert {r["response"]["body"]["usage"]["prompt_tokens"] for r in results} == {13}


def test_openai_errors_retry_then_raise(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.fail_next(status=429, count=2)
    started = time.monotonic()
    resp = oai.chat.completions.create(model="gpt-4o-mini", messages=USER)  # 2 retries succeed
    assert resp.usage is not None and len(fake.requests) == 3
    assert time.monotonic() - started < 0.5

    fake.reset()
    fake.fail_next(status=429, count=3)
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert len(fake.requests) == 3  # the first try and the SDK's 2 retries
    assert info.value.response.headers["retry-after"] == "0"
    assert info.value.code == "rate_limit_exceeded"

    fake.reset()
    fake.fail_next(status=500, count=1)
    with pytest.raises(openai.InternalServerError):
        oai.with_options(max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=USER)
    with pytest.raises(openai.BadRequestError, match="unknown field"):
        oai.chat.completions.create(model="m", messages=USER, extra_headers=usage_header(input_token=5))


def test_openai_mid_stream_failure(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, extra_headers={"x-fake-stream-fail-after": "3"}
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3


def test_openai_async(fake: FakeProvider) -> None:
    async def run() -> tuple[int, int, int]:
        client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="x")
        resp = await client.chat.completions.create(model="gpt-4o", messages=USER)
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        async with client.responses.stream(model="gpt-4.1", input="hi") as rstream:
            final = await rstream.get_final_response()
        await client.close()
        assert resp.usage is not None and chunks[-1].usage is not None and final.usage is not None
        return resp.usage.total_tokens, chunks[-1].usage.total_tokens, final.usage.total_tokens

    assert asyncio.run(run()) == (35, 35, 31)


# -- Anthropic -------------------------------------------------------------------------------------

CLAUDE = "claude-haiku-4-5"
CACHED_USAGE = usage_header(
    input_tokens=1200,
    output_tokens=300,
    cached_tokens=1000,
    cache_creation_input_tokens=150,
    cache_creation_1h_input_tokens=50,
    reasoning_tokens=40,
)
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


@pytest.fixture
def claude(fake: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x")


def assert_cached_anthropic_usage(usage: anthropic.types.Usage) -> None:
    assert usage.input_tokens == 50  # 1200 - 1000 read - 150 written: Anthropic excludes cache
    assert usage.cache_read_input_tokens == 1000
    assert usage.cache_creation_input_tokens == 150
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 100
    assert usage.cache_creation.ephemeral_1h_input_tokens == 50
    assert usage.output_tokens == 300
    assert usage.output_tokens_details is not None and usage.output_tokens_details.thinking_tokens == 40


def test_anthropic_message(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=CLAUDE, max_tokens=100, system="Be brief", messages=USER)
    assert msg.model == CLAUDE and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (17, 20)  # "Be brief" + 5 words + 10
    assert msg.usage.cache_read_input_tokens == 0
    [block] = msg.content
    assert block.type == "text" and block.text.split() == answer_words(20)
    assert claude.messages.create(model=CLAUDE, max_tokens=3, messages=USER).usage.output_tokens == 3

    msg = claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER, extra_headers=CACHED_USAGE)
    assert_cached_anthropic_usage(msg.usage)
    assert fake.requests[0].path == "/v1/messages"


def test_anthropic_streams(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER, stream=True, extra_headers=CACHED_USAGE)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.usage.input_tokens == 50 and start.message.usage.cache_read_input_tokens == 1000
    assert delta.usage.output_tokens == 300  # cumulative, as the real API reports it

    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=USER, extra_headers=CACHED_USAGE) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.split() == answer_words(260)
    assert_cached_anthropic_usage(final.usage)


def test_anthropic_tools_parse_count_tokens(claude: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    msg = claude.messages.create(model=CLAUDE, max_tokens=100, messages=ask, tools=[WEATHER_TOOL_ANTHROPIC])
    assert msg.stop_reason == "tool_use"
    [block] = msg.content
    assert block.type == "tool_use" and (block.name, block.input) == ("get_weather", {"location": "Paris"})
    followup = [
        *ask,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
    ]
    msg = claude.messages.create(model=CLAUDE, max_tokens=100, messages=followup, tools=[WEATHER_TOOL_ANTHROPIC])
    assert msg.stop_reason == "end_turn"

    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=ask, tools=[WEATHER_TOOL_ANTHROPIC]) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"location": "Paris"}

    parsed = claude.messages.parse(model=CLAUDE, max_tokens=100, messages=USER, output_format=Step)
    assert parsed.parsed_output == Step(explanation="fake", output=0)

    count = claude.messages.count_tokens(model=CLAUDE, system="Be brief", messages=USER)
    assert count.input_tokens == 17


def test_anthropic_batches(claude: anthropic.Anthropic) -> None:
    batch = claude.messages.batches.create(
        requests=[
            {"custom_id": f"q{i}", "params": {"model": CLAUDE, "max_tokens": 5, "messages": USER}} for i in range(2)
        ]
    )
    batch = claude.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 2
    results = list(claude.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] == ["q0", "q1"]
    for result in results:
        assert result.result.type == "succeeded"
        assert result.result.message.usage.input_tokens == 15
        assert result.result.message.usage.output_tokens == 5
        assert result.result.message.usage.service_tier == "batch"


def test_anthropic_errors_and_mid_stream_failure(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    fake.fail_next(status=429, count=3)
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=USER)
    assert len(fake.requests) == 3
    assert info.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Fake provider: injected error 429"},
        "request_id": "req_fake",
    }
    fake.fail_next(status=529, count=1)
    assert claude.messages.create(model=CLAUDE, max_tokens=10, messages=USER).usage.output_tokens == 10
    assert len(fake.requests) == 5

    stream = claude.messages.create(
        model=CLAUDE,
        max_tokens=10,
        messages=USER,
        stream=True,
        extra_headers={"x-fake-stream-fail-after": "3"},
    )
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):  # anthropic lets the transport error through
        for event in stream:
            received.append(event.type)
    assert received == ["message_start", "content_block_start"]  # the 3rd event, a ping, is not yielded


def test_anthropic_async(fake: FakeProvider) -> None:
    async def run() -> tuple[int, int]:
        client = anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key="x")
        msg = await client.messages.create(model=CLAUDE, max_tokens=100, messages=USER)
        async with client.messages.stream(model=CLAUDE, max_tokens=7, messages=USER) as stream:
            final = await stream.get_final_message()
        await client.close()
        return msg.usage.output_tokens, final.usage.output_tokens

    assert asyncio.run(run()) == (20, 7)


# -- Gemini ----------------------------------------------------------------------------------------

GEMINI = "gemini-2.5-flash"
GEMINI_USAGE = json.dumps({"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 1000, "reasoning_tokens": 50})


@pytest.fixture
def gemini(fake: FakeProvider) -> genai.Client:
    return genai.Client(api_key="x", http_options=fake.gemini_http_options)


def with_headers(**headers: str) -> genai_types.GenerateContentConfig:
    return genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(headers=headers))


def test_gemini_generate_content(fake: FakeProvider, gemini: genai.Client) -> None:
    resp = gemini.models.generate_content(
        model=GEMINI, contents="Say hello in five words", config={"system_instruction": "Be brief"}
    )
    assert resp.text is not None and resp.text.split() == answer_words(20)
    usage = resp.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (17, 20, 37)
    assert resp.candidates and resp.candidates[0].finish_reason == genai_types.FinishReason.STOP
    [req] = fake.requests
    assert req.path.endswith(f"/models/{GEMINI}:generateContent") and req.headers["x-goog-api-key"] == "x"

    # Override per request through the config's http_options, or for a whole client.
    resp = gemini.models.generate_content(
        model=GEMINI, contents="hi", config=with_headers(**{"x-fake-usage": GEMINI_USAGE})
    )
    usage = resp.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (1200, 1000)
    assert (usage.candidates_token_count, usage.thoughts_token_count, usage.total_token_count) == (250, 50, 1500)
    client = genai.Client(
        api_key="x", http_options={**fake.gemini_http_options, "headers": {"x-fake-usage": GEMINI_USAGE}}
    )
    usage = client.models.generate_content(model=GEMINI, contents="hi").usage_metadata
    assert usage is not None and usage.thoughts_token_count == 50

    resp = gemini.models.generate_content(
        model=GEMINI, contents="plan", config={"response_mime_type": "application/json", "response_schema": Plan}
    )
    assert resp.parsed == Plan(steps=[Step(explanation="fake", output=0)], final="fake", done=False)


def test_gemini_stream(fake: FakeProvider, gemini: genai.Client) -> None:
    chunks = list(
        gemini.models.generate_content_stream(model=GEMINI, contents="hello", config={"max_output_tokens": 4})
    )
    assert "".join(c.text or "" for c in chunks) == "Fake answer w3 w4"
    assert fake.requests[-1].query == {"alt": "sse"}
    *head, last = chunks
    assert last.usage_metadata is not None
    assert (last.usage_metadata.prompt_token_count, last.usage_metadata.candidates_token_count) == (11, 4)
    assert last.usage_metadata.total_token_count == 15
    for chunk in head:  # intermediate chunks carry only the prompt side
        assert chunk.usage_metadata is not None and chunk.usage_metadata.candidates_token_count is None
        assert chunk.candidates and chunk.candidates[0].finish_reason is None


def test_gemini_tools_embeddings_count_tokens(fake: FakeProvider, gemini: genai.Client) -> None:
    def get_weather(location: str) -> str:
        """Weather for a city."""
        return f"sunny in {location}"

    no_auto = genai_types.AutomaticFunctionCallingConfig(disable=True)
    resp = gemini.models.generate_content(
        model=GEMINI,
        contents="What is the weather in Paris?",
        config=genai_types.GenerateContentConfig(tools=[get_weather], automatic_function_calling=no_auto),
    )
    [call] = resp.function_calls or []
    assert (call.name, call.args) == ("get_weather", {"location": "Paris"})
    # With automatic function calling the SDK runs the tool and sends its result: a text answer ends it.
    resp = gemini.models.generate_content(
        model=GEMINI,
        contents="What is the weather in Paris?",
        config=genai_types.GenerateContentConfig(tools=[get_weather]),
    )
    assert resp.text is not None and resp.text.startswith("Fake answer")

    fake.reset()
    emb = gemini.models.embed_content(model="gemini-embedding-001", contents=["hello world", "bye"])
    assert emb.embeddings is not None and len(emb.embeddings) == 2 and len(emb.embeddings[0].values or []) == 8
    assert emb.usage_metadata is not None and emb.usage_metadata.prompt_token_count == 13
    assert fake.requests[0].path.endswith(":batchEmbedContents")
    assert gemini.models.count_tokens(model=GEMINI, contents="a b c").total_tokens == 13


def test_gemini_vertex_mode(fake: FakeProvider) -> None:
    client = genai.Client(**fake.gemini_vertex_client_kwargs(project="demo", location="europe-west4"))
    resp = client.models.generate_content(
        model=GEMINI, contents="hello", config=with_headers(**{"x-fake-usage": GEMINI_USAGE})
    )
    assert resp.usage_metadata is not None and resp.usage_metadata.cached_content_token_count == 1000
    chunks = list(client.models.generate_content_stream(model=GEMINI, contents="hello"))
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.total_token_count == 31
    emb = client.models.embed_content(model="text-embedding-005", contents=["hello world", "bye"])  # :predict
    assert [e.statistics.token_count for e in emb.embeddings or [] if e.statistics] == [12, 1]
    prefix = "/v1beta1/projects/demo/locations/europe-west4/publishers/google/models/"
    assert [r.path for r in fake.requests] == [
        f"{prefix}{GEMINI}:generateContent",
        f"{prefix}{GEMINI}:streamGenerateContent",
        f"{prefix}text-embedding-005:predict",
    ]
    assert fake.requests[0].headers["authorization"] == "Bearer fake-token"


def test_gemini_errors_and_mid_stream_failure(fake: FakeProvider, gemini: genai.Client) -> None:
    fake.fail_next(status=429, count=1)
    with pytest.raises(genai_errors.ClientError) as info:  # google-genai does not retry unless asked to
        gemini.models.generate_content(model=GEMINI, contents="hi")
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")

    retry = {"attempts": 3, "initial_delay": 0, "jitter": 0}
    retrying = genai.Client(api_key="x", http_options={**fake.gemini_http_options, "retry_options": retry})
    fake.reset()
    fake.fail_next(status=503, count=2)
    assert retrying.models.generate_content(model=GEMINI, contents="hi").text
    assert len(fake.requests) == 3
    fake.fail_next(status=500, count=3)
    with pytest.raises(genai_errors.ServerError):
        retrying.models.generate_content(model=GEMINI, contents="hi")

    received = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for chunk in gemini.models.generate_content_stream(
            model=GEMINI, contents="hi", config=with_headers(**{"x-fake-stream-fail-after": "2"})
        ):
            received.append(chunk.text)
    assert received == ["Fake", " answer"]


def test_gemini_async(fake: FakeProvider, gemini: genai.Client) -> None:
    async def run() -> tuple[int | None, int | None]:
        resp = await gemini.aio.models.generate_content(model=GEMINI, contents="hello")
        stream = await gemini.aio.models.generate_content_stream(model=GEMINI, contents="hello")
        chunks = [chunk async for chunk in stream]
        assert resp.usage_metadata is not None and chunks[-1].usage_metadata is not None
        return resp.usage_metadata.total_token_count, chunks[-1].usage_metadata.total_token_count

    assert asyncio.run(run()) == (31, 31)


# -- cross-cutting ---------------------------------------------------------------------------------


def test_bad_override_and_unknown_route_use_provider_error_format(
    fake: FakeProvider, oai: openai.OpenAI, claude: anthropic.Anthropic, gemini: genai.Client
) -> None:
    too_much_cache = usage_header(input_tokens=10, cached_tokens=20)
    with pytest.raises(openai.BadRequestError, match="exceed input_tokens"):
        oai.chat.completions.create(model="m", messages=USER, extra_headers=too_much_cache)
    with pytest.raises(anthropic.BadRequestError, match="exceed input_tokens"):
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=USER, extra_headers=too_much_cache)
    with pytest.raises(genai_errors.ClientError, match="exceed input_tokens"):
        gemini.models.generate_content(model=GEMINI, contents="hi", config=with_headers(**too_much_cache))
    with pytest.raises(openai.NotFoundError):
        oai.images.generate(prompt="a cat")
    assert fake.requests[-1].path == "/v1/images/generations"  # unknown routes are recorded too


def test_reset_forgets_requests_and_pending_failures(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.fail_next(status=500, count=5)
    fake.reset()
    assert fake.requests == []
    assert oai.with_options(max_retries=0).chat.completions.create(model="m", messages=USER).usage is not None


def test_latency_and_chunk_delay_headers(oai: openai.OpenAI) -> None:
    started = time.monotonic()
    oai.chat.completions.create(model="m", messages=USER, extra_headers={"x-fake-latency-ms": "100"})
    assert time.monotonic() - started >= 0.1
    stream = oai.chat.completions.create(
        model="m", messages=USER, max_tokens=2, stream=True, extra_headers={"x-fake-chunk-delay-ms": "30"}
    )
    started = time.monotonic()
    arrivals = [time.monotonic() - started for _ in stream]
    assert len(arrivals) == 4 and arrivals[-1] >= 0.06  # role chunk, 2 words, finish chunk


def test_langchain_chat_models(fake: FakeProvider) -> None:
    import langchain_anthropic  # dev dependencies: a missing one fails the test instead of skipping it
    import langchain_openai

    chat = langchain_openai.ChatOpenAI(model="gpt-4o-mini", base_url=fake.openai_base_url, api_key="x")
    assert chat.invoke("Say hello in five words").usage_metadata["input_tokens"] == 15
    streamed = list(chat.stream("hi", stream_usage=True))
    assert sum(chunk.usage_metadata["output_tokens"] for chunk in streamed if chunk.usage_metadata) == 20
    claude_chat = langchain_anthropic.ChatAnthropic(model=CLAUDE, base_url=fake.anthropic_base_url, api_key="x")
    reply = claude_chat.invoke("Say hello in five words", extra_headers=CACHED_USAGE)
    assert reply.usage_metadata["input_tokens"] == 1200  # LangChain sums Anthropic's input parts back up
    assert reply.usage_metadata["input_token_details"]["cache_read"] == 1000


def test_command_line_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmmeter_collector.devtools.fakeprovider", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"fake provider listening on http://127.0.0.1:{port}"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        assert client.chat.completions.create(model="m", messages=USER).usage is not None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
