"""What a finished call records — its span's end and its GenAI metric points — done off the call path.

The OpenTelemetry SDK spends ~15 µs ending a span with its response attributes (attribute cleaning, a
``ReadableSpan`` copy, span processors) and ~10 µs per histogram point (attribute hashing, locks, exemplar
sampling); a call records up to four points. The call path only appends a tuple to a queue (well under a
microsecond); the span is ended with its exact end time, and the points are recorded into the same
histograms with the same attributes, by whichever comes first:

- a daemon thread, every ``DRAIN_SECONDS``;
- ``TracerProvider.force_flush()`` / ``shutdown()`` of the OpenTelemetry SDK (``instrument()`` hooks both, so
  an app that flushes before exit or before a serverless freeze exports every LLM span of calls that
  returned), and ``llmmeter.flush()``;
- a metric reader collecting (an observable instrument's callback runs at the start of every collection,
  so an export or ``InMemoryMetricReader.get_metrics_data()`` sees every call made before it).

Each metric point carries its call's span as context, so exemplars link to the LLM span.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.trace import Span, Status
from wrapt import wrap_function_wrapper

from llmmeter import semconv
from llmmeter.content import RequestPrompt

logger = logging.getLogger("llmmeter")

DRAIN_SECONDS = 0.1
_DRAIN_INSTRUMENT = "llmmeter.internal.drain"  # observes nothing: its callback only drains the metric queues

# (span, attributes to add, error status or None, end time in ns since the epoch, prompt or None)
_End = tuple[Span, dict[str, Any], "Status | None", int, "RequestPrompt | None"]
# (metric attributes, duration s, time to first chunk s, input tokens, output tokens, span for exemplars)
_Point = tuple[Mapping[str, Any], float, "float | None", "int | None", "int | None", "Span | None"]

_ends: deque[_End] = deque()
_warned: set[str] = set()


def _warn_once(what: str) -> None:
    """Log a failure once per kind, with its traceback (called from an ``except`` block); never raise."""
    if what not in _warned:
        _warned.add(what)
        logger.warning("llmmeter: %s (ignored)", what, exc_info=True)


def end_span(
    span: Span, attributes: dict[str, Any], status: Status | None, end_time_ns: int, prompt: RequestPrompt | None
) -> None:
    """Queue ``span`` to be ended at ``end_time_ns`` with ``attributes`` and the prompt's attributes added (and
    ``status`` set). ``attributes`` is taken over: the caller must not change it afterwards."""
    _ends.append((span, attributes, status, end_time_ns, prompt))
    if _drainer is None:
        _start_drainer()


def end_span_now(
    span: Span, attributes: dict[str, Any], status: Status | None, end_time_ns: int, prompt: RequestPrompt | None
) -> None:
    """``end_span`` on the caller's thread (spans recorded by hand, off any call path)."""
    if prompt is not None:
        try:
            attributes.update(prompt.attributes())
        except Exception:  # an unreadable prompt loses its fingerprint, never the span
            _warn_once("could not read a prompt")
    span.set_attributes(attributes)
    if status is not None:
        span.set_status(status)
    span.end(end_time_ns)


def drain_spans() -> None:
    """End every queued span now. Thread-safe: each is taken from the queue exactly once."""
    ends = _ends
    while True:
        try:
            end = ends.popleft()
        except IndexError:
            return
        try:
            end_span_now(*end)
        except Exception:  # a broken span processor must not stop the queue
            _warn_once("could not end a span")


class CallMetrics:
    """The three GenAI client histograms and the queue of calls not recorded into them yet."""

    def __init__(
        self, meter: Meter, token_usage: Histogram, duration: Histogram, time_to_first_chunk: Histogram
    ) -> None:
        self.token_usage = token_usage
        self.duration = duration
        self.time_to_first_chunk = time_to_first_chunk
        self._pending: deque[_Point] = deque()
        _live.add(self)
        _watch(meter)

    def add(
        self,
        attributes: Mapping[str, Any],
        duration_s: float,
        time_to_first_chunk_s: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        span: Span | None = None,
    ) -> None:
        """Queue one call's points (``attributes`` must not be changed afterwards)."""
        self._pending.append((attributes, duration_s, time_to_first_chunk_s, input_tokens, output_tokens, span))
        if _drainer is None:
            _start_drainer()

    def drain(self) -> None:
        """Record every queued call now. Thread-safe: each is taken from the queue exactly once."""
        pending = self._pending
        while True:
            try:
                attrs, duration_s, ttfc_s, input_tokens, output_tokens, span = pending.popleft()
            except IndexError:
                return
            try:
                ctx = trace.set_span_in_context(span) if span is not None else None
                self.duration.record(duration_s, attrs, ctx)
                if ttfc_s is not None:
                    self.time_to_first_chunk.record(ttfc_s, attrs, ctx)
                if input_tokens is not None:
                    self.token_usage.record(input_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: "input"}, ctx)
                if output_tokens is not None:
                    self.token_usage.record(output_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: "output"}, ctx)
            except Exception:  # a broken meter provider must not stop the queue
                _warn_once("could not record GenAI metrics")

    def clear(self) -> None:
        self._pending.clear()


_live: weakref.WeakSet[CallMetrics] = weakref.WeakSet()
_watched: list[Meter] = []  # meters whose collections drain the queues (one drain instrument per meter)
_drainer: threading.Thread | None = None
_lock = threading.Lock()


def drain_metrics() -> None:
    for metrics in list(_live):
        metrics.drain()


def drain() -> None:
    """End every queued span, then record every queued metric point."""
    drain_spans()
    drain_metrics()


def _on_collect(options: CallbackOptions) -> Iterable[Observation]:
    drain_metrics()
    return ()


def _watch(meter: Meter) -> None:
    with _lock:
        if any(m is meter for m in _watched):
            return
        _watched.append(meter)
    meter.create_observable_gauge(_DRAIN_INSTRUMENT, callbacks=[_on_collect])


def _drain_first(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """``TracerProvider.force_flush`` / ``shutdown``: queued spans end before the provider flushes."""
    try:
        drain_spans()
    except Exception:
        _warn_once("could not end queued spans")
    return wrapped(*args, **kwargs)


_FLUSHING_METHODS = ("force_flush", "shutdown")


def hook_flush() -> None:
    """Make the OpenTelemetry SDK's ``TracerProvider.force_flush`` and ``shutdown`` end queued spans first."""
    try:
        for method in _FLUSHING_METHODS:
            wrap_function_wrapper("opentelemetry.sdk.trace", f"TracerProvider.{method}", _drain_first)
    except ImportError:  # the API without the SDK: nothing exports spans, the drainer thread is enough
        pass


def unhook_flush() -> None:
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return
    for method in _FLUSHING_METHODS:
        unwrap(TracerProvider, method)


def _run() -> None:
    wait = threading.Event().wait
    while True:
        wait(DRAIN_SECONDS)
        drain()


def _start_drainer() -> None:
    global _drainer
    with _lock:
        if _drainer is None:
            thread = threading.Thread(target=_run, name="llmmeter-recorder", daemon=True)
            thread.start()
            _drainer = thread


def _after_fork_in_child() -> None:
    # The parent ends and records what was queued before the fork; the child must not do it twice.
    global _drainer, _lock
    _lock = threading.Lock()  # a fork while another thread held it would leave it locked forever
    _drainer = None  # the thread did not survive the fork: the child's first call starts its own
    _ends.clear()
    for metrics in list(_live):
        metrics.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
