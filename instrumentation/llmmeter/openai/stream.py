"""Accumulators for OpenAI streams: chat/completions chunks and Responses API events."""

from __future__ import annotations

from typing import Any

from llmmeter import options, semconv
from llmmeter.content import Message, output_attributes, text_part
from llmmeter.invocation import Invocation
from llmmeter.openai.response import chat_usage, response_attributes, response_finish_reason, responses_usage
from llmmeter.streaming import Accumulator


class ChatAccumulator(Accumulator):
    """``chat.completion.chunk`` and legacy ``text_completion`` chunks: usage only in the final chunk
    (when ``stream_options.include_usage`` was sent), finish reasons and tool calls per choice."""

    __slots__ = ("capture", "finish_reasons", "model", "response_id", "service_tier", "texts", "tool_calls", "usage")

    def __init__(self) -> None:
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.service_tier: str | None = None
        self.finish_reasons: dict[int, str] = {}
        self.tool_calls = 0
        self.capture = options.current.capture_content
        self.texts: dict[int, list[str]] = {}

    def observe(self, item: Any, invocation: Invocation) -> None:
        # Runs once per chunk: plain attribute reads, the usual chunk (one choice, a text delta) takes no branch.
        if invocation.first_chunk_s is None:
            invocation.chunk()
            self.model = item.model
            self.response_id = item.id
        usage = item.usage
        if usage is not None:
            self.usage = usage
            self.service_tier = getattr(item, "service_tier", None)
        for choice in item.choices:
            reason = choice.finish_reason
            if reason:
                self.finish_reasons[choice.index] = reason
            delta = getattr(choice, "delta", None)
            if delta is not None:
                calls = delta.tool_calls
                if calls:
                    self.tool_calls += sum(1 for c in calls if c.id)
                if self.capture:
                    self._capture(choice.index, delta.content)
            elif self.capture:
                self._capture(choice.index, getattr(choice, "text", None))

    def _capture(self, index: int, text: str | None) -> None:
        if text:
            self.texts.setdefault(index, []).append(text)

    def _attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.tool_calls:
            attrs[semconv.TOOL_CALLS] = self.tool_calls
        if self.service_tier:
            attrs[semconv.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER] = self.service_tier
        if self.capture:
            outputs = [
                Message("assistant", [text_part("".join(self.texts.get(i, ())))], self.finish_reasons.get(i))
                for i in sorted(set(self.texts) | set(self.finish_reasons))
            ]
            attrs.update(output_attributes(outputs, options.current))
        return attrs

    def finish(self, invocation: Invocation, attributes: dict[str, Any]) -> None:
        invocation.end(
            response_model=self.model,
            response_id=self.response_id,
            finish_reasons=[self.finish_reasons[i] for i in sorted(self.finish_reasons)],
            usage=chat_usage(self.usage),
            attributes=self._attributes(attributes),
        )

    def fail(self, invocation: Invocation, exc: BaseException, attributes: dict[str, Any]) -> None:
        invocation.fail(
            exc, attributes, usage=chat_usage(self.usage), response_model=self.model, response_id=self.response_id
        )


_FINAL_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))


class ResponsesAccumulator(Accumulator):
    """Responses API events: the terminal ``response.completed|incomplete|failed`` event carries usage."""

    __slots__ = ("response",)

    def __init__(self) -> None:
        self.response: Any = None

    def observe(self, item: Any, invocation: Invocation) -> None:
        if invocation.first_chunk_s is None:
            invocation.chunk()
        kind = item.type
        if kind == "response.created" or kind in _FINAL_EVENTS:
            self.response = item.response

    def finish(self, invocation: Invocation, attributes: dict[str, Any]) -> None:
        response = self.response
        if response is None:
            invocation.end(usage=None, attributes=attributes)
            return
        reason = response_finish_reason(response)
        attributes.update(response_attributes(response))
        invocation.end(
            response_model=response.model,
            response_id=response.id,
            finish_reasons=[reason] if reason else None,
            usage=responses_usage(response.usage),
            attributes=attributes,
        )

    def fail(self, invocation: Invocation, exc: BaseException, attributes: dict[str, Any]) -> None:
        response = self.response
        invocation.fail(
            exc,
            attributes,
            usage=responses_usage(getattr(response, "usage", None)),
            response_model=getattr(response, "model", None),
            response_id=getattr(response, "id", None),
        )
