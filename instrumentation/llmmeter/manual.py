"""Spans by hand for any provider or self-hosted model: ``llmmeter.record(...)`` and ``@llmmeter.track(...)``.

Both emit exactly the span an instrumented SDK call emits (same names, metrics, attribution), so the
collector prices a vLLM or Bedrock call like any other. ``record`` describes a call that already happened;
``track`` times a function and takes its usage from the return value (``usage=`` extractor) or from what
the function reported with ``llmmeter.current_call().set_usage(...)``.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar, cast

from llmmeter import semconv, telemetry
from llmmeter.attribution import attributes as attribution_scope
from llmmeter.invocation import Invocation, TokenUsage, log_once

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_instruments: telemetry.Instruments | None = None

_USAGE_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_creation_tokens": "cache_write_tokens",
    "cache_creation_1h_tokens": "cache_write_1h_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "output_audio_tokens": "output_audio_tokens",
}


def instruments() -> telemetry.Instruments:
    """The tracer and histograms, created on first use from the global providers."""
    global _instruments
    if _instruments is None:
        with _lock:
            if _instruments is None:
                _instruments = telemetry.create_instruments()
    return _instruments


def reset_instruments() -> None:
    """Forget the cached instruments (``instrument()`` calls this after configuring export)."""
    global _instruments
    _instruments = None


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"llmmeter: {name} must be a non-negative integer, got {value!r}")
    return value


def usage_from(value: Any) -> TokenUsage | None:
    """A ``TokenUsage`` from a TokenUsage, a mapping of the ``record()`` token argument names, or an
    ``(input_tokens, output_tokens)`` pair. Bad values raise ``ValueError`` naming the field."""
    if value is None or isinstance(value, TokenUsage):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return TokenUsage(
            input_tokens=_count("input_tokens", value[0]), output_tokens=_count("output_tokens", value[1])
        )
    if isinstance(value, Mapping):
        unknown = set(value) - set(_USAGE_FIELDS)
        if unknown:
            raise ValueError(f"llmmeter: unknown usage field(s) {sorted(unknown)}; known: {sorted(_USAGE_FIELDS)}")
        return TokenUsage(**{_USAGE_FIELDS[k]: _count(k, v) for k, v in value.items()})
    raise TypeError(
        f"llmmeter: usage must be a TokenUsage, a mapping or an (input, output) pair, got {type(value).__name__}"
    )


def _ns(name: str, value: datetime | float | int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value * 1e9)
    raise ValueError(f"llmmeter: {name} must be a datetime or epoch seconds, got {value!r}")


def record(
    *,
    provider: str,
    model: str,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int | None = None,
    cache_creation_tokens: int | None = None,
    cache_creation_1h_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    operation: str = semconv.OP_CHAT,
    response_model: str | None = None,
    response_id: str | None = None,
    start_time: datetime | float | None = None,
    end_time: datetime | float | None = None,
    error: BaseException | str | None = None,
    batch: bool = False,
    service_tier: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    project: str | None = None,
    feature: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    environment: str | None = None,
    experiment: str | None = None,
    variant: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Emit one GenAI span for a call llmmeter did not see (any provider, a self-hosted model).

    Token counts follow the GenAI convention: ``input_tokens`` INCLUDES cache reads and writes,
    ``output_tokens`` INCLUDES reasoning. Times default to now; attribution keywords add to the
    surrounding ``llmmeter.attributes`` block. Invalid arguments raise ``ValueError`` naming the field.
    """
    if not isinstance(provider, str) or not provider:
        raise ValueError("llmmeter.record: provider must be a non-empty string")
    if not isinstance(model, str) or not model:
        raise ValueError("llmmeter.record: model must be a non-empty string")
    usage = usage_from(
        {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": cache_read_tokens,
            "cache_creation_tokens": cache_creation_tokens,
            "cache_creation_1h_tokens": cache_creation_1h_tokens,
            "reasoning_tokens": reasoning_tokens,
        }
    )
    start_ns, end_ns = _ns("start_time", start_time), _ns("end_time", end_time)
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise ValueError("llmmeter.record: end_time is before start_time")
    if end_ns is None and start_ns is not None:
        end_ns = time.time_ns()
    if start_ns is None and end_ns is not None:
        start_ns = end_ns
    extra: dict[str, Any] = dict(attributes or {})
    if batch:
        extra[semconv.BATCH] = True
    if service_tier:
        extra[semconv.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER] = service_tier
    scope = attribution_scope(
        project=project,
        feature=feature,
        user_id=user_id,
        session_id=session_id,
        environment=environment,
        experiment=experiment,
        variant=variant,
        tags=tags,
    )
    with scope:
        invocation = Invocation(
            instruments(), operation, provider, model, extra, start_time_ns=start_ns, on_call_path=False
        )
    duration = (end_ns - start_ns) / 1e9 if start_ns is not None and end_ns is not None else None
    empty = usage is None or all(v is None for v in usage.attributes().values())
    if error is not None:
        exc = error if isinstance(error, BaseException) else RecordedError(error)
        invocation.fail(exc, usage=None if empty else usage, response_model=response_model, response_id=response_id)
        return
    invocation.end(
        response_model=response_model,
        response_id=response_id,
        usage=None if empty else usage,
        end_time_ns=end_ns,
        duration_s=duration,
    )


