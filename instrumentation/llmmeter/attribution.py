"""Attribution: who and what an LLM call is for (project, feature, user, session, experiment and variant, the
prompt's name and version, tags).

``with llmmeter.attributes(feature="search", user_id="u1"):`` stores the attributes in the OpenTelemetry
context, so every GenAI span started inside carries them, including spans started in asyncio tasks and
(once ``llmmeter.instrument()`` has run) in threads started inside the block.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import context

from llmmeter import semconv

KEY = context.create_key("llmmeter.attributes")  # the merged attributes in effect (a dict, never changed)
_EMPTY: Mapping[str, str] = {}

F = TypeVar("F", bound=Callable[..., Any])


def current_attributes() -> Mapping[str, str]:
    """The span attributes that attribution in the current context adds to a GenAI span."""
    value = context.get_value(KEY)
    return cast(Mapping[str, str], value) if value is not None else _EMPTY


def _span_attributes(named: Mapping[str, str | None], tags: Mapping[str, str] | None) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for key, value in named.items():
        if value is not None:
            attrs[semconv.ATTRIBUTION_KEYS[key]] = str(value)
    for key, value in (tags or {}).items():
        if not key or not isinstance(key, str):
            raise ValueError(f"llmmeter.attributes: tag names must be non-empty strings, got {key!r}")
        attrs[semconv.TAG_PREFIX + key] = str(value)
    return attrs


class attributes:
    """Attribute every LLM call made inside a ``with`` block or a decorated function.

    Nested blocks merge: the inner value of a key wins, other keys are inherited.
    """

    __slots__ = ("_attrs", "_tokens")

    def __init__(
        self,
        *,
        project: str | None = None,
        feature: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        environment: str | None = None,
        experiment: str | None = None,
        variant: str | None = None,
        prompt: str | None = None,
        prompt_version: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        named = {
            "project": project,
            "feature": feature,
            "user_id": user_id,
            "session_id": session_id,
            "environment": environment,
            "experiment": experiment,
            "variant": variant,
            "prompt": prompt,
            "prompt_version": prompt_version,
        }
        self._attrs = _span_attributes(named, tags)
        self._tokens: list[object] = []

    def __enter__(self) -> attributes:
        merged = {**current_attributes(), **self._attrs}
        self._tokens.append(context.attach(context.set_value(KEY, merged)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context.detach(self._tokens.pop())  # type: ignore[arg-type]

    def __call__(self, func: F) -> F:
        """Use as a decorator: every call of ``func`` runs inside these attributes."""
        attrs = self._attrs

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _Scope(attrs):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _Scope(attrs):
                return func(*args, **kwargs)

        return cast(F, wrapper)


class _Scope:
    """A re-entrant, per-call scope for the decorator form (one attributes object may run concurrently)."""

    __slots__ = ("_attrs", "_token")

    def __init__(self, attrs: Mapping[str, str]) -> None:
        self._attrs = attrs

    def __enter__(self) -> None:
        merged = {**current_attributes(), **self._attrs}
        self._token = context.attach(context.set_value(KEY, merged))

    def __exit__(self, *exc: object) -> None:
        context.detach(self._token)
