"""Count the HTTP attempts a provider SDK makes inside one call, so its internal retries are visible.

A wrapper ``enter``s an ``Attempts`` around the SDK call; the SDK's per-attempt method (patched by each
instrumentor: openai/anthropic ``BaseClient._build_request``, google-genai ``_request_once``) is wrapped by
``counting_wrapper``. A context variable keeps concurrent calls (threads, asyncio tasks) apart.

The same hook solves double counting: SDKs that trace themselves (anthropic 2.x opens its own GenAI span
around each API call) make that span current before building the request. When it is not the span that was
current when the call started, it is marked ``llmmeter.billable=false``: llmmeter's span carries the same
usage plus attribution.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context, trace
from opentelemetry.context import Context

from llmmeter.semconv import BILLABLE


def _context_getter() -> Callable[[], Context]:
    """``opentelemetry.context.get_current`` without its two Python frames (it runs twice per call): the
    runtime context's own ``ContextVar.get`` when the runtime is the default ``ContextVarsRuntimeContext``
    (``OTEL_PYTHON_CONTEXT`` may select another, which then gets the API call)."""
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        runtime = getattr(context, "_RUNTIME_CONTEXT", None)
        var = getattr(runtime, "_current_context", None)
        if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
            return var.get
    except ImportError:
        pass
    return context.get_current


current_context = _context_getter()


class Attempts:
    """HTTP attempts made so far by one instrumented call (``llmmeter.invocation.Invocation`` is one: it sets
    ``count`` to 0 and ``parent`` to the context current when the call started, its span's parent)."""

    __slots__ = ("count", "parent")
    count: int
    parent: Context | None

    @property
    def retries(self) -> int:
        return self.count - 1 if self.count > 1 else 0


_CURRENT: ContextVar[Attempts | None] = ContextVar("llmmeter_attempts", default=None)


enter: Callable[[Attempts], Token[Attempts | None]] = _CURRENT.set
"""``enter(attempts)``: count the attempts made from here on into ``attempts``; returns a token for ``leave``."""
leave: Callable[[Token[Attempts | None]], None] = _CURRENT.reset


def counting_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """A wrapt wrapper for an SDK's per-attempt method: counts, then calls it unchanged."""
    attempts = _CURRENT.get()
    if attempts is not None:
        attempts.count += 1
        parent = attempts.parent
        if attempts.count == 1 and parent is not None:
            now = current_context()
            if now is not parent:  # the context changed since the call started: did the SDK open a span?
                current = trace.get_current_span(now)
                if current is not trace.get_current_span(parent) and current.is_recording():
                    current.set_attribute(BILLABLE, False)
    return wrapped(*args, **kwargs)
