"""The one way every patched SDK method runs: guard, start span, count retries, call, end or wrap stream.

A provider describes each call shape with a ``Shape`` (how to read the request and the response);
``sync_wrapper`` / ``async_wrapper`` turn it into a wrapt wrapper. Whatever goes wrong inside llmmeter is
logged once and the SDK call runs as if llmmeter were absent; the SDK's own result and exceptions reach
the app unchanged. The only exception llmmeter may raise is ``BudgetExceeded`` from the budget guard,
which the app opted into.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context, attach, detach, get_current

from llmmeter import guard, options, semconv
from llmmeter.content import Prompt, prompt_attributes
from llmmeter.guard import BudgetExceeded
from llmmeter.invocation import Invocation, http_status, log_once
from llmmeter.retries import enter, leave
from llmmeter.server import Endpoint
from llmmeter.streaming import AsyncStream, SyncStream
from llmmeter.telemetry import Instruments

Wrapper = Callable[[Callable[..., Any], Any, Any, Any], Any]


@dataclass(frozen=True, slots=True)
class Shape:
    """How to instrument one SDK method.

    ``endpoint(instance)`` returns the provider name and ``server.address`` / ``server.port`` (the span starts
    with them; cached per client);
    ``request(instance, kwargs)`` the request's other attributes and ``prompt(kwargs)`` the prompt to
    fingerprint/capture, both read off the call path from a ``SentRequest``; ``respond(invocation, result)``
    ends the invocation from the SDK's result (or wraps a stream that will) and returns what the app
    receives (``respond_async``, where given, does it for the async method: a stream another instrumentation
    wrapped is iterated the way the method returns it); ``prepare(kwargs)`` may adjust a streaming request
    (``stream=True``: only ``stream_usage``);
    ``model_key`` names the argument that holds the requested model.
    """

    name: str
    operation: str
    endpoint: Callable[[Any], Endpoint]
    request: Callable[[Any, Mapping[str, Any]], dict[str, Any]]
    respond: Callable[[Invocation, Any], Any]
    prompt: Callable[[Mapping[str, Any]], Prompt | None] | None = None
    respond_async: Callable[[Invocation, Any], Any] | None = None
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    model_key: str = "model"


class SentRequest(tuple[Shape, Any, dict[str, Any], options.Options]):
    """A call's request as sent, read into span attributes when the span ends (off the call path):
    ``SentRequest((shape, instance, kwargs, options))`` (a tuple: made on the call path without a Python frame).

    ``kwargs`` is taken when the call starts (``start``): a shallow copy of the arguments in which every list
    is copied too, so an app that appends the reply to its ``messages`` list after the call (the usual chat
    loop) does not change what was sent.
    """

    __slots__ = ()

    def attributes(self) -> dict[str, Any]:
        shape, instance, kwargs, opts = self
        attrs = shape.request(instance, kwargs)
        if shape.prompt is not None:
            attrs.update(prompt_attributes(shape.prompt(kwargs), opts))
        return attrs


def model_name(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def apply_guard(shape: Shape, instance: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Ask the budget guard which model to use; returns (kwargs, the model the app asked for if swapped)."""
    try:
        if not guard.active():
            return kwargs, None
        requested = model_name(kwargs.get(shape.model_key))
        chosen = guard.check(shape.endpoint(instance)[0], requested)
    except BudgetExceeded:
        raise
    except Exception as exc:
        log_once(f"{shape.name}.guard", exc)
        return kwargs, None
    if chosen == requested or not isinstance(chosen, str) or not chosen:
        return kwargs, None
    new_kwargs = dict(kwargs)
    new_kwargs[shape.model_key] = chosen
    return new_kwargs, requested


