"""Stream wrappers: pass every chunk/event through untouched and end the span when the stream ends.

``SyncStream`` / ``AsyncStream`` are ``wrapt.ObjectProxy`` subclasses, so ``isinstance`` checks, attributes
(``.response``, ``.close()``, context-manager use) are the SDK object's own. Each provider supplies an
``Accumulator`` that reads usage, ids and tool calls from the chunks; the proxy decides when the span
ends: exhausted (usage as reported), closed or garbage-collected early (``llmmeter.stream.closed_early``,
usage as far as reported), or failed (error, plus usage as far as reported).
"""

from __future__ import annotations

import inspect
import itertools
import sys
from collections.abc import Iterator
from typing import Any

import wrapt

from llmmeter import retries, semconv
from llmmeter.invocation import Invocation, log_once, release_context


class Accumulator:
    """Reads one provider's stream items; subclasses override ``observe`` and ``finish``/``fail``."""

    __slots__ = ()

    def observe(self, item: Any, invocation: Invocation) -> None:
        raise NotImplementedError

    def finish(self, invocation: Invocation, attributes: dict[str, Any]) -> None:
        """End the invocation with what was read (``attributes`` are extra span attributes)."""
        raise NotImplementedError

    def fail(self, invocation: Invocation, exc: BaseException, attributes: dict[str, Any]) -> None:
        invocation.fail(exc, attributes)


def end_stream(invocation: Invocation, accumulator: Accumulator, exc: BaseException | None, early: bool) -> None:
    """End once: on success, early close, or error. Errors in here are logged, never raised."""
    release_context(invocation)
    if invocation.ended:
        return
    try:
        attrs: dict[str, Any] = {}
        if exc is not None:
            # Output had started when the stream broke: the provider generated (and bills) tokens.
            attrs[semconv.PROVIDER_BILLED] = invocation.first_chunk_s is not None
            accumulator.fail(invocation, exc, attrs)
            return
        if early:
            attrs[semconv.STREAM_CLOSED_EARLY] = True
        accumulator.finish(invocation, attrs)
    except Exception as inner:
        log_once("stream.end", inner)


_END = object()


def _observed(
    items: Iterator[Any], invocation: Invocation, accumulator: Accumulator, attempts: retries.Attempts | None
) -> Iterator[Any]:
    """Every item of ``items``, unchanged and observed; the span ends when ``items`` is exhausted or fails.

    A generator: resuming it costs less per chunk than a Python ``__next__``. Closed or collected before the
    end (the app stopped reading), it ends the span as closed early. It holds no reference to the proxy: a
    caller may iterate it after dropping the proxy (google-genai's own generators do).
    """
    observe = accumulator.observe
    try:
        if attempts is not None:  # the request is sent on the first next(): count its retries there
            token = retries.enter(attempts)
            try:
                first = next(items, _END)
            finally:
                retries.leave(token)
            if first is _END:
                end_stream(invocation, accumulator, None, False)
                return
            items = itertools.chain((first,), items)
        for item in items:
            try:
                observe(item, invocation)
            except Exception as exc:
                log_once("stream.observe", exc)
            yield item
    except GeneratorExit:  # closed or garbage-collected before the end: the app stopped reading
        end_stream(invocation, accumulator, None, True)
        raise
    except BaseException as exc:
        end_stream(invocation, accumulator, exc, False)
        raise
    end_stream(invocation, accumulator, None, False)


class SyncStream(wrapt.ObjectProxy):
    """A sync stream (SDK ``Stream``, or a generator) whose end ends the span."""

    def __init__(
        self, wrapped: Any, invocation: Invocation, accumulator: Accumulator, attempts: retries.Attempts | None = None
    ) -> None:
        super().__init__(wrapped)
        self._self_invocation = invocation
        self._self_acc = accumulator
        # ``attempts``: the HTTP request only happens on the first ``next()`` (a generator): count its retries.
        self._self_items = _observed(iter(wrapped), invocation, accumulator, attempts)

    def __iter__(self) -> Iterator[Any]:
        return self._self_items

    def __next__(self) -> Any:
        return next(self._self_items)

    def __enter__(self) -> SyncStream:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            end_stream(self._self_invocation, self._self_acc, None, True)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            end_stream(self._self_invocation, self._self_acc, None, True)

    def _llmmeter_end_early(self) -> None:
        end_stream(self._self_invocation, self._self_acc, None, True)

    def __del__(self) -> None:
        # The generator ends the span when it is closed or collected, but a generator that never started runs
        # no code: end it here, unless a caller still holds the generator (google-genai iterates it after
        # dropping the proxy). References: this proxy's, ``items`` and getrefcount's argument.
        items = self._self_items
        if sys.getrefcount(items) <= 3:
            end_stream(self._self_invocation, self._self_acc, None, True)


class AsyncStream(wrapt.ObjectProxy):
    """An async stream (SDK ``AsyncStream``, or an async generator) whose end ends the span."""

    def __init__(self, wrapped: Any, invocation: Invocation, accumulator: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_invocation = invocation
        self._self_acc = accumulator
        self._self_observe = accumulator.observe

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            end_stream(self._self_invocation, self._self_acc, None, False)
            raise
        except BaseException as exc:
            end_stream(self._self_invocation, self._self_acc, exc, False)
            raise
        try:
            self._self_observe(item, self._self_invocation)
        except Exception as exc:
            log_once("stream.observe", exc)
        return item

    async def __aenter__(self) -> AsyncStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            end_stream(self._self_invocation, self._self_acc, None, True)

    def close(self) -> Any:
        return self._end_after(self.__wrapped__.close())

    def aclose(self) -> Any:
        return self._end_after(self.__wrapped__.aclose())

    def _end_after(self, result: Any) -> Any:
        if inspect.isawaitable(result):
            return self._await_then_end(result)
        end_stream(self._self_invocation, self._self_acc, None, True)
        return result

    async def _await_then_end(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        finally:
            end_stream(self._self_invocation, self._self_acc, None, True)

    def _llmmeter_end_early(self) -> None:
        end_stream(self._self_invocation, self._self_acc, None, True)

    def __del__(self) -> None:
        end_stream(self._self_invocation, self._self_acc, None, True)


def end_helper_stream(helper_stream: Any) -> None:
    """After an SDK stream helper (``.stream()`` manager) exits, end the span of the raw stream it read."""
    raw = getattr(helper_stream, "_raw_stream", None)
    if isinstance(raw, SyncStream | AsyncStream):
        raw._llmmeter_end_early()
