"""Raw responses of the Stainless-generated SDKs (openai, anthropic): ``with_raw_response`` and
``with_streaming_response``.

Usage is read through the SDK's own cached ``parse()``, so the app can still parse the response and gets
the very object it would have got (or, for a stream, the wrapped stream in its place).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import wrapt

from llmmeter.invocation import Invocation, log_once

Respond = Callable[[Invocation, Any], Any]
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def respond_raw(raw: Any, invocation: Invocation, respond: Respond) -> Any:
    """End the span from a raw response (or arrange for it to end) and return what the app receives."""
    request = getattr(raw, "http_request", None)
    mode = request.headers.get(_RAW_RESPONSE_HEADER) if request is not None else None
    parse = getattr(raw, "parse", None)
    if mode in ("true", "raw") and parse is not None and not inspect.iscoroutinefunction(parse):
        read_parsed(raw, invocation, respond)
        return raw
    return RawResponse(raw, invocation, respond)


def read_parsed(raw: Any, invocation: Invocation, respond: Respond) -> None:
    """``with_raw_response`` (body already read): parse through the SDK's cache; a stream is wrapped and
    cached in its place, so the app's own ``parse()`` returns the same (or the wrapped) object."""
    parsed = raw.parse()
    handled = respond(invocation, parsed)
    if handled is not parsed:
        raw._parsed_by_type[raw._cast_to] = handled


class RawResponse(wrapt.ObjectProxy):
    """``with_streaming_response``: the body is read only when the app asks; read usage on ``parse()``,
    otherwise end the span without usage when the response is closed or collected."""

    def __init__(self, wrapped: Any, invocation: Invocation, respond: Callable[[Invocation, Any], Any]) -> None:
        super().__init__(wrapped)
        self._self_invocation = invocation
        self._self_respond = respond
        self._self_parsed: dict[Any, Any] = {}

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        result = self.__wrapped__.parse(*args, **kwargs)
        if hasattr(result, "__await__"):
            return self._parse_async(result, kwargs.get("to"))
        return self._handle(result, kwargs.get("to"))

    async def _parse_async(self, awaitable: Any, to: Any) -> Any:
        return self._handle(await awaitable, to)

    def _handle(self, parsed: Any, to: Any) -> Any:
        if to is not None or self._self_invocation.ended:
            return self._self_parsed.get(id(parsed), parsed)
        try:
            handled = self._self_respond(self._self_invocation, parsed)
        except Exception as exc:
            log_once("raw_response.parse", exc)
            return parsed
        self._self_parsed[id(parsed)] = handled
        return handled

    def _end_without_usage(self) -> None:
        if not self._self_invocation.ended:
            try:
                self._self_invocation.end(usage=None)
            except Exception as exc:
                log_once("raw_response.close", exc)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._end_without_usage()

    def __del__(self) -> None:
        self._end_without_usage()
