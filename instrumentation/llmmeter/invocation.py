"""One GenAI call as a span: started with what a sampler needs, ended in one place with usage or error.

Every provider wrapper uses this, so all spans carry the same names (semconv v1.37+) and the same
metrics are recorded. Nothing here may raise into the app: wrappers call it through ``guard``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmmeter import options, recorder, semconv, spanids
from llmmeter.attribution import KEY as ATTRIBUTION_KEY
from llmmeter.recorder import LateAttributes, later
from llmmeter.retries import Attempts, current_context
from llmmeter.semconv import GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL
from llmmeter.telemetry import Instruments

logger = logging.getLogger("llmmeter")
_logged: set[str] = set()
_SAMPLER_KEYS = (semconv.SERVER_ADDRESS, semconv.SERVER_PORT)  # also on the metric points


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


_USAGE_KEYS = (
    ("input_tokens", semconv.GEN_AI_USAGE_INPUT_TOKENS),
    ("output_tokens", semconv.GEN_AI_USAGE_OUTPUT_TOKENS),
    ("cache_read_tokens", semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ("cache_write_tokens", semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
    ("cache_write_1h_tokens", semconv.CACHE_CREATION_1H_INPUT_TOKENS),
    ("reasoning_tokens", semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
    ("input_audio_tokens", semconv.AUDIO_INPUT_TOKENS),
    ("output_audio_tokens", semconv.AUDIO_OUTPUT_TOKENS),
)


@dataclass(slots=True)
class TokenUsage:
    """Usage as the GenAI conventions count it: input includes cached tokens, output includes reasoning.

    The field order is part of the interface: hot paths construct it positionally.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    input_audio_tokens: int | None = None
    output_audio_tokens: int | None = None

    def attributes(self) -> dict[str, int]:
        return self.add_to({})

    def add_to(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Add the reported counts (absent ones are not zero: they are left out) to ``attrs``."""
        for field, key in _USAGE_KEYS:
            value = getattr(self, field)
            if value is not None:
                attrs[key] = value
        return attrs


# What ``end``/``fail`` were given, read off the call path: response model, response id, finish reasons,
# usage, extra span attributes, the SDK's retries, and for a failure (error.type, HTTP status, message).
_Outcome = tuple[
    "str | None",
    "str | None",
    "Sequence[str] | None",
    "TokenUsage | None",
    "Mapping[str, Any] | None",
    int,
    "tuple[str, int | None, str] | None",
]


class Invocation(Attempts):
    """One GenAI call's span; call ``end`` or ``fail`` (or ``end_later``) exactly once.

    On the call path only the times, the parent context, the request (``request``) and what the response
    reported (ids, finish reasons, usage, as given to ``end``/``fail``) are kept; the span is created (with the
    start time and parent taken on the call path), given its attributes (and captured content) and ended, and
    the metric points are recorded, off the call path (``llmmeter.recorder``). Its ids are reserved on the call
    path (``llmmeter.spanids``) and ``ctx``, with them current, is attached while the SDK call runs: spans the
    SDK or an HTTP instrumentation opens inside the call are its children.
    ``on_call_path=False`` (spans recorded by hand, after the fact or around the app's own code): the span is
    created now, current for nested calls, and ended on the caller's thread.
    """

    __slots__ = (
        "_attribution",
        "_elapsed",
        "_end_ns",
        "_ended",
        "_ids",
        "_inst",
        "_late",
        "_off_path",
        "_operation",
        "_outcome",
        "_provider",
        "_reader",
        "_request_model",
        "_result",
        "_server",
        "_start",
        "_start_ns",
        "ctx",
        "detach_at_end",
        "first_chunk_s",
        "request",
        "span",
    )  # fmt: skip

    def __init__(
        self,
        inst: Instruments,
        operation: str,
        provider: str,
        request_model: str,
        attributes: dict[str, Any],
        *,
        server: Mapping[str, Any] | None = None,
        start_time_ns: int | None = None,
        on_call_path: bool = True,
    ) -> None:
        """``attributes``: what is known before the call (taken over: the caller must not reuse the dict).

        ``server``: ``server.address`` / ``server.port`` (shared, not changed), else taken from ``attributes``.
        The span starts with what a sampler needs (operation, provider, request model, server address and
        port, as the conventions ask); the other attributes and the context's attribution are added when it
        ends.
        """
        if server is None:
            server = {key: attributes.pop(key) for key in _SAMPLER_KEYS if key in attributes}
        parent = current_context()
        run = parent.get(_LLM_RUN_KEY)
        if run is not None:
            run.covered = True  # type: ignore[attr-defined]
        self._inst = inst
        self._operation = operation
        self._provider = provider
        self._request_model = request_model
        self._server = server
        self._late = attributes
        self._attribution: Mapping[str, str] | None = parent.get(ATTRIBUTION_KEY)  # type: ignore[assignment]
        self.parent = parent
        self._start_ns = start_time_ns or time.time_ns()
        self._off_path = not on_call_path  # True: the span is made, and ends, on the current thread
        # on the call path: the span's ids, reserved now; ``ctx`` (them current) is attached while the SDK call runs
        self._ids: tuple[int, int] | None = None
        self.ctx = parent
        if on_call_path and inst.ids is not None:
            self._ids, self.ctx = spanids.reserve(parent)
        self.span: Span | None = None if on_call_path else self._start_span()
        self._start = time.perf_counter()
        self.first_chunk_s: float | None = None
        self._ended = False
        # ``ctx``'s token, when a stream's end detaches it (``release_context``)
        self.detach_at_end: Token[context.Context] | None = None
        self.count = 0  # HTTP attempts, counted by the SDK wrappers that ``retries.enter`` the invocation
        self.request: LateAttributes | None = None  # the request as sent, read into attributes at the end
        self._end_ns = 0  # the call's end, taken on the call path (end_later) or when ended
        self._elapsed = 0.0
        self._outcome: _Outcome | None = None
        self._reader: Callable[[Invocation, Any], None] | None = None  # end_later's, until the recorder reads
        self._result: Any = None

    def _start_span(self) -> Span:
        attrs: dict[str, Any] = {GEN_AI_OPERATION_NAME: self._operation, GEN_AI_PROVIDER_NAME: self._provider}
        model = self._request_model
        if model:
            attrs[GEN_AI_REQUEST_MODEL] = model
        attrs.update(self._server)
        name = f"{self._operation} {model}" if model else self._operation
        ids, reserved = self._ids, self._inst.ids
        if ids is None or reserved is None:
            return self._inst.tracer.start_span(name, self.parent, SpanKind.CLIENT, attrs, start_time=self._start_ns)
        reserved.local.ids = ids  # the tracer draws the ids its children already point at
        try:
            return self._inst.tracer.start_span(name, self.parent, SpanKind.CLIENT, attrs, start_time=self._start_ns)
        finally:
            reserved.local.ids = None

    @property
    def ended(self) -> bool:
        return self._ended

    def chunk(self) -> None:
        """Mark a streamed chunk; the first one sets time to first chunk."""
        if self.first_chunk_s is None:
            self.first_chunk_s = time.perf_counter() - self._start

    def end_later(self, read: Callable[[Invocation, Any], None], result: Any, *, now: bool = False) -> None:
        """End from an SDK response: ``read(invocation, result)`` calls ``end``; an unreadable response ends
        the span without usage.

        Only for a complete response object the SDK gave the app (not a stream). Without content capture (or
        with ``now``) the response is read now: a few fields, about 2 µs, and the response's objects are not
        kept alive until the recorder runs (an app making hundreds of calls a second would otherwise have them
        promoted by the garbage collector, whose full collections then come more often). With content capture
        the output's rendering and redaction are done off the call path; the end time is taken now.
        """
        if self._ended:
            return
        current = options.current
        if now or not current.capture_content or current.inline:
            try:
                read(self, result)
            except Exception as exc:
                log_once("response.read", exc)
            if not self._ended:
                self.end(usage=None)
            return
        self._ended = True
        self._elapsed = time.perf_counter() - self._start
        self._end_ns = time.time_ns()
        self._reader, self._result = read, result
        later(self._read)

    def _read(self) -> None:
        read, result = self._reader, self._result
        self._reader = self._result = None
        self._ended = False
        self._off_path = True  # already on the recorder's side
        self.end_later(read, result, now=True)  # type: ignore[arg-type]

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

        ``finish_reasons``, ``usage`` and ``attributes`` are read when the span is ended off the call path:
        the caller must not change them afterwards. ``end_time_ns`` / ``duration_s`` are for spans recorded
        after the fact (``llmmeter.record``).
        """
        if self._ended:
            return
        self._ended = True
        if duration_s is not None:
            self._elapsed = duration_s
        elif not self._end_ns:
            self._elapsed = time.perf_counter() - self._start
        self._end_ns = end_time_ns or self._end_ns or time.time_ns()
        self._outcome = (response_model, response_id, finish_reasons, usage, attributes, self.retries, None)
        if self._off_path or options.current.inline:
            self._emit()
        else:  # one bound method queued: each object kept until the recorder runs is one more for the garbage
            later(self._emit)  # collector to count and promote

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
        self._elapsed = time.perf_counter() - self._start
        self._end_ns = time.time_ns()
        error = (type(exc).__qualname__, http_status(exc), str(exc)[:500])
        self._outcome = (response_model, response_id, None, usage, attributes, self.retries, error)
        if self._off_path or options.current.inline:
            self._emit()
        else:
            later(self._emit)

    def _emit(self) -> None:
        """Create (if needed) and end the span with every attribute, then record the call's metric points."""
        response_model, response_id, finish_reasons, usage, extra, retried, error = self._outcome  # type: ignore[misc]
        attrs = self._late
        if self._attribution:
            attrs.update(self._attribution)
        if extra:
            attrs.update(extra)
        status = None
        if error is not None:
            error_type, status_code, message = error
            attrs[semconv.ERROR_TYPE] = error_type
            if status_code is not None:
                attrs[semconv.HTTP_RESPONSE_STATUS_CODE] = status_code
            status = Status(StatusCode.ERROR, message)
        else:
            if finish_reasons:
                attrs[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
            if usage is None:
                attrs[semconv.USAGE_MISSING] = True
        if response_model:
            attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
        if response_id:
            attrs[semconv.GEN_AI_RESPONSE_ID] = response_id
        if usage is not None:
            usage.add_to(attrs)
        first_chunk_s = self.first_chunk_s
        if first_chunk_s is not None:
            attrs[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first_chunk_s
        if retried:
            attrs[semconv.RETRIES] = retried
        span = self.span
        made_now = span is None
        if span is None:
            span = self.span = self._start_span()
        try:
            recorder.end_span_now(span, attrs, status, self._end_ns, self.request)
        finally:  # a broken span processor must not cost the metric points
            self._record_metrics(made_now, response_model, error, usage)

    def _record_metrics(
        self,
        made_now: bool,
        response_model: str | None,
        error: tuple[str, int | None, str] | None,
        usage: TokenUsage | None,
    ) -> None:
        metric_attrs: dict[str, Any] = {
            GEN_AI_OPERATION_NAME: self._operation,
            GEN_AI_PROVIDER_NAME: self._provider,
            GEN_AI_REQUEST_MODEL: self._request_model,
            **self._server,
        }
        if response_model:
            metric_attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
        if error is not None:
            metric_attrs[semconv.ERROR_TYPE] = error[0]
        # Made now: off the call path already, straight into the histograms. A span recorded by hand: its points
        # wait in the queue like the rest.
        self._inst.metrics.add(metric_attrs, self._elapsed, self.first_chunk_s, usage, now=made_now)


def release_context(invocation: Invocation) -> None:
    """At a stream's end: detach the LLM span's context that another instrumentation kept under its own while the
    stream was read (openai-v2 keeps its span current until its stream ends, then restores ours), so the app's
    context is again what it was before the call. Left alone if the other one has not restored ours."""
    token = invocation.detach_at_end
    if token is not None:
        invocation.detach_at_end = None
        if context.get_current() is invocation.ctx:
            context.detach(token)
