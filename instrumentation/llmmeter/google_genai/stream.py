"""Accumulator for ``generate_content_stream``: every chunk carries ``usageMetadata``; the last one is complete."""

from __future__ import annotations

from typing import Any

from llmmeter import options, semconv
from llmmeter.content import Message, output_attributes, text_part
from llmmeter.google_genai.response import candidate_messages, function_calls, usage_of
from llmmeter.invocation import Invocation
from llmmeter.streaming import Accumulator


class GenerateAccumulator(Accumulator):
    __slots__ = ("capture", "finish_reasons", "model", "response_id", "texts", "tool_calls", "usage")

    def __init__(self) -> None:
        self.model: str | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.finish_reasons: list[str] = []
        self.tool_calls = 0
        self.capture = options.current.capture_content
        self.texts: list[str] = []

    def observe(self, item: Any, invocation: Invocation) -> None:
        if invocation.first_chunk_s is None:
            invocation.chunk()
            self.model = item.model_version
            self.response_id = item.response_id
        if item.usage_metadata is not None:
            self.usage = item.usage_metadata
        candidates = item.candidates
        if candidates:
            calls = function_calls(candidates)
            if calls:
                self.tool_calls += calls
            if self.capture or candidates[0].finish_reason is not None:
                for message in candidate_messages(candidates):
                    if message.finish_reason:
                        self.finish_reasons.append(message.finish_reason)
                    self.texts.extend(p["content"] for p in message.parts if p.get("type") == "text")

    def _attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.tool_calls:
            attrs[semconv.TOOL_CALLS] = self.tool_calls
        if self.capture:
            reason = self.finish_reasons[-1] if self.finish_reasons else None
            output = [Message("assistant", [text_part("".join(self.texts))], reason)]
            attrs.update(output_attributes(output, options.current))
        return attrs

    def finish(self, invocation: Invocation, attributes: dict[str, Any]) -> None:
        invocation.end(
            response_model=self.model,
            response_id=self.response_id,
            finish_reasons=self.finish_reasons,
            usage=usage_of(self.usage),
            attributes=self._attributes(attributes),
        )

    def fail(self, invocation: Invocation, exc: BaseException, attributes: dict[str, Any]) -> None:
        invocation.fail(
            exc, attributes, usage=usage_of(self.usage), response_model=self.model, response_id=self.response_id
        )
