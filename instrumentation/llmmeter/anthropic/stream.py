"""Accumulator for Anthropic message streams (``stream=True`` and the ``messages.stream()`` helper).

``message_start`` carries the input side of usage (and ``output_tokens: 1``); each ``message_delta`` carries
the cumulative output count (and, in newer API versions, the input side again), so the last one wins.
"""

from __future__ import annotations

from typing import Any

from llmmeter import options, semconv
from llmmeter.anthropic.response import get, usage_of
from llmmeter.content import Message, output_attributes, text_part, tool_call_part
from llmmeter.invocation import Invocation, TokenUsage
from llmmeter.streaming import Accumulator


class MessageAccumulator(Accumulator):
    __slots__ = (
        "capture",
        "model",
        "output_tokens",
        "parts",
        "response_id",
        "start_usage",
        "stop_reason",
        "tier",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.model: str | None = None
        self.response_id: str | None = None
        self.start_usage: Any = None
        self.output_tokens: int | None = None
        self.stop_reason: str | None = None
        self.tier: str | None = None
        self.tool_calls = 0
        self.capture = options.current.capture_content
        self.parts: list[dict[str, Any]] = []

    def observe(self, item: Any, invocation: Invocation) -> None:
        if invocation.first_chunk_s is None:
            invocation.chunk()
        kind = item.type
        if kind == "content_block_delta":
            if self.capture:
                text = getattr(item.delta, "text", None)
                if text and self.parts and self.parts[-1].get("type") == "text":
                    self.parts[-1]["content"] += text
            return
        if kind == "message_start":
            message = item.message
            self.model = message.model
            self.response_id = message.id
            self.start_usage = message.usage
            self.output_tokens = message.usage.output_tokens
            self.tier = getattr(message.usage, "service_tier", None)
        elif kind == "message_delta":
            usage = item.usage
            self.output_tokens = usage.output_tokens
            if self.start_usage is not None:
                self.start_usage = _merged(self.start_usage, usage)
            self.stop_reason = item.delta.stop_reason or self.stop_reason
        elif kind == "content_block_start":
            block = item.content_block
            if block.type in ("tool_use", "server_tool_use"):
                self.tool_calls += 1
                if self.capture:
                    self.parts.append(tool_call_part(block.id, block.name, getattr(block, "input", None)))
            elif self.capture and block.type == "text":
                self.parts.append(text_part(block.text or ""))

    def _usage(self) -> TokenUsage | None:
        return usage_of(self.start_usage, self.output_tokens)

    def _attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.tool_calls:
            attrs[semconv.TOOL_CALLS] = self.tool_calls
        if self.tier:
            attrs[semconv.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER] = self.tier
        if self.capture:
            attrs.update(output_attributes([Message("assistant", self.parts, self.stop_reason)], options.current))
        return attrs

    def finish(self, invocation: Invocation, attributes: dict[str, Any]) -> None:
        invocation.end(
            response_model=self.model,
            response_id=self.response_id,
            finish_reasons=[self.stop_reason] if self.stop_reason else None,
            usage=self._usage(),
            attributes=self._attributes(attributes),
        )

    def fail(self, invocation: Invocation, exc: BaseException, attributes: dict[str, Any]) -> None:
        invocation.fail(exc, attributes, usage=self._usage(), response_model=self.model, response_id=self.response_id)


def _merged(start: Any, delta: Any) -> dict[str, Any]:
    """The usage as reported by the latest event that reported each part."""
    keys = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens_details")
    merged = {key: get(start, key) for key in (*keys, "cache_creation")}
    for key in keys:
        value = getattr(delta, key, None)
        if value is not None:
            merged[key] = value
    return merged
