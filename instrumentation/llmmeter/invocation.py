"""One GenAI call as a span: started with what a sampler needs, ended in one place with usage or error.

Every provider wrapper uses this, so all spans carry the same names (semconv v1.37+) and the same
metrics are recorded. Nothing here may raise into the app: wrappers call it through ``guard``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmmeter import semconv
from llmmeter.attribution import current_attributes
from llmmeter.retries import Attempts
from llmmeter.telemetry import Instruments

logger = logging.getLogger("llmmeter")
_logged: set[str] = set()


def log_once(where: str, exc: BaseException) -> None:
    """Log an error inside llmmeter once per place, never raise it: the app must not notice us."""
    if where not in _logged:
        _logged.add(where)
        logger.warning("llmmeter: instrumentation error in %s (ignored): %r", where, exc, exc_info=exc)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an SDK exception carries (openai/anthropic ``status_code``, google-genai ``code``)."""
    for name in ("status_code", "code"):
        value = getattr(exc, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


# One call, one priced span. A framework span that wraps a model call (a LangChain LLM run) enters an
# ``LlmRun`` into the context; a provider SDK span started inside marks it covered, and the framework span
# then carries ``llmmeter.billable=false`` because the SDK span, closer to the wire, carries the usage.
_LLM_RUN_KEY = context.create_key("llmmeter.llm_run")


class LlmRun:
    __slots__ = ("covered",)

    def __init__(self) -> None:
        self.covered = False


def llm_run_context(run: LlmRun, ctx: context.Context | None = None) -> context.Context:
    """A context in which provider SDK spans mark ``run`` as covered."""
    return context.set_value(_LLM_RUN_KEY, run, ctx)


@dataclass(slots=True)
class TokenUsage:
    """Usage as the GenAI conventions count it: input includes cached tokens, output includes reasoning."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    input_audio_tokens: int | None = None
    output_audio_tokens: int | None = None

    def attributes(self) -> dict[str, int]:
        attrs: dict[str, int] = {}
        for key, value in (
            (semconv.GEN_AI_USAGE_INPUT_TOKENS, self.input_tokens),
            (semconv.GEN_AI_USAGE_OUTPUT_TOKENS, self.output_tokens),
            (semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, self.cache_read_tokens),
            (semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, self.cache_write_tokens),
            (semconv.CACHE_CREATION_1H_INPUT_TOKENS, self.cache_write_1h_tokens),
            (semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, self.reasoning_tokens),
            (semconv.AUDIO_INPUT_TOKENS, self.input_audio_tokens),
            (semconv.AUDIO_OUTPUT_TOKENS, self.output_audio_tokens),
        ):
            if value is not None:
                attrs[key] = value
        return attrs


class Invocation:
    """A started GenAI client span; call ``end`` or ``fail`` exactly once."""

    __slots__ = ("_ended", "_inst", "_metric_attrs", "_start", "attempts", "first_chunk_s", "span")

    def __init__(
        self,
        inst: Instruments,
        operation: str,
        provider: str,
        request_model: str,
        attributes: dict[str, Any],
        *,
        start_time_ns: int | None = None,
    ) -> None:
        attributes[semconv.GEN_AI_OPERATION_NAME] = operation
        attributes[semconv.GEN_AI_PROVIDER_NAME] = provider
        if request_model:
            attributes[semconv.GEN_AI_REQUEST_MODEL] = request_model
        attributes.update(current_attributes())
        run = context.get_value(_LLM_RUN_KEY)
        if run is not None:
            run.covered = True  # type: ignore[attr-defined]
        self._inst = inst
        self._metric_attrs: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: operation,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.GEN_AI_REQUEST_MODEL: request_model,
        }
        for key in (semconv.SERVER_ADDRESS, semconv.SERVER_PORT):
            if key in attributes:
                self._metric_attrs[key] = attributes[key]
        name = f"{operation} {request_model}" if request_model else operation
        self.span: Span = inst.tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, start_time=start_time_ns
        )
        self._start = time.perf_counter()
        self.first_chunk_s: float | None = None
        self._ended = False
        self.attempts: Attempts | None = None  # set by wrappers that count the SDK's internal retries

    @property
    def ended(self) -> bool:
        return self._ended

    def chunk(self) -> None:
        """Mark a streamed chunk; the first one sets time to first chunk."""
        if self.first_chunk_s is None:
            self.first_chunk_s = time.perf_counter() - self._start

    def end(
        self,
        *,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reasons: Sequence[str] | None = None,
        usage: TokenUsage | None = None,
        attributes: Mapping[str, Any] | None = None,
        end_time_ns: int | None = None,
        duration_s: float | None = None,
    ) -> None:
        """End successfully with what the response reported. ``usage=None`` marks the usage as missing.

        ``end_time_ns`` / ``duration_s`` are for spans recorded after the fact (``llmmeter.record``).
        """
        if self._ended:
            return
        self._ended = True
        elapsed = duration_s if duration_s is not None else time.perf_counter() - self._start
        span = self.span
        attrs: dict[str, Any] = dict(attributes) if attributes else {}
        if response_model:
            attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
            self._metric_attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
        if response_id:
            attrs[semconv.GEN_AI_RESPONSE_ID] = response_id
        if finish_reasons:
            attrs[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
        if usage is None:
            attrs[semconv.USAGE_MISSING] = True
        else:
            attrs.update(usage.attributes())
        if self.first_chunk_s is not None:
            attrs[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = self.first_chunk_s
        if self.attempts is not None and self.attempts.count > 1:
            attrs[semconv.RETRIES] = self.attempts.count - 1
        span.set_attributes(attrs)
        span.end(end_time_ns)
        self._record_metrics(elapsed, usage)

    def fail(
        self,
        exc: BaseException,
        attributes: Mapping[str, Any] | None = None,
        *,
        usage: TokenUsage | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
    ) -> None:
        """End with an error: ``error.type`` is the exception's class name, the status carries its message.

        ``usage`` is what the provider reported before failing (a stream that broke after its first events).
        """
        if self._ended:
            return
        self._ended = True
        elapsed = time.perf_counter() - self._start
        error_type = type(exc).__qualname__
        span = self.span
        attrs: dict[str, Any] = dict(attributes) if attributes else {}
        attrs[semconv.ERROR_TYPE] = error_type
        status_code = http_status(exc)
        if status_code is not None:
            attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = status_code
        if self.first_chunk_s is not None:
            attrs[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = self.first_chunk_s
        if self.attempts is not None and self.attempts.count > 1:
            attrs[semconv.RETRIES] = self.attempts.count - 1
        if response_model:
            attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
            self._metric_attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
        if response_id:
            attrs[semconv.GEN_AI_RESPONSE_ID] = response_id
        if usage is not None:
            attrs.update(usage.attributes())
        span.set_attributes(attrs)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
        span.end()
        self._metric_attrs[semconv.ERROR_TYPE] = error_type
        self._record_metrics(elapsed, usage)

    def _record_metrics(self, elapsed: float, usage: TokenUsage | None) -> None:
        inst, attrs = self._inst, self._metric_attrs
        inst.duration.record(elapsed, attrs)
        if self.first_chunk_s is not None:
            inst.time_to_first_chunk.record(self.first_chunk_s, attrs)
        if usage is not None:
            if usage.input_tokens is not None:
                inst.token_usage.record(usage.input_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: "input"})
            if usage.output_tokens is not None:
                inst.token_usage.record(usage.output_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: "output"})
