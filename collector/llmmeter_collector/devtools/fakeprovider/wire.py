"""What a provider's handlers share: the request as they see it (``Call``), SSE streaming, errors in each API's shape.

``server.py`` runs them; ``openai.py``, ``anthropic.py`` and ``gemini.py`` each export a ``ROUTES`` table of handlers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .usage import (
    CHUNK_DELAY_HEADER,
    STREAM_FAIL_HEADER,
    TOOL_CALL_HEADER,
    USAGE_HEADER,
    Usage,
    parse_int_header,
    parse_usage_override,
)

Provider = Literal["openai", "anthropic", "gemini"]


class Fake(Protocol):
    """The running fake provider, as a handler sees it: state kept across requests and fresh ids."""

    state: dict[str, Any]

    def _new_id(self, prefix: str) -> str: ...


class StreamAborted(Exception):
    """Raised inside a streaming response to make uvicorn drop the connection mid-body."""


@dataclass
class Call:
    """One request as a provider handler sees it: parsed body, overrides, ids and stream settings."""

    request: Request
    body: Any
    provider: Provider
    fake: Fake
    path_params: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    def usage(self, default: Usage) -> Usage:
        """`default` (the token rules' usage) unless the `x-fake-usage` header overrides it."""
        return parse_usage_override(self.headers.get(USAGE_HEADER), default)

    @property
    def tool_call_header(self) -> str | None:
        return self.headers.get(TOOL_CALL_HEADER)

    def new_id(self, prefix: str) -> str:
        return self.fake._new_id(prefix)

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")

    def sse(self, events: Iterable[bytes]) -> SSEResponse:
        """A streaming response over pre-encoded SSE events, honouring the stream-failure/delay headers."""
        fail_after = parse_int_header(self.headers, STREAM_FAIL_HEADER)
        delay_ms = parse_int_header(self.headers, CHUNK_DELAY_HEADER) or 0
        return SSEResponse(list(events), fail_after=fail_after, delay=delay_ms / 1000.0)


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: optional `event:` line, `data:` with compact JSON (or a raw string)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class SSEResponse(Response):
    """`text/event-stream` response; with `fail_after=N` it sends N events then drops the connection."""

    media_type = "text/event-stream"

    def __init__(self, events: list[bytes], fail_after: int | None = None, delay: float = 0.0) -> None:
        super().__init__(content=None, media_type=self.media_type, headers={"cache-control": "no-cache"})
        # A streamed body has no length: drop the `content-length: 0` Response adds for an empty body.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events = events
        self.fail_after = fail_after
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for sent, event in enumerate(self.events):
            if self.fail_after is not None and sent >= self.fail_after:
                raise StreamAborted(f"{STREAM_FAIL_HEADER}: dropped the connection after {sent} events")
            if self.delay:
                await asyncio.sleep(self.delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


Handler = Callable[[Call], Response]
#: What each provider module exports as `ROUTES`: (path, methods, handler).
RouteTable = list[tuple[str, list[str], Handler]]

_ERROR_NAMES: dict[int, tuple[str, str]] = {
    # status: (OpenAI/Anthropic error type, Google RPC status)
    400: ("invalid_request_error", "INVALID_ARGUMENT"),
    401: ("authentication_error", "UNAUTHENTICATED"),
    403: ("permission_error", "PERMISSION_DENIED"),
    404: ("not_found_error", "NOT_FOUND"),
    408: ("timeout_error", "DEADLINE_EXCEEDED"),
    409: ("conflict_error", "ABORTED"),
    413: ("request_too_large", "INVALID_ARGUMENT"),
    422: ("invalid_request_error", "INVALID_ARGUMENT"),
    429: ("rate_limit_error", "RESOURCE_EXHAUSTED"),
    500: ("api_error", "INTERNAL"),
    502: ("api_error", "UNAVAILABLE"),
    503: ("api_error", "UNAVAILABLE"),
    504: ("api_error", "DEADLINE_EXCEEDED"),
    529: ("overloaded_error", "UNAVAILABLE"),
}


def error_response(
    provider: Provider, status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error in the provider's own JSON shape, so its SDK raises its own typed exception."""
    kind, rpc_status = _ERROR_NAMES.get(status, ("api_error" if status >= 500 else "invalid_request_error", "UNKNOWN"))
    body: dict[str, Any]
    if provider == "anthropic":
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
    elif provider == "gemini":
        body = {"error": {"code": status, "message": message, "status": rpc_status}}
    else:
        code = "rate_limit_exceeded" if status == 429 else kind
        if status == 429:
            kind = "requests"
        elif status >= 500:
            kind = "server_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))
