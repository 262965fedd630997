"""Count the HTTP attempts a provider SDK makes inside one call, so its internal retries are visible.

A wrapper enters ``scope()`` around the SDK call; the SDK's per-attempt method (patched by each
instrumentor: openai/anthropic ``BaseClient._build_request``, google-genai ``_request_once``) calls
``note_attempt()``. A context variable keeps concurrent calls (threads, asyncio tasks) apart.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any


class Attempts:
    """HTTP attempts made so far by one instrumented call."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    @property
    def retries(self) -> int:
        return self.count - 1 if self.count > 1 else 0


_CURRENT: ContextVar[Attempts | None] = ContextVar("llmmeter_attempts", default=None)


def enter(attempts: Attempts) -> Token[Attempts | None]:
    return _CURRENT.set(attempts)


def leave(token: Token[Attempts | None]) -> None:
    _CURRENT.reset(token)


def note_attempt() -> None:
    attempts = _CURRENT.get()
    if attempts is not None:
        attempts.count += 1


def counting_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """A wrapt wrapper for an SDK's per-attempt method: counts, then calls it unchanged."""
    attempts = _CURRENT.get()
    if attempts is not None:
        attempts.count += 1
    return wrapped(*args, **kwargs)
