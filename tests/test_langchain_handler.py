"""The LangChain callback handler on ``langchain-core`` models with no provider SDK underneath (``ChatToy``):
span tree, usage, attribution, streaming, async, errors, registration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.language_models import LLM
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.messages import AIMessage
from langchain_core.outputs import GenerationChunk
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.context import _configure_hooks
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import llmmeter
from llmmeter.langchain import LlmMeterCallbackHandler

from .langchain_toys import (
    ChatToy,
    ToyError,
    billable_with_usage,
    broken_tool,
    langchain_llm_spans,
    named,
    one,
    parent_of,
    pipeline,
)

QUESTION = {"question": "What is the weather in Paris?"}  # 6 words


def test_agent_chain_is_a_waterfall_of_spans_with_usage_on_each_model_call(
    spans: InMemorySpanExporter, instrumented: None
) -> None:
    answer = pipeline(ChatToy()).invoke(QUESTION)

    assert answer == "toy answer after 3 messages"
    finished = spans.get_finished_spans()
    root = one(finished, "RunnableSequence")
    assert root.kind == SpanKind.INTERNAL and root.attributes["llmmeter.langchain.run_type"] == "chain"
    assert parent_of(one(finished, "ChatPromptTemplate"), finished) is root
    assert parent_of(one(finished, "StrOutputParser"), finished) is root
    agent = one(finished, "invoke_agent weather_agent")
    assert parent_of(agent, finished) is root
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "weather_agent"
    tool = one(finished, "execute_tool get_weather")
    assert parent_of(tool, finished) is agent
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "get_weather"
    assert tool.attributes["gen_ai.tool.call.id"] == "call_1"
    first, second = sorted(named(finished, "chat toy-1"), key=lambda s: s.start_time or 0)
    assert parent_of(first, finished) is agent and parent_of(second, finished) is agent
    assert first.end_time is not None and tool.start_time is not None and first.end_time <= tool.start_time
    for span in (first, second):
        assert span.kind == SpanKind.CLIENT
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "toy"
        assert span.attributes["gen_ai.request.model"] == "toy-1"
        assert span.attributes["gen_ai.response.model"] == "toy-1"
        assert span.attributes["llmmeter.tool.definitions"] == 1
        assert span.attributes["gen_ai.usage.output_tokens"] == 5
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 4
        assert span.attributes["gen_ai.usage.reasoning.output_tokens"] == 2
        assert span.attributes["gen_ai.request.stream"] is False
    assert first.attributes["gen_ai.usage.input_tokens"] == 6 + 10
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert first.attributes["llmmeter.tool.calls"] == 1
    # second call: question + empty tool-call message + "Sunny in Paris"
    assert second.attributes["gen_ai.usage.input_tokens"] == 6 + 3 + 10
    # no provider SDK underneath: the LangChain spans are the billable ones, each exactly once
    assert billable_with_usage(finished) == [first, second] or billable_with_usage(finished) == [second, first]


def test_app_results_are_unchanged_by_llmmeter(spans: InMemorySpanExporter) -> None:
    chain = pipeline(ChatToy())
    bare = (chain.invoke(QUESTION), list(chain.stream(QUESTION)), asyncio.run(chain.ainvoke(QUESTION)))
    assert spans.get_finished_spans() == ()
    llmmeter.instrument(configure_export=False)
    try:
        measured = (chain.invoke(QUESTION), list(chain.stream(QUESTION)), asyncio.run(chain.ainvoke(QUESTION)))
    finally:
        llmmeter.uninstrument()
    assert measured == bare
    assert len(langchain_llm_spans(spans.get_finished_spans())) == 6
    spans.clear()
    chain.invoke(QUESTION)
    assert spans.get_finished_spans() == ()  # uninstrument() unregistered the handler


def test_attribution_from_llmmeter_attributes_and_langchain_metadata_reaches_every_span(
    spans: InMemorySpanExporter, instrumented: None
) -> None:
    config = {
        "metadata": {
            "feature": "trip-planner",
            "user_id": "u7",
            "thread_id": "t-1",
            "tier": "gold",
            "nested": {"a": 1},
        },
        "tags": ["beta"],
    }
    with llmmeter.attributes(project="travel", feature="overridden", tags={"team": "core"}):
        pipeline(ChatToy()).invoke(QUESTION, config=config)

    finished = spans.get_finished_spans()
    assert len(finished) == 7
    for span in finished:
        attrs = span.attributes
        assert attrs["llmmeter.project"] == "travel", span.name
        assert attrs["llmmeter.feature"] == "trip-planner", span.name  # LangChain metadata is the inner scope
        assert attrs["user.id"] == "u7"
        assert attrs["session.id"] == "t-1"  # LangSmith's thread key
        assert attrs["llmmeter.tag.team"] == "core"
        assert attrs["llmmeter.tag.tier"] == "gold"
        assert attrs["llmmeter.tag.beta"] == "true"
        assert "llmmeter.tag.nested" not in attrs
        # LangChain's own metadata and structural tags are not attribution
        assert not [k for k in attrs if k.startswith(("llmmeter.tag.ls_", "llmmeter.tag.lc_", "llmmeter.tag.seq:"))]


def test_streaming_records_time_to_first_chunk_and_usage(spans: InMemorySpanExporter, instrumented: None) -> None:
    chunks = list(ChatToy().stream("hello there"))

    assert "".join(str(c.content) for c in chunks) == "toy answer after 1 messages"
    span = one(spans.get_finished_spans(), "chat toy-1")
    assert span.attributes["gen_ai.request.stream"] is True
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] < (span.end_time - span.start_time) / 1e9
    assert span.attributes["gen_ai.usage.input_tokens"] == 12
    assert span.attributes["gen_ai.usage.output_tokens"] == 5
    assert "llmmeter.billable" not in span.attributes


def test_concurrent_async_runs_keep_their_own_parents_and_attribution(
    spans: InMemorySpanExporter, instrumented: None
) -> None:
    chain = pipeline(ChatToy())

    async def main() -> list[str]:
        async def one_run(i: int) -> str:
            if i % 2:
                return await chain.ainvoke(QUESTION, config={"metadata": {"user_id": f"user-{i}"}})
            parts = [part async for part in chain.astream(QUESTION, config={"metadata": {"user_id": f"user-{i}"}})]
            return "".join(parts)

        return await asyncio.gather(*(one_run(i) for i in range(6)))

    assert asyncio.run(main()) == ["toy answer after 3 messages"] * 6
    finished = spans.get_finished_spans()
    roots = named(finished, "RunnableSequence")
    assert len(roots) == 6
    for root in roots:
        user = root.attributes["user.id"]
        trace_spans = [s for s in finished if s.context.trace_id == root.context.trace_id]
        assert len(trace_spans) == 7, [s.name for s in trace_spans]
        assert all(s.attributes["user.id"] == user for s in trace_spans)
        agent = one(trace_spans, "invoke_agent weather_agent")
        assert parent_of(agent, trace_spans) is root
        assert all(parent_of(s, trace_spans) is agent for s in named(trace_spans, "chat toy-1"))
        assert parent_of(one(trace_spans, "execute_tool get_weather"), trace_spans) is agent
    assert len(billable_with_usage(finished)) == 12


def test_langchain_runs_nest_under_the_apps_current_span(spans: InMemorySpanExporter, instrumented: None) -> None:
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("handle request") as request:
        ChatToy().invoke("hi")
        after = trace.get_current_span()
    assert after is request  # llmmeter restored the app's context
    finished = spans.get_finished_spans()
    assert parent_of(one(finished, "chat toy-1"), finished) is one(finished, "handle request")


def test_model_error_is_recorded_and_reaches_the_app_unchanged(spans: InMemorySpanExporter, instrumented: None) -> None:
    with pytest.raises(ToyError, match="the toy model is broken"):
        pipeline(ChatToy(fail=True)).invoke(QUESTION)

    finished = spans.get_finished_spans()
    llm = one(finished, "chat toy-1")
    assert llm.status.status_code == StatusCode.ERROR
    assert llm.attributes["error.type"] == "ToyError"
    for name in ("invoke_agent weather_agent", "RunnableSequence"):
        span = one(finished, name)
        assert span.status.status_code == StatusCode.ERROR and span.attributes["error.type"] == "ToyError"
    assert billable_with_usage(finished) == []


def test_tool_error_is_recorded_on_the_tool_span(spans: InMemorySpanExporter, instrumented: None) -> None:
    with pytest.raises(ValueError, match="station is down"):
        pipeline(ChatToy(), tools=(broken_tool,)).invoke(QUESTION)

    tool = one(spans.get_finished_spans(), "execute_tool broken_tool")
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.attributes["error.type"] == "ValueError"


def test_explicit_handler_is_not_doubled(spans: InMemorySpanExporter, instrumented: None) -> None:
    pipeline(ChatToy()).invoke(QUESTION, config={"callbacks": [LlmMeterCallbackHandler()]})
    finished = spans.get_finished_spans()
    assert len(finished) == 7
    assert len(named(finished, "chat toy-1")) == 2


def test_explicit_handler_works_without_instrument(spans: InMemorySpanExporter) -> None:
    reply = ChatToy().invoke("hi", config={"callbacks": [LlmMeterCallbackHandler()]})
    assert isinstance(reply, AIMessage)
    span = one(spans.get_finished_spans(), "chat toy-1")
    assert span.attributes["gen_ai.usage.input_tokens"] == 11


def test_instrument_registers_one_configure_hook_and_uninstrument_removes_it() -> None:
    before = len(_configure_hooks)
    llmmeter.instrument(configure_export=False)
    llmmeter.instrument(configure_export=False)
    try:
        assert len(_configure_hooks) == before + 1
    finally:
        llmmeter.uninstrument()
    assert len(_configure_hooks) == before


def test_llm_cache_hits_are_not_billable(spans: InMemorySpanExporter, instrumented: None) -> None:
    model = ChatToy(cache=InMemoryCache())
    first = model.invoke("cached question")
    second = model.invoke("cached question")

    assert first.content == second.content
    calls = named(spans.get_finished_spans(), "chat toy-1")
    assert len(calls) == 2
    assert billable_with_usage(calls) == [calls[0]]
    assert calls[1].attributes["llmmeter.langchain.cache_hit"] is True
    assert calls[1].attributes["llmmeter.billable"] is False


def test_completion_llm_runs_are_text_completion_spans(spans: InMemorySpanExporter, instrumented: None) -> None:
    llm = FakeListLLM(responses=["one", "two"])
    assert sorted(llm.batch(["a", "b"])) == ["one", "two"]

    completions = [
        s for s in spans.get_finished_spans() if s.attributes.get("gen_ai.operation.name") == "text_completion"
    ]
    assert len(completions) >= 2
    for span in completions:
        assert span.kind == SpanKind.CLIENT
        assert span.name == "text_completion"
        assert span.attributes["llmmeter.usage.missing"] is True  # FakeListLLM reports no usage


def test_billable_langchain_spans_record_genai_metrics(metric_reader: InMemoryMetricReader, instrumented: None) -> None:
    ChatToy(model="toy-metrics").invoke("one two three")

    tokens: dict[str, int] = {}
    data = metric_reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope_metrics in resource.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name != "gen_ai.client.token.usage":
                    continue
                for point in metric.data.data_points:
                    if point.attributes.get("gen_ai.request.model") == "toy-metrics":
                        tokens[str(point.attributes["gen_ai.token.type"])] = point.sum
    assert tokens == {"input": 13, "output": 5}


def test_app_context_is_current_between_stream_chunks_and_after_async_runs(
    spans: InMemorySpanExporter, instrumented: None
) -> None:
    tracer = trace.get_tracer("app")
    model = ChatToy()
    with tracer.start_as_current_span("request") as request:
        seen = []
        for _chunk in model.stream("hello there"):
            seen.append(trace.get_current_span())

        async def main() -> object:
            await model.ainvoke("hi")
            after_ainvoke = trace.get_current_span()
            async for _chunk in model.astream("hi"):
                seen.append(trace.get_current_span())
            return after_ainvoke

        assert asyncio.run(main()) is request
    assert seen and all(span is request for span in seen)  # the LLM span never leaks into the app's code
    finished = spans.get_finished_spans()
    assert [parent_of(s, finished) for s in named(finished, "chat toy-1")] == [one(finished, "request")] * 3


class _StreamingToyLLM(LLM):
    """A completion LLM that really streams (``FakeStreamingListLLM`` only splits an ``invoke``)."""

    @property
    def _llm_type(self) -> str:
        return "toy-llm"

    def _call(self, prompt: str, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> str:
        return "abc"

    def _stream(
        self, prompt: str, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        for char in "abc":
            chunk = GenerationChunk(text=char)
            if run_manager is not None:
                run_manager.on_llm_new_token(char, chunk=chunk)
            yield chunk


def test_streamed_completion_llm(spans: InMemorySpanExporter, instrumented: None) -> None:
    assert "".join(_StreamingToyLLM().stream("x")) == "abc"
    (span,) = spans.get_finished_spans()
    assert span.attributes["gen_ai.operation.name"] == "text_completion"
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_legacy_agent_runs_become_agent_spans(spans: InMemorySpanExporter) -> None:
    """AgentExecutor-style agents report ``on_agent_action`` on their own chain run (driven directly here:
    the legacy agents live in langchain-classic, which the app may not install)."""
    from uuid import uuid4

    from langchain_core.agents import AgentAction

    handler = LlmMeterCallbackHandler()
    agent_run, tool_run = uuid4(), uuid4()
    handler.on_chain_start({"name": "ResearchAgent"}, {"input": "q"}, run_id=agent_run)
    handler.on_agent_action(AgentAction("search", "q", "log"), run_id=agent_run)
    handler.on_tool_start({"name": "search"}, "q", run_id=tool_run, parent_run_id=agent_run)
    handler.on_tool_end("result", run_id=tool_run)
    handler.on_chain_end({"output": "a"}, run_id=agent_run)

    finished = spans.get_finished_spans()
    agent = one(finished, "invoke_agent ResearchAgent")
    assert agent.attributes["gen_ai.agent.name"] == "ResearchAgent"
    assert agent.attributes["llmmeter.langchain.run_type"] == "agent"
    assert parent_of(one(finished, "execute_tool search"), finished) is agent


def test_a_stream_the_app_stops_reading_is_not_an_error(spans: InMemorySpanExporter, instrumented: None) -> None:
    chain = pipeline(ChatToy(), stream_model=True) | RunnableLambda(lambda text: text)
    for chunk in ChatToy().stream("hello there"):
        assert chunk.content == "toy"
        break
    for _part in chain.stream(QUESTION):
        break

    finished = spans.get_finished_spans()
    llm = finished[0]
    assert llm.name == "chat toy-1"
    assert llm.status.status_code == StatusCode.UNSET
    assert llm.attributes["llmmeter.stream.closed_early"] is True
    assert llm.attributes["llmmeter.usage.missing"] is True  # ChatToy sends usage with its last chunk
    assert all(s.status.status_code == StatusCode.UNSET for s in finished)
