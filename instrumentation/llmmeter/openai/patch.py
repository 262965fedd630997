"""Wrapper factories for the patched OpenAI SDK methods, one per call shape, sync and async side by side.

Every method goes through ``llmmeter.calls`` (guard, span, retries, errors). What differs per call shape
is how a result ends the span: a parsed object is read at once, a ``Stream`` is wrapped so its end ends
the span, and a raw response (``with_raw_response`` / ``with_streaming_response``) is read through the
SDK's own cached ``parse()`` so the app can still parse it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt

from llmmeter import options, semconv
from llmmeter.calls import Shape, Wrapper, async_wrapper, sync_wrapper
from llmmeter.invocation import Invocation, log_once
from llmmeter.openai import response as rsp
from llmmeter.openai.stream import ChatAccumulator, ResponsesAccumulator
from llmmeter.raw_response import respond_raw
from llmmeter.streaming import Accumulator, AsyncStream, SyncStream, end_helper_stream
from llmmeter.telemetry import Instruments

_PARSED, _STREAM, _ASYNC_STREAM, _RAW = range(4)


def _responder(
    end: Callable[[Invocation, Any], None], accumulator: type[Accumulator], asynchronous: bool = False
) -> Callable[[Invocation, Any], Any]:
    """``respond`` for one API (its sync or its async method): end from a parsed object, wrap a stream, or read
    a raw response."""
    import openai
    from openai._legacy_response import LegacyAPIResponse
    from openai._response import APIResponse, AsyncAPIResponse

    kinds: dict[type, int] = {}  # what each result type is, worked out once (a type check per call costs more)

    def kind_of(cls: type) -> int:
        if issubclass(cls, openai.Stream):
            kind = _STREAM
        elif issubclass(cls, openai.AsyncStream):
            kind = _ASYNC_STREAM
        elif issubclass(cls, LegacyAPIResponse | APIResponse | AsyncAPIResponse):
            kind = _RAW
        elif hasattr(cls, "__anext__" if asynchronous else "__next__"):
            # Another instrumentation's wrapper of the SDK's stream, neither a Stream nor a proxy of one (openai-v2's
            # ChatStreamWrapper, when llmmeter was instrumented after it): its items are the stream's chunks.
            kind = _ASYNC_STREAM if asynchronous else _STREAM
        else:
            kind = _PARSED
        if len(kinds) > 256:  # parsed generics make one type per response format: bounded by the app's code
            kinds.clear()
        kinds[cls] = kind
        return kind

    def respond(invocation: Invocation, result: Any) -> Any:
        kind = kinds.get(type(result))
        if kind is None:
            kind = kind_of(type(result))
        if kind == _PARSED:
            invocation.end_later(end, result)
            return result
        if kind == _STREAM:
            return SyncStream(result, invocation, accumulator())
        if kind == _ASYNC_STREAM:
            return AsyncStream(result, invocation, accumulator())
        return respond_raw(result, invocation, respond)

    return respond


def _include_stream_usage(kwargs: dict[str, Any]) -> dict[str, Any]:
    """With ``instrument(stream_usage=True)``: ask for the final usage chunk of a chat/completions stream."""
    if kwargs.get("stream") is not True or not options.current.stream_usage:
        return kwargs
    current = kwargs.get("stream_options")
    if isinstance(current, dict) and current.get("include_usage"):
        return kwargs
    merged = dict(current) if isinstance(current, dict) else {}
    merged["include_usage"] = True
    return {**kwargs, "stream_options": merged}


def _shapes() -> dict[str, Shape]:
    chat_respond = _responder(rsp.end_chat, ChatAccumulator)
    chat = Shape(
        name="openai.chat",
        operation=semconv.OP_CHAT,
        endpoint=rsp.endpoint,
        request=rsp.request_attributes,
        respond=chat_respond,
        respond_async=_responder(rsp.end_chat, ChatAccumulator, asynchronous=True),
        prompt=rsp.chat_prompt,
        prepare=_include_stream_usage,
    )
    return {
        "chat": chat,
        "responses": Shape(
            name="openai.responses",
            operation=semconv.OP_CHAT,
            endpoint=rsp.endpoint,
            request=rsp.request_attributes,
            respond=_responder(rsp.end_response, ResponsesAccumulator),
            respond_async=_responder(rsp.end_response, ResponsesAccumulator, asynchronous=True),
            prompt=rsp.responses_prompt,
        ),
        "completions": Shape(
            name="openai.completions",
            operation=semconv.OP_TEXT_COMPLETION,
            endpoint=rsp.endpoint,
            request=rsp.request_attributes,
            respond=_responder(rsp.end_completion, ChatAccumulator),
            respond_async=_responder(rsp.end_completion, ChatAccumulator, asynchronous=True),
            prompt=rsp.completions_prompt,
            prepare=_include_stream_usage,
        ),
        "embeddings": Shape(
            name="openai.embeddings",
            operation=semconv.OP_EMBEDDINGS,
            endpoint=rsp.endpoint,
            request=rsp.embeddings_request_attributes,
            respond=_responder(rsp.end_embeddings, ChatAccumulator),
        ),
    }


def wrappers(inst: Instruments) -> dict[str, tuple[Wrapper, Wrapper]]:
    """(sync, async) wrapper per API: chat (create and parse), responses (create and parse), completions,
    embeddings."""
    return {key: (sync_wrapper(inst, shape), async_wrapper(inst, shape)) for key, shape in _shapes().items()}


# --- .stream() helpers -----------------------------------------------------------------------------------
# ``chat.completions.stream()`` / ``responses.stream()`` call the (patched) ``create(stream=True)`` when
# entered, so the span is already there; these wrappers only make an early ``__exit__`` end it, because the
# helper closes the HTTP response directly instead of the raw stream it read.


class _StreamManager(wrapt.ObjectProxy):
    def __enter__(self) -> Any:
        self._self_stream = self.__wrapped__.__enter__()
        return self._self_stream

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            _end_helper(getattr(self, "_self_stream", None))

    async def __aenter__(self) -> Any:
        self._self_stream = await self.__wrapped__.__aenter__()
        return self._self_stream

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            _end_helper(getattr(self, "_self_stream", None))


def _end_helper(helper_stream: Any) -> None:
    try:
        end_helper_stream(helper_stream)
    except Exception as exc:
        log_once("openai.stream_helper", exc)


def stream_helper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """``Completions.stream`` / ``Responses.stream`` (sync and async: both return a manager synchronously)."""
    manager = wrapped(*args, **kwargs)
    try:
        return _StreamManager(manager)
    except Exception as exc:
        log_once("openai.stream_helper", exc)
        return manager
