"""Wrapper factories for the patched Anthropic SDK methods, sync and async side by side.

``messages.create`` (and ``parse``) go through ``llmmeter.calls``. The ``messages.stream()`` helper makes its
request only when entered, so its wrapper starts the span in ``__enter__`` and hands the helper a wrapped
raw event stream: every way of reading the helper (iteration, ``text_stream``, ``get_final_message()``,
``until_done()``) passes through it. ``count_tokens`` is free and not patched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt

from llmmeter import retries, semconv
from llmmeter.anthropic import response as rsp
from llmmeter.anthropic.stream import MessageAccumulator
from llmmeter.calls import Shape, Wrapper, apply_guard, async_wrapper, fail, start, sync_wrapper
from llmmeter.invocation import Invocation, log_once
from llmmeter.raw_response import respond_raw
from llmmeter.streaming import AsyncStream, SyncStream, end_helper_stream
from llmmeter.telemetry import Instruments


def _respond(invocation: Invocation, result: Any) -> Any:
    import anthropic
    from anthropic._response import APIResponse, AsyncAPIResponse

    if isinstance(result, anthropic.Stream):
        return SyncStream(result, invocation, MessageAccumulator())
    if isinstance(result, anthropic.AsyncStream):
        return AsyncStream(result, invocation, MessageAccumulator())
    if isinstance(result, APIResponse | AsyncAPIResponse):
        return respond_raw(result, invocation, _respond)
    invocation.end_later(rsp.end_message, result)
    return result


MESSAGES = Shape(
    name="anthropic.messages",
    operation=semconv.OP_CHAT,
    endpoint=rsp.endpoint,
    request=rsp.request_attributes,
    respond=_respond,
    prompt=rsp.prompt,
)
STREAM_HELPER = Shape(
    name="anthropic.messages.stream",
    operation=semconv.OP_CHAT,
    endpoint=rsp.endpoint,
    request=rsp.stream_request_attributes,
    respond=_respond,
    prompt=rsp.prompt,
)


def messages_create(inst: Instruments) -> tuple[Wrapper, Wrapper]:
    """(sync, async) wrappers for ``Messages.create`` / ``Messages.parse``."""
    return sync_wrapper(inst, MESSAGES), async_wrapper(inst, MESSAGES)


class _HelperManager(wrapt.ObjectProxy):
    """A ``MessageStreamManager`` / ``AsyncMessageStreamManager`` whose entering starts the span."""

    def __init__(self, wrapped: Any, begin: Callable[[], Invocation | None]) -> None:
        super().__init__(wrapped)
        self._self_begin = begin
        self._self_stream: Any = None

    def _started(self) -> tuple[Invocation | None, Any]:
        """Start the call's span and count attempts while the helper sends the request."""
        try:
            invocation = self._self_begin()
            if invocation is None:
                return None, None
            return invocation, retries.enter(invocation)
        except Exception as exc:
            log_once(STREAM_HELPER.name + ".start", exc)
            return None, None

    @staticmethod
    def _leave(token: Any) -> None:
        if token is not None:
            retries.leave(token)

    def _wrap(
        self, helper_stream: Any, invocation: Invocation | None, proxy: type[SyncStream] | type[AsyncStream]
    ) -> Any:
        self._self_stream = helper_stream
        if invocation is not None:
            try:
                helper_stream._raw_stream = proxy(helper_stream._raw_stream, invocation, MessageAccumulator())
            except Exception as exc:
                log_once(STREAM_HELPER.name + ".wrap", exc)
                invocation.end(usage=None)
        return helper_stream

    def __enter__(self) -> Any:
        invocation, token = self._started()
        try:
            helper_stream = self.__wrapped__.__enter__()
        except BaseException as exc:
            if invocation is not None:
                fail(invocation, exc, STREAM_HELPER.name)
            raise
        finally:
            self._leave(token)
        return self._wrap(helper_stream, invocation, SyncStream)

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            end_helper_stream(self._self_stream)

    async def __aenter__(self) -> Any:
        invocation, token = self._started()
        try:
            helper_stream = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            if invocation is not None:
                fail(invocation, exc, STREAM_HELPER.name)
            raise
        finally:
            self._leave(token)
        return self._wrap(helper_stream, invocation, AsyncStream)

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            end_helper_stream(self._self_stream)


def messages_stream(inst: Instruments) -> Wrapper:
    """``Messages.stream`` / ``AsyncMessages.stream``: both return a manager synchronously."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        kwargs, requested = apply_guard(STREAM_HELPER, instance, kwargs)  # BudgetExceeded reaches the app
        manager = wrapped(*args, **kwargs)
        try:
            return _HelperManager(manager, lambda: start(inst, STREAM_HELPER, instance, kwargs, requested))
        except Exception as exc:
            log_once(STREAM_HELPER.name, exc)
            return manager

    return wrapper
