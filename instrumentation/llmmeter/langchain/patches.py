"""Wrapper factories for the LangChain methods llmmeter wraps to give model calls, tools and retrievers
their run's OpenTelemetry context (see ``scope`` for why callbacks alone cannot).

Every wrapper calls the original exactly once with the original arguments and returns (or raises) exactly
what it does; when llmmeter has no open run for the call, it passes straight through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context

from llmmeter.invocation import log_once
from llmmeter.langchain.handler import LlmMeterCallbackHandler
from llmmeter.langchain.scope import Scope, scoped_acall, scoped_asteps, scoped_call, scoped_steps

Wrapper = Callable[[Callable[..., Any], Any, Any, Any], Any]


def _argument(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


def _model_call_context(managers: Any) -> Context | None:
    """The run context for the run manager(s) a model call received, from llmmeter's handler among theirs."""
    try:
        if managers is None:
            return None
        if not isinstance(managers, list | tuple):
            managers = (managers,)
        if not managers:
            return None
        for handler in getattr(managers[0], "handlers", None) or ():
            if isinstance(handler, LlmMeterCallbackHandler):
                return handler.model_call_context([m.run_id for m in managers])
    except Exception as exc:
        log_once("langchain.model_call_context", exc)
    return None


def run_call(index: int, name: str) -> Wrapper:
    """A sync model call that receives its run manager(s) as argument ``name`` (position ``index``)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        ctx = _model_call_context(_argument(args, kwargs, index, name))
        if ctx is None:
            return wrapped(*args, **kwargs)
        return scoped_call(Scope("llm", ctx), lambda: wrapped(*args, **kwargs))

    return wrapper


def run_acall(index: int, name: str) -> Wrapper:
    """Async ``run_call``."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        ctx = _model_call_context(_argument(args, kwargs, index, name))
        if ctx is None:
            return wrapped(*args, **kwargs)
        return scoped_acall(Scope("llm", ctx), lambda: wrapped(*args, **kwargs))

    return wrapper


def run_steps(index: int, name: str) -> Wrapper:
    """A generator that receives its run manager: every step runs in the run's context."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        ctx = _model_call_context(_argument(args, kwargs, index, name))
        steps = wrapped(*args, **kwargs)
        return steps if ctx is None else scoped_steps(Scope("llm", ctx), steps)

    return wrapper


def run_asteps(index: int, name: str) -> Wrapper:
    """Async ``run_steps``."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        ctx = _model_call_context(_argument(args, kwargs, index, name))
        steps = wrapped(*args, **kwargs)
        return steps if ctx is None else scoped_asteps(Scope("llm", ctx), steps)

    return wrapper


def scope_call(kind: str) -> Wrapper:
    """A sync call that starts its own run of ``kind`` (``BaseTool.run``, ``BaseRetriever.invoke``)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        return scoped_call(Scope(kind), lambda: wrapped(*args, **kwargs))

    return wrapper


def scope_acall(kind: str) -> Wrapper:
    """Async ``scope_call``."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        return scoped_acall(Scope(kind), lambda: wrapped(*args, **kwargs))

    return wrapper


def scope_steps(kind: str) -> Wrapper:
    """A generator that starts its own run (``stream``): the run's context holds for each of its steps."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        return scoped_steps(Scope(kind), wrapped(*args, **kwargs))

    return wrapper


def scope_asteps(kind: str) -> Wrapper:
    """Async ``scope_steps`` (``astream``)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        return scoped_asteps(Scope(kind), wrapped(*args, **kwargs))

    return wrapper