class RecordedError(Exception):
    """The error of a call recorded by hand with ``error="..."`` (its ``error.type``)."""


class TrackedCall:
    """The call a ``@track``-ed function is making: report its usage and response model here."""

    __slots__ = ("response_id", "response_model", "usage")

    def __init__(self) -> None:
        self.usage: TokenUsage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None

    def set_usage(self, **tokens: int | None) -> None:
        """Token counts by ``record()``'s argument names (input_tokens, output_tokens, cache_read_tokens, ...)."""
        self.usage = usage_from(tokens)


_CURRENT: ContextVar[TrackedCall | None] = ContextVar("llmmeter_tracked_call", default=None)


def current_call() -> TrackedCall | None:
    """Inside a ``@track``-ed function: its ``TrackedCall``; elsewhere None."""
    return _CURRENT.get()


def track(
    *,
    provider: str,
    model: str,
    operation: str = semconv.OP_CHAT,
    usage: Callable[[Any], Any] | None = None,
) -> Callable[[F], F]:
    """Decorate a function (sync or async) that calls a model llmmeter does not instrument.

    Each call emits a span timed around the function. Usage comes from ``usage(result)`` when given (a
    TokenUsage, a mapping of token counts or an ``(input, output)`` pair), otherwise from
    ``llmmeter.current_call().set_usage(...)`` inside the function; with neither, the span is marked as
    having no usage. Exceptions are recorded and re-raised unchanged.
    """
    if not provider or not model:
        raise ValueError("llmmeter.track: provider and model must be non-empty strings")

    def begin() -> tuple[Invocation | None, TrackedCall, Any]:
        call = TrackedCall()
        token = _CURRENT.set(call)
        try:
            return Invocation(instruments(), operation, provider, model, {}, on_call_path=False), call, token
        except Exception as exc:
            log_once("track.start", exc)
            return None, call, token

    def finish(invocation: Invocation | None, call: TrackedCall, result: Any) -> None:
        if invocation is None:
            return
        try:
            found = usage(result) if usage is not None else call.usage
            invocation.end(
                response_model=call.response_model,
                response_id=call.response_id,
                usage=usage_from(found),
            )
        except Exception as exc:
            log_once("track.end", exc)
            invocation.end(usage=None)

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                invocation, call, token = begin()
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    if invocation is not None:
                        invocation.fail(exc)
                    raise
                finally:
                    _CURRENT.reset(token)
                finish(invocation, call, result)
                return result

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            invocation, call, token = begin()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                if invocation is not None:
                    invocation.fail(exc)
                raise
            finally:
                _CURRENT.reset(token)
            finish(invocation, call, result)
            return result

        return cast(F, wrapper)

    return decorate
