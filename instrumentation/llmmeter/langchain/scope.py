"""The OpenTelemetry context a LangChain model call, tool or retriever runs its body in.

A provider SDK span must be a child of the LangChain LLM span and see its ``LlmRun`` (so the LangChain span
knows it is covered), and SDK calls made inside a tool must see the tool span and the run's attribution.
LangChain's callbacks cannot carry that context themselves: ``on_*_start`` runs in the caller's context,
but the async ``on_llm_end`` / ``on_chain_end`` run in a shielded task (a copy of the context), and a
streamed run ends while the app iterates, so an attach in one callback cannot be detached in another.

Instead the instrumented LangChain methods own the context, in their own frame (always balanced):

* calls that receive their run manager (``_generate_with_cache``, ``_generate_helper``, the v2 event
  generators) run inside the run's context, looked up by run id (``run_call``/``run_steps``);
* calls that create their run inside (``stream``, ``BaseTool.run``, ``BaseRetriever.invoke``, async too)
  put an unclaimed ``Scope`` into the context; the handler's ``on_*_start`` for the first run of that kind
  *claims* it and attaches the run's context, which stays current until the call (or, for a stream,
  the current step) returns, when the wrapper restores the caller's context. Later steps of a stream
  run in the claimed context again; between steps the app's own context is current.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from opentelemetry import context
from opentelemetry.context import Context

T = TypeVar("T")

_SCOPE_KEY = context.create_key("llmmeter.langchain.scope")


class Scope:
    """A wrapped LangChain call whose run (of ``kind``) the handler claims at that run's start."""

    __slots__ = ("claimed", "ctx", "kind")

    def __init__(self, kind: str, ctx: Context | None = None) -> None:
        self.kind = kind
        self.ctx = ctx  # the context the call's body runs in, once claimed
        self.claimed = ctx is not None

    def enter_context(self) -> Context:
        """The context for the next step: the claimed run's, else the current one carrying this scope."""
        if self.ctx is not None:
            return self.ctx
        return context.set_value(_SCOPE_KEY, self)


def claim(kind: str, run_ctx: Context) -> None:
    """Called at a run's start: make ``run_ctx`` current if a wrapped call of this kind is waiting for it."""
    scope = context.get_value(_SCOPE_KEY)
    if isinstance(scope, Scope) and not scope.claimed and scope.kind == kind:
        scope.claimed = True
        scope.ctx = run_ctx
        context.attach(run_ctx)  # the wrapper restores the caller's context when the call/step returns


def scoped_call(scope: Scope, call: Callable[[], T]) -> T:
    token = context.attach(scope.enter_context())
    try:
        return call()
    finally:
        context.detach(token)


async def scoped_acall(scope: Scope, call: Callable[[], Awaitable[T]]) -> T:
    token = context.attach(scope.enter_context())
    try:
        return await call()
    finally:
        context.detach(token)


def scoped_steps(scope: Scope, steps: Iterator[T]) -> Iterator[T]:
    """Iterate ``steps`` with each step (and close/throw) running in the scope's context."""
    to_throw: BaseException | None = None
    while True:
        token = context.attach(scope.enter_context())
        try:
            item = steps.throw(to_throw) if to_throw is not None else next(steps)  # type: ignore[attr-defined]
        except StopIteration:
            return
        finally:
            context.detach(token)
        to_throw = None
        try:
            yield item
        except GeneratorExit:
            close = getattr(steps, "close", None)
            if close is not None:
                scoped_call(scope, close)
            raise
        except BaseException as exc:  # thrown in by the consumer: deliver it to the wrapped generator
            if not hasattr(steps, "throw"):
                raise
            to_throw = exc


async def scoped_asteps(scope: Scope, steps: AsyncIterator[T]) -> AsyncIterator[T]:
    """Async ``scoped_steps``: each ``__anext__`` (and aclose/athrow) runs in the scope's context."""
    to_throw: BaseException | None = None
    while True:
        token = context.attach(scope.enter_context())
        try:
            if to_throw is not None:
                item = await steps.athrow(to_throw)  # type: ignore[attr-defined]
            else:
                item = await steps.__anext__()
        except StopAsyncIteration:
            return
        finally:
            context.detach(token)
        to_throw = None
        try:
            yield item
        except GeneratorExit:
            aclose = getattr(steps, "aclose", None)
            if aclose is not None:
                await scoped_acall(scope, aclose)
            raise
        except BaseException as exc:
            if not hasattr(steps, "athrow"):
                raise
            to_throw = exc