def start(inst: Instruments, shape: Shape, instance: Any, kwargs: dict[str, Any], requested: str | None) -> Invocation:
    """Start the span for a call about to be made with ``kwargs``."""
    provider, server = shape.endpoint(instance)
    model = kwargs.get(shape.model_key)
    invocation = Invocation(
        inst,
        shape.operation,
        provider,
        model if type(model) is str else model_name(model),
        {} if requested is None else {semconv.REQUESTED_MODEL: requested},
        server=server,
    )
    copy = dict(kwargs)  # the arguments as sent (inlined: this runs on every call): lists copied too
    for key, value in kwargs.items():
        if type(value) is list:
            copy[key] = value.copy()
    invocation.request = SentRequest((shape, instance, copy, options.current))
    return invocation


def fail(invocation: Invocation, exc: BaseException, where: str) -> None:
    """End the span for an SDK call that raised before returning anything."""
    try:
        attrs: dict[str, Any] = {}
        if http_status(exc) is not None:
            attrs[semconv.PROVIDER_BILLED] = False  # the provider answered with an error status: nothing generated
        invocation.fail(exc, attrs)
    except Exception as inner:
        log_once(where + ".fail", inner)


def _begin(
    inst: Instruments, shape: Shape, instance: Any, kwargs: dict[str, Any]
) -> tuple[Invocation | None, dict[str, Any]]:
    requested = None
    if guard.active():
        kwargs, requested = apply_guard(shape, instance, kwargs)  # BudgetExceeded propagates to the app
    try:
        if shape.prepare is not None and kwargs.get("stream") is True:
            kwargs = shape.prepare(kwargs)
        return start(inst, shape, instance, kwargs, requested), kwargs
    except Exception as exc:
        log_once(shape.name + ".start", exc)
        return None, kwargs


def _unread(shape: Shape, invocation: Invocation, result: Any, exc: Exception) -> Any:
    """``shape.respond`` failed: the span ends without usage and the app gets the SDK's result."""
    log_once(shape.name + ".end", exc)
    with contextlib.suppress(Exception):
        invocation.end(usage=None)
    return result


def _answer(
    shape: Shape,
    respond: Callable[[Invocation, Any], Any],
    invocation: Invocation,
    current: Token[Context],
    result: Any,
) -> Any:
    """After the SDK call returned: the app's context back, and ``respond``'s answer (or the SDK's result).

    Another instrumentation inside the call may have left its context current on top of the LLM span's (openai-v2
    keeps its span current until its stream is read). Detaching ours then would let its later restore bring the
    LLM span's context back for good; so a stream detaches ours when it ends, after the other one restored it."""
    on_top = get_current() is not invocation.ctx
    if not on_top:
        detach(current)
    try:
        answer = respond(invocation, result)
    except Exception as exc:
        answer = _unread(shape, invocation, result, exc)
    if on_top:
        if isinstance(answer, SyncStream | AsyncStream):
            invocation.detach_at_end = current
        else:
            detach(current)
    return answer


def sync_wrapper(inst: Instruments, shape: Shape) -> Wrapper:
    """A wrapt wrapper for a sync SDK method."""
    respond = shape.respond

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        invocation, kwargs = _begin(inst, shape, instance, kwargs)
        if invocation is None:
            return wrapped(*args, **kwargs)
        token = enter(invocation)
        current = attach(invocation.ctx)  # the LLM span (its reserved ids) is the parent of spans inside the call
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(invocation, exc, shape.name)
            detach(current)
            raise
        finally:
            leave(token)
        return _answer(shape, respond, invocation, current, result)

    return wrapper


def async_wrapper(inst: Instruments, shape: Shape) -> Wrapper:
    """A wrapt wrapper for an async SDK method (returns a coroutine, as the original does)."""
    respond = shape.respond_async or shape.respond

    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        invocation, kwargs = _begin(inst, shape, instance, kwargs)
        if invocation is None:
            return await wrapped(*args, **kwargs)
        token = enter(invocation)
        current = attach(invocation.ctx)  # the LLM span (its reserved ids) is the parent of spans inside the call
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(invocation, exc, shape.name)
            detach(current)
            raise
        finally:
            leave(token)
        return _answer(shape, respond, invocation, current, result)

    return wrapper
