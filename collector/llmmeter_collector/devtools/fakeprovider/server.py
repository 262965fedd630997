"""The fake provider's HTTP server: a Starlette app on uvicorn in a daemon thread.

It owns what every provider shares: recording requests, injected failures, request overrides, SSE
streaming (including an abrupt mid-stream disconnect) and the start/stop life cycle. uvicorn is used
because it streams chunked SSE bodies, closes idle keep-alive connections on shutdown (so `stop()`
returns promptly and leaves no thread behind) and drops the connection when an ASGI app raises after
the response started, which is exactly an abrupt mid-stream failure as a client sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .usage import (
    LATENCY_HEADER,
    OverrideError,
    parse_int_header,
)
from .wire import Call, Handler, Provider, RouteTable, StreamAborted, error_response


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, for assertions: `json` is the parsed body (None if not JSON)."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    query: dict[str, str]
    provider: str

    @property
    def body(self) -> Any:
        return self.json


@dataclass
class _Failure:
    status: int
    remaining: int
    retry_after: float
    message: str


class _QuietAbort(logging.Filter):
    """Keeps uvicorn from logging tracebacks for a deliberate mid-stream disconnect and for streams
    cancelled by `stop()`."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        for _ in range(10):  # walk a bounded part of the cause chain (chains can be cyclic)
            if exc is None:
                break
            if isinstance(exc, (StreamAborted, asyncio.CancelledError)):
                return False
            grouped = getattr(exc, "exceptions", None)  # an ExceptionGroup (Python 3.11+)
            if isinstance(grouped, tuple):
                return not any(isinstance(e, (StreamAborted, asyncio.CancelledError)) for e in grouped)
            exc = exc.__cause__ or exc.__context__
        return True


_quiet_abort = _QuietAbort()


