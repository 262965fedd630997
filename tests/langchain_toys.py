"""Shared pieces of the LangChain tests: a tiny tool-calling chat model that reports usage, the agent loop
built from ``langchain_core`` alone, and span helpers."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from opentelemetry.sdk.trace import ReadableSpan


class ToyError(RuntimeError):
    """What ChatToy raises when told to fail."""


class ChatToy(BaseChatModel):
    """A chat model without a provider SDK underneath: ``ls_provider`` "toy", usage like a real one.

    Input tokens = words of all messages + 10 (of which 4 cache reads), output tokens = 5 (of which 2
    reasoning). With tools bound and "weather" in the last human message it answers with a tool call.
    """

    model: str = "toy-1"
    fail: bool = False

    @property
    def _llm_type(self) -> str:
        return "toy"

    def _usage(self, messages: Sequence[BaseMessage]) -> UsageMetadata:
        words = sum(len(str(m.content).split()) for m in messages)
        return UsageMetadata(
            input_tokens=words + 10,
            output_tokens=5,
            total_tokens=words + 15,
            input_token_details={"cache_read": 4},
            output_token_details={"reasoning": 2},
        )

    def _answer(self, messages: list[BaseMessage], tools: Any) -> AIMessage:
        if self.fail:
            raise ToyError("the toy model is broken")
        last = messages[-1]
        metadata = {"model_name": self.model, "finish_reason": "stop"}
        if tools and isinstance(last, HumanMessage) and "weather" in str(last.content):
            name = tools[0]["function"]["name"]
            call = {"name": name, "args": {"location": "Paris"}, "id": f"call_{len(messages)}"}
            metadata["finish_reason"] = "tool_calls"
            return AIMessage(
                content="", tool_calls=[call], usage_metadata=self._usage(messages), response_metadata=metadata
            )
        return AIMessage(
            content=f"toy answer after {len(messages)} messages",
            usage_metadata=self._usage(messages),
            response_metadata=metadata,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages, kwargs.get("tools")))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        answer = self._answer(messages, kwargs.get("tools"))
        words = str(answer.content).split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = AIMessageChunk(
                content=word if i == 0 else " " + word,
                usage_metadata=answer.usage_metadata if last else None,
                response_metadata=answer.response_metadata if last else {},
            )
            yield ChatGenerationChunk(message=chunk)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


@tool
def get_weather(location: str) -> str:
    """The current weather in a city."""
    return f"Sunny in {location}"


@tool
def broken_tool(location: str) -> str:
    """A tool that always fails."""
    raise ValueError("the weather station is down")


def _messages(value: PromptValue | str) -> list[BaseMessage]:
    return value.to_messages() if isinstance(value, PromptValue) else [HumanMessage(value)]


def agent(
    model: Any, tools: Sequence[Any] = (get_weather,), name: str = "weather_agent", stream_model: bool = False
) -> Runnable[Any, AIMessage]:
    """A tool-calling agent loop from ``langchain_core`` alone (sync and async), named like LangChain v1 agents.

    ``stream_model`` makes each model call a ``stream``/``astream`` (chunks summed into the reply).
    """
    bound = model.bind_tools(list(tools))
    by_name = {t.name: t for t in tools}

    def ask(messages: list[BaseMessage]) -> AIMessage:
        if not stream_model:
            return bound.invoke(messages)
        return functools.reduce(operator.add, bound.stream(messages))

    async def aask(messages: list[BaseMessage]) -> AIMessage:
        if not stream_model:
            return await bound.ainvoke(messages)
        chunks = [chunk async for chunk in bound.astream(messages)]
        return functools.reduce(operator.add, chunks)

    def run(value: PromptValue | str) -> AIMessage:
        messages = _messages(value)
        while True:
            reply: AIMessage = ask(messages)
            messages.append(reply)
            if not reply.tool_calls:
                return reply
            for call in reply.tool_calls:
                result: ToolMessage = by_name[call["name"]].invoke(call)
                messages.append(result)

    async def arun(value: PromptValue | str) -> AIMessage:
        messages = _messages(value)
        while True:
            reply: AIMessage = await aask(messages)
            messages.append(reply)
            if not reply.tool_calls:
                return reply
            for call in reply.tool_calls:
                result: ToolMessage = await by_name[call["name"]].ainvoke(call)
                messages.append(result)

    return RunnableLambda(run, afunc=arun).with_config(run_name=name, metadata={"lc_agent_name": name})


def pipeline(model: Any, **agent_kwargs: Any) -> Runnable[dict[str, str], Any]:
    """prompt -> agent -> text: a chain with a tool-calling agent step."""
    from langchain_core.output_parsers import StrOutputParser

    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    return prompt | agent(model, **agent_kwargs) | StrOutputParser()


# --- span helpers -------------------------------------------------------------------------------------
def parent_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> ReadableSpan | None:
    if span.parent is None:
        return None
    for other in spans:
        if other.context.span_id == span.parent.span_id:
            return other
    return None


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in spans]}"
    return found[0]


def billable_with_usage(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The spans the collector prices: GenAI usage present and not marked ``llmmeter.billable=false``."""
    return [
        s
        for s in spans
        if s.attributes
        and s.attributes.get("gen_ai.usage.input_tokens") is not None
        and s.attributes.get("llmmeter.billable") is not False
    ]


def langchain_llm_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.attributes and s.attributes.get("llmmeter.langchain.run_type") == "llm"]


def sdk_children(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """llmmeter's provider SDK spans (not LangChain's, not an SDK's own) whose parent is ``span``."""
    return [
        s
        for s in spans
        if s.parent is not None
        and s.parent.span_id == span.context.span_id
        and s.instrumentation_scope is not None
        and s.instrumentation_scope.name == "llmmeter"
        and s.attributes
        and "llmmeter.langchain.run_type" not in s.attributes
    ]
