"""The real ``langchain-openai`` and ``langchain-anthropic`` chat models against the fake provider, with both
llmmeter instrumentations on (LangChain handler + provider SDK): one priced span per model call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import psycopg
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import llmmeter
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .langchain_toys import (
    billable_with_usage,
    langchain_llm_spans,
    named,
    one,
    parent_of,
    pipeline,
    sdk_children,
)

CLAUDE = "claude-haiku-4-5"
QUESTION = {"question": "What is the weather in Paris?"}  # 6 words
# Fake provider rule: input = words of all request text + 10, output = 20.
FIRST_INPUT = 6 + 10  # the question
SECOND_INPUT = 6 + 3 + 10  # the question + the tool result "Sunny in Paris"
CONFIG = {"metadata": {"feature": "trip-planner", "user_id": "u9"}, "tags": ["beta"]}


def _openai(fake: FakeProvider, **kwargs: Any) -> ChatOpenAI:
    # An httpx.Timeout (unhashable) makes langchain-openai build its own http clients instead of reusing one cached
    # process-wide, whose pooled connections would belong to an earlier test's (closed) asyncio loop.
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=fake.openai_base_url,
        api_key="x",
        stream_usage=True,
        timeout=httpx.Timeout(30.0),
        **kwargs,
    )


def _anthropic(fake: FakeProvider, **kwargs: Any) -> ChatAnthropic:
    return ChatAnthropic(model=CLAUDE, base_url=fake.anthropic_base_url, api_key="x", **kwargs)


MODELS: dict[str, tuple[Callable[..., Any], str, str]] = {
    "openai": (_openai, "openai", "gpt-4o-mini"),
    "anthropic": (_anthropic, "anthropic", CLAUDE),
}


def _run(chain: Any, mode: str) -> str:
    if mode == "invoke":
        return str(chain.invoke(QUESTION, config=CONFIG))
    if mode == "stream":
        return "".join(chain.stream(QUESTION, config=CONFIG))
    if mode == "ainvoke":
        return str(asyncio.run(chain.ainvoke(QUESTION, config=CONFIG)))

    if mode == "astream_events":  # what LangGraph UIs use: the models stream to LangChain's event handler

        async def events() -> str:
            async for event in chain.astream_events(QUESTION, config=CONFIG, version="v2"):
                if event["event"] == "on_chain_end" and event["name"] == "RunnableSequence":
                    return str(event["data"]["output"])
            raise AssertionError("no end event")

        return asyncio.run(events())

    async def astream() -> str:
        return "".join([part async for part in chain.astream(QUESTION, config=CONFIG)])

    return asyncio.run(astream())


def _assert_one_priced_span_per_call(finished: tuple[ReadableSpan, ...], provider: str, model: str) -> None:
    llm_spans = sorted(langchain_llm_spans(finished), key=lambda s: s.start_time or 0)
    assert len(llm_spans) == 2, [s.name for s in finished]
    agent = one(finished, "invoke_agent weather_agent")
    tool_span = one(finished, "execute_tool get_weather")
    assert parent_of(tool_span, finished) is agent
    for span, input_tokens in zip(llm_spans, (FIRST_INPUT, SECOND_INPUT), strict=True):
        assert span.name == f"chat {model}"
        assert parent_of(span, finished) is agent
        assert span.attributes["gen_ai.provider.name"] == provider
        assert span.attributes["gen_ai.request.model"] == model
        assert span.attributes["gen_ai.response.model"] == model
        assert span.attributes["gen_ai.usage.input_tokens"] == input_tokens
        assert span.attributes["gen_ai.usage.output_tokens"] == 20
        # the provider SDK span is the child of the LangChain span and the one that is priced
        (sdk,) = sdk_children(span, finished)
        assert sdk.attributes["gen_ai.provider.name"] == provider
        assert sdk.attributes["gen_ai.usage.input_tokens"] == input_tokens
        assert span.attributes["llmmeter.billable"] is False
        assert sdk.attributes.get("llmmeter.billable") is not False
        # LangChain metadata reaches the priced span
        assert sdk.attributes["llmmeter.feature"] == "trip-planner"
        assert sdk.attributes["user.id"] == "u9"
        assert sdk.attributes["llmmeter.tag.beta"] == "true"
    assert llm_spans[0].attributes["llmmeter.tool.calls"] == 1
    assert len(billable_with_usage(finished)) == 2  # two model calls, two priced spans, whatever the mode


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream", "astream_events"])
@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_agent_chain_prices_each_model_call_exactly_once(
    fake: FakeProvider, spans: InMemorySpanExporter, instrumented: None, name: str, mode: str
) -> None:
    factory, provider, model = MODELS[name]
    answer = _run(pipeline(factory(fake), stream_model=mode in ("stream", "astream")), mode)
    streamed = mode in ("stream", "astream", "astream_events")

    assert answer.startswith("Fake answer")
    finished = spans.get_finished_spans()
    _assert_one_priced_span_per_call(finished, provider, model)
    for span in langchain_llm_spans(finished):
        assert span.attributes["gen_ai.request.stream"] is streamed
        assert ("gen_ai.response.time_to_first_chunk" in span.attributes) is streamed


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_app_results_are_unchanged(fake: FakeProvider, spans: InMemorySpanExporter, name: str) -> None:
    factory = MODELS[name][0]
    chain, streaming = pipeline(factory(fake)), pipeline(factory(fake), stream_model=True)
    bare = [chain.invoke(QUESTION), list(streaming.stream(QUESTION))]
    llmmeter.instrument(configure_export=False)
    try:
        measured = [chain.invoke(QUESTION), list(streaming.stream(QUESTION))]
    finally:
        llmmeter.uninstrument()
    assert measured == bare
    assert len(langchain_llm_spans(spans.get_finished_spans())) == 4


@pytest.mark.filterwarnings("ignore:Unexpected type for token usage")  # langchain-openai's own, bare too
def test_batched_generate_and_threaded_batch_price_each_call_once(
    fake: FakeProvider, spans: InMemorySpanExporter, instrumented: None
) -> None:
    from langchain_core.messages import HumanMessage

    model = _openai(fake)
    model.generate([[HumanMessage("one")], [HumanMessage("one two three")]])  # two runs, two SDK calls
    finished = spans.get_finished_spans()
    llm_spans = langchain_llm_spans(finished)
    assert sorted(s.attributes["gen_ai.usage.input_tokens"] for s in llm_spans) == [11, 13]
    for span in llm_spans:  # each SDK call is the child of its own run, not of the other one
        (sdk,) = sdk_children(span, finished)
        assert sdk.attributes["gen_ai.usage.input_tokens"] == span.attributes["gen_ai.usage.input_tokens"]
    assert len(billable_with_usage(finished)) == 2

    spans.clear()
    answers = pipeline(model).batch([QUESTION] * 3, config=CONFIG)  # runs in LangChain's thread pool
    assert len(answers) == 3
    finished = spans.get_finished_spans()
    assert len(named(finished, "RunnableSequence")) == 3
    for root in named(finished, "RunnableSequence"):
        in_trace = tuple(s for s in finished if s.context.trace_id == root.context.trace_id)
        _assert_one_priced_span_per_call(in_trace, "openai", "gpt-4o-mini")


def test_anthropic_cache_tokens_are_priced_once(
    fake: FakeProvider, spans: InMemorySpanExporter, instrumented: None
) -> None:
    usage = {"input_tokens": 1200, "cached_tokens": 1000, "cache_creation_input_tokens": 100}
    _anthropic(fake).invoke("Say hello", extra_headers={"x-fake-usage": json.dumps(usage)})

    finished = spans.get_finished_spans()
    (langchain_span,) = langchain_llm_spans(finished)
    assert langchain_span.attributes["gen_ai.usage.input_tokens"] == 1200
    assert langchain_span.attributes["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert langchain_span.attributes["gen_ai.usage.cache_creation.input_tokens"] == 100
    (priced,) = billable_with_usage(finished)
    assert priced in sdk_children(langchain_span, finished)
    assert priced.attributes["gen_ai.usage.input_tokens"] == 1200
    assert priced.attributes["gen_ai.usage.cache_read.input_tokens"] == 1000


def test_provider_error_is_recorded_on_both_spans_and_reaches_the_app(
    fake: FakeProvider, spans: InMemorySpanExporter, instrumented: None
) -> None:
    fake.fail_next(status=500, count=1)
    with pytest.raises(openai.InternalServerError) as raised:
        pipeline(_openai(fake, max_retries=0)).invoke(QUESTION)

    finished = spans.get_finished_spans()
    (llm,) = langchain_llm_spans(finished)
    assert llm.status.status_code == StatusCode.ERROR
    # langchain-openai re-raises the SDK's error as its own subclass: each span names what its layer raised
    assert llm.attributes["error.type"] == type(raised.value).__qualname__ == "OpenAIAPIError"
    assert llm.attributes["http.response.status_code"] == 500
    (sdk,) = sdk_children(llm, finished)
    assert sdk.status.status_code == StatusCode.ERROR
    assert sdk.attributes["error.type"] == "InternalServerError"
    assert llm.attributes["llmmeter.billable"] is False
    assert one(finished, "RunnableSequence").status.status_code == StatusCode.ERROR
    assert billable_with_usage(finished) == []


def test_sdk_call_inside_a_tool_is_a_child_of_the_tool_span(
    fake: FakeProvider, spans: InMemorySpanExporter, instrumented: None
) -> None:
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")

    @tool
    def summarise(text: str) -> str:
        """Summarise a text with a direct OpenAI call."""
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        return reply.choices[0].message.content or ""

    async def both() -> None:
        await summarise.ainvoke({"text": "one two"}, config={"metadata": {"feature": "async-tool"}})

    summarise.invoke({"text": "one two"}, config={"metadata": {"feature": "tool-feature"}})
    asyncio.run(both())

    finished = spans.get_finished_spans()
    tools = [s for s in finished if s.name == "execute_tool summarise"]
    assert len(tools) == 2
    for tool_span, feature in zip(
        sorted(tools, key=lambda s: s.start_time or 0), ("tool-feature", "async-tool"), strict=True
    ):
        (sdk,) = sdk_children(tool_span, finished)
        assert sdk.name == "chat gpt-4o-mini"
        assert sdk.attributes["llmmeter.feature"] == feature
    assert len(billable_with_usage(finished)) == 2


def test_collector_ledger_has_one_row_per_model_call(
    fake: FakeProvider, collector: BackgroundCollector, database_url: str, pg_schema: str, instrumented: None
) -> None:
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
    try:
        pipeline(_openai(fake)).invoke(QUESTION, config=CONFIG)
        list(pipeline(_anthropic(fake), stream_model=True).stream(QUESTION, config=CONFIG))
    finally:
        stop_export(processor)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT provider, input_tokens, output_tokens, feature, user_id FROM {pg_schema}.llm_calls"
            " ORDER BY provider, input_tokens"
        ).fetchall()
    assert rows == [
        ("anthropic", FIRST_INPUT, 20, "trip-planner", "u9"),
        ("anthropic", SECOND_INPUT, 20, "trip-planner", "u9"),
        ("openai", FIRST_INPUT, 20, "trip-planner", "u9"),
        ("openai", SECOND_INPUT, 20, "trip-planner", "u9"),
    ]