class _Server(uvicorn.Server):
    """uvicorn without its 0.1 s polling: `stop()` wakes the main loop and shutdown polls briefly.

    Stock uvicorn needs ~0.2 s to stop (a 0.1 s tick plus a fixed 0.1 s grace sleep); tests start and
    stop a fake per test, so that adds up.
    """

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # every tick refreshes the Date header (once per second)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    def request_exit(self) -> None:
        """Thread-safe: ask the server to shut down now."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # closes idle keep-alive connections, lets a running response finish
        deadline = time.monotonic() + 0.5  # then cancel what still runs (slow `x-fake-chunk-delay-ms` streams)
        while (self.server_state.connections or self.server_state.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()


def provider_of(path: str) -> Provider:
    """Which API a path belongs to, for requests that match no route (their 404 body)."""
    if path.startswith(("/v1beta", "/v1/projects", "/v1beta1", "/upload/v1beta")):
        return "gemini"
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai"


class FakeProvider:
    """A local server speaking the OpenAI, Azure OpenAI, Anthropic and Gemini wire formats.

    Use as a context manager (or `start()`/`stop()`); see the package docstring for the token rules.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failure: _Failure | None = None
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.state: dict[str, Any] = {}  # provider modules keep files/batches here
        self.app = Starlette(routes=self._routes())
        self.app.add_exception_handler(404, self._not_found)
        self.app.add_exception_handler(405, self._not_found)

    # -- public API ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """`openai.OpenAI(base_url=fake.openai_base_url, api_key="x")`."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """`anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x")`."""
        return self.url

    @property
    def gemini_http_options(self) -> dict[str, Any]:
        """`google.genai.Client(api_key="x", http_options=fake.gemini_http_options)`."""
        return {"base_url": self.url}

    def gemini_vertex_client_kwargs(
        self, project: str = "fake-project", location: str = "us-central1"
    ) -> dict[str, Any]:
        """`google.genai.Client(**fake.gemini_vertex_client_kwargs())`: Vertex AI mode, offline.

        Vertex mode needs OAuth credentials with a token (AnonymousCredentials fails: the SDK refreshes
        credentials that have no token); a static `google.oauth2.credentials.Credentials(token=...)`
        never expires and never touches the network.
        """
        from google.oauth2.credentials import Credentials

        return {
            "vertexai": True,
            "project": project,
            "location": location,
            "credentials": Credentials(token="fake-token"),
            "http_options": self.gemini_http_options,
        }

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first (injected failures included)."""
        with self._lock:
            return list(self._requests)

    def fail_next(self, status: int = 429, count: int = 1, retry_after: float = 0, message: str | None = None) -> None:
        """Answer the next `count` requests with `status` in the provider's error format.

        429 and 5xx answers carry `Retry-After` (whole seconds, rounded up) and `retry-after-ms`, which
        the openai and anthropic SDKs prefer. `retry_after=0` sends `retry-after-ms: 1`: those SDKs treat
        0 as "no hint" and would fall back to their 0.5 s+ exponential backoff, so 1 ms keeps retries fast.
        """
        text = message or f"Fake provider: injected error {status}"
        with self._lock:
            self._failure = _Failure(status=status, remaining=count, retry_after=retry_after, message=text)

    def bill_models_at(self, model: str, factor: str | int) -> None:
        """Bill ``model`` at ``factor`` times llmmeter's catalog price in the cost reports (a price it has wrong)."""
        from decimal import Decimal

        from .reports import FACTORS

        with self._lock:
            self.state.setdefault(FACTORS, {})[model] = Decimal(factor)

    def set_workspace(self, api_key: str, workspace_id: str) -> None:
        """Anthropic: calls with ``api_key`` belong to ``workspace_id`` in the reports (default: the default one)."""
        from .reports import WORKSPACES

        with self._lock:
            self.state.setdefault(WORKSPACES, {})[api_key] = workspace_id

    @property
    def billed(self) -> list[Any]:
        """The calls answered on the providers' own paths, as the usage and cost reports count them."""
        from .reports import BILLED

        with self._lock:
            return list(self.state.get(BILLED, []))

    def reset(self) -> None:
        """Forget recorded requests, pending failures, uploaded files and batches."""
        with self._lock:
            self._requests.clear()
            self._failure = None
            self.state.clear()

    def start(self) -> FakeProvider:
        """Bind the port and serve in a daemon thread; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider is already running")
        logging.getLogger("uvicorn.error").addFilter(_quiet_abort)
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets whose proto says TCP; with Nagle a
        # response's body waits ~40 ms for the ACK of its headers (the client's delayed ACK) on keep-alive.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            log_level=None,
            access_log=False,
            loop="asyncio",
            http="h11",
            ws="none",
        )
        server = _Server(config)
        self._server = server
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="fakeprovider")
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeProvider did not start")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread; safe to call twice."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.request_exit()
        if thread is not None:
            thread.join(timeout=10)
        if sock is not None:
            sock.close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Run in the foreground until Ctrl-C or SIGTERM (for `python -m llmmeter_collector.devtools.fakeprovider`).

        Must run in the main thread: it installs SIGINT/SIGTERM handlers (SIGINT explicitly, since a
        shell starts background jobs with SIGINT ignored).
        """
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        if self._thread is None:
            self.start()
        try:
            while not stop.is_set() and self._thread is not None and self._thread.is_alive():
                stop.wait(timeout=0.5)
        finally:
            self.stop()

    # -- internals -------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _routes(self) -> list[BaseRoute]:
        from . import anthropic, gemini, openai, reports

        routes: list[BaseRoute] = []
        tables: list[tuple[Provider, RouteTable]] = [
            ("openai", openai.ROUTES),
            ("openai", reports.OPENAI_ROUTES),
            ("anthropic", anthropic.ROUTES),
            ("anthropic", reports.ANTHROPIC_ROUTES),
            ("gemini", gemini.ROUTES),
        ]
        for provider, table in tables:
            for path, methods, handler in table:
                routes.append(Route(path, self._endpoint(provider, handler), methods=methods))
        return routes

    def _endpoint(self, provider: Provider, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a provider handler: record the request, inject failures, turn bad overrides into 400s."""

        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            body: Any = None
            if raw and "json" in request.headers.get("content-type", "json"):
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
            if body is None and raw:
                body = raw
            self._record(request, body, provider)
            failure = self._take_failure()
            if failure is not None:
                return error_response(provider, failure.status, failure.message, _retry_headers(failure))
            call = Call(request=request, body=body, provider=provider, fake=self, path_params=request.path_params)
            try:
                latency = parse_int_header(request.headers, LATENCY_HEADER)
                if latency:
                    await asyncio.sleep(latency / 1000.0)
                return handler(call)
            except OverrideError as exc:
                return error_response(provider, 400, str(exc))
            except Exception as exc:  # a request the fake cannot make sense of: 400, so SDKs do not retry
                message = f"Fake provider could not handle this request: {type(exc).__name__}: {exc}"
                return error_response(provider, 400, message)

        return endpoint

    def _record(self, request: Request, body: Any, provider: str) -> None:
        entry = RecordedRequest(
            method=request.method,
            path=request.url.path,
            json=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
            provider=provider,
        )
        with self._lock:
            self._requests.append(entry)

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            failure = self._failure
            if failure is None:
                return None
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failure = None
            return failure

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        provider = provider_of(request.url.path)
        self._record(request, None, provider)
        status = getattr(exc, "status_code", 404)
        return error_response(provider, status, f"Fake provider: no route for {request.method} {request.url.path}")


def _retry_headers(failure: _Failure) -> dict[str, str]:
    if failure.status != 429 and failure.status < 500:
        return {}
    millis = max(failure.retry_after * 1000.0, 1.0)
    return {"retry-after": str(math.ceil(failure.retry_after)), "retry-after-ms": f"{millis:g}"}
