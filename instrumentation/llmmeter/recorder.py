"""What a call records — its span, the request's and response's attributes, its GenAI metric points — done
off the call path.

The OpenTelemetry SDK spends tens of microseconds creating and ending a span (sampling, attribute cleaning, a
``ReadableSpan`` copy, span processors) and ~10 µs per histogram point (attribute hashing, locks, exemplar
sampling); a call records up to four points, and its prompt is fingerprinted (and redacted when captured).
On the call path llmmeter only takes the times, the parent context, a snapshot of the request and the
response's ids and usage (``Invocation.end_later``), and queues the rest. The span is created with the start
time and parent taken on the call path and ended with the end time taken there; the points go to the same
histograms with the same attributes. The queue is worked off by whichever comes first:

- the recorder thread, all at once, every ``DRAIN_SECONDS`` while calls keep coming and less often (up to
  ``IDLE_DRAIN_SECONDS``) when they are few: it aims at ``DRAIN_BATCH`` items per wake-up. An LLM app spends
  most of its time waiting on the network, so the work is done in that idle time. One burst per interval hands
  the GIL over as rarely as possible: a handover costs the thread that waits for it a wake-up, and slicing the
  work to hand the GIL back sooner (1 ms slices, 0.1 ms slices, or a slice whenever a call starts its request)
  added more latency per call, and more CPU, than it saved. A wake-up also runs the recorder's code cold (about
  0.5 ms for a single item after a long stream), hence fewer wake-ups when there is little to do (and none ten
  times a second in an idle app). Like any Python thread (the OpenTelemetry SDK's batch span processor
  exporting is another), a long burst gives the GIL to a waiting app thread after the interpreter's switch
  interval (``sys.getswitchinterval()``, 5 ms). The thread is not woken per call, which would cost more than
  it saves;
- ``TracerProvider.force_flush()`` / ``shutdown()`` of the OpenTelemetry SDK (``instrument()`` hooks both, so
  an app that flushes before exit or before a serverless freeze exports every LLM span of calls that
  returned; a flush also waits for a span the recorder thread is ending at that moment), and
  ``llmmeter.flush()``;
- a metric reader collecting (an observable instrument's callback runs at the start of every collection,
  so an export or ``InMemoryMetricReader.get_metrics_data()`` sees every call made before it);
- the call path itself once a queue holds ``MAX_QUEUED`` items (a process too busy to give the recorder
  thread its turn): each call then also does two queued items, so a queue stays bounded and the work is
  done at the in-line cost.

A forked child drops what its parent had queued (the parent records it).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.trace import Span, Status
from wrapt import wrap_function_wrapper

from llmmeter import semconv

logger = logging.getLogger("llmmeter")

DRAIN_SECONDS = 0.1  # the recorder thread's shortest interval (calls keep coming)
IDLE_DRAIN_SECONDS = 1.0  # its longest (few calls, or none): the longest a queued item waits
DRAIN_BATCH = 16  # items per wake-up it aims at, between those two intervals
MAX_QUEUED = 2048  # per queue; past it the calling thread helps
_DRAIN_INSTRUMENT = "llmmeter.internal.drain"  # observes nothing: its callback only drains the queues

T = TypeVar("T")
_warned: set[str] = set()


def _warn_once(what: str) -> None:
    """Log a failure once per kind, with its traceback (called from an ``except`` block); never raise."""
    if what not in _warned:
        _warned.add(what)
        logger.warning("llmmeter: %s (ignored)", what, exc_info=True)


FLUSH_WAIT_SECONDS = 5.0  # a flush waits this long at most for items other threads are processing
_local = threading.local()  # .processing: items this thread is processing now (a flush from inside one)


def _processing() -> int:
    return int(getattr(_local, "processing", 0))


class _Queue(Generic[T]):
    """Items to process off the call path. Thread-safe: each item is taken exactly once, by any thread, and
    ``flush`` returns only once every item queued before it has been processed, including one another thread
    (the recorder) took just before."""

    def __init__(self, process: Callable[[T], None], what: str) -> None:
        self._items: deque[T] = deque()
        self._process = process
        self._what = what
        self._busy = 0  # items taken and not yet processed
        self._idle = threading.Condition(threading.Lock())

    def put(self, item: T) -> None:
        items = self._items
        items.append(item)
        if len(items) > MAX_QUEUED:
            self.run(2)
        elif _drainer is None:
            _start_drainer()

    def run(self, limit: int = -1) -> int:
        """Process up to ``limit`` items (all when negative); returns how many were taken."""
        items, process, idle = self._items, self._process, self._idle
        done = 0
        while done != limit:
            with idle:  # taken and counted as one step: a flush never sees an empty queue with an item in flight
                try:
                    item = items.popleft()
                except IndexError:
                    break
                self._busy += 1
            done += 1
            _local.processing = _processing() + 1
            try:
                process(item)
            except Exception:  # a broken span processor or meter provider must not stop the queue
                _warn_once(f"could not {self._what}")
            finally:
                _local.processing -= 1
                with idle:
                    self._busy -= 1
                    if not self._busy:
                        idle.notify_all()
        return done

    def flush(self, wait: bool = True) -> None:
        """Process every queued item, then (``wait``) wait for those other threads are processing; not when
        called from inside an item: that thread's own item cannot finish first."""
        self.run()
        if not wait or _processing() > 0:
            return
        with self._idle:
            if not self._idle.wait_for(lambda: not self._busy, FLUSH_WAIT_SECONDS):
                logger.warning("llmmeter: could not %s within %.0f s: another thread is still at it (flushed without)",
                               self._what, FLUSH_WAIT_SECONDS)  # fmt: skip

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every queued item (a forked child: the threads processing items did not survive the fork)."""
        self._items.clear()
        self._busy = 0
        self._idle = threading.Condition(threading.Lock())


# --- spans ---------------------------------------------------------------------------------------------


class LateAttributes(Protocol):
    """Span attributes read off the call path (the request as sent, see ``llmmeter.calls.SentRequest``)."""

    def attributes(self) -> Mapping[str, Any]: ...


def end_span_now(
    span: Span, attributes: dict[str, Any], status: Status | None, end_time_ns: int, late: LateAttributes | None
) -> None:
    """End ``span`` at ``end_time_ns`` with ``attributes`` and ``late``'s attributes added (and ``status`` set),
    on the caller's thread. ``attributes`` is taken over: the caller must not change it afterwards."""
    if late is not None:
        try:
            found = late.attributes()
            if semconv.PROMPT_TEMPLATE_FINGERPRINT in attributes and semconv.PROMPT_TEMPLATE_FINGERPRINT in found:
                found = {k: v for k, v in found.items() if k != semconv.PROMPT_TEMPLATE_FINGERPRINT}  # a framework's
            attributes.update(found)  # template (LangChain's, in the attribution) beats the per-role guess
        except Exception:  # an unreadable request loses its request attributes, never the span
            _warn_once("read a request")
    span.set_attributes(attributes)
    if status is not None:
        span.set_status(status)
    span.end(end_time_ns)


def _call(fn: Callable[[], None]) -> None:
    fn()


_work: _Queue[Callable[[], None]] = _Queue(_call, "end a span")


later: Callable[[Callable[[], None]], None] = _work.put
"""``later(fn)``: run ``fn()`` off the call path (it ends a span: a flush runs it first)."""


def drain_spans(wait: bool = True) -> None:
    """End every queued span now (and, with ``wait``, wait for those another thread is ending)."""
    _work.flush(wait)


# --- metric points ---------------------------------------------------------------------------------------


class ReportedUsage(Protocol):
    """What the token histogram reads of a call's usage (``llmmeter.TokenUsage``)."""

    input_tokens: int | None
    output_tokens: int | None


# (metric attributes, duration s, time to first chunk s, input tokens, output tokens)
_Point = tuple[Mapping[str, Any], float, "float | None", "int | None", "int | None"]


class CallMetrics:
    """The three GenAI client histograms and the queue of calls not recorded into them yet."""

    def __init__(
        self, meter: Meter, token_usage: Histogram, duration: Histogram, time_to_first_chunk: Histogram
    ) -> None:
        self.token_usage = token_usage
        self.duration = duration
        self.time_to_first_chunk = time_to_first_chunk
        self.queue: _Queue[_Point] = _Queue(self._record, "record GenAI metrics")
        with _lock:  # the recorder thread may be iterating the set
            _live.add(self)
        _watch(meter)

    def add(
        self,
        attributes: Mapping[str, Any],
        duration_s: float,
        time_to_first_chunk_s: float | None = None,
        usage: ReportedUsage | None = None,
        *,
        now: bool = False,
    ) -> None:
        """Queue one call's points (``attributes`` must not be changed afterwards), or with ``now`` record them
        on the caller's thread (the recorder's, already off the call path)."""
        input_tokens = output_tokens = None
        if usage is not None:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        point = (attributes, duration_s, time_to_first_chunk_s, input_tokens, output_tokens)
        if now:
            self._record(point)
        else:
            self.queue.put(point)

    def _record(self, point: _Point) -> None:
        attrs, duration_s, ttfc_s, input_tokens, output_tokens = point
        self.duration.record(duration_s, attrs)
        if ttfc_s is not None:
            self.time_to_first_chunk.record(ttfc_s, attrs)
        if input_tokens is not None:
            self.token_usage.record(input_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: "input"})
        if output_tokens is not None:
            self.token_usage.record(output_tokens, {**attrs, semconv.GEN_AI_TOKEN_TYPE: "output"})


_live: weakref.WeakSet[CallMetrics] = weakref.WeakSet()
_watched: list[Meter] = []  # meters whose collections drain the queues (one drain instrument per meter)
_drainer: threading.Thread | None = None
_lock = threading.Lock()


def _live_metrics() -> list[CallMetrics]:
    """Every instrument()'s metrics, taken under the lock: another thread may be adding one (a WeakSet's
    iteration fails if its size changes)."""
    with _lock:
        return list(_live)


def drain_metrics(wait: bool = True) -> None:
    for metrics in _live_metrics():
        metrics.queue.flush(wait)


def drain(wait: bool = True) -> None:
    """End every queued span, then record every queued metric point (``wait``: see ``_Queue.flush``)."""
    drain_spans(wait)
    drain_metrics(wait)


def _on_collect(options: CallbackOptions) -> Iterable[Observation]:
    drain()  # spans first: a response read off the call path adds its call's points
    return ()


def _watch(meter: Meter) -> None:
    with _lock:
        if any(m is meter for m in _watched):
            return
        _watched.append(meter)
    meter.create_observable_gauge(_DRAIN_INSTRUMENT, callbacks=[_on_collect])


# --- the OpenTelemetry SDK's flush and shutdown -----------------------------------------------------------


def _drain_first(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """``TracerProvider.force_flush`` / ``shutdown``: queued spans end before the provider flushes."""
    try:
        drain_spans()
    except Exception:
        _warn_once("end queued spans")
    return wrapped(*args, **kwargs)


_FLUSHING_METHODS = ("force_flush", "shutdown")


def _drain_at_exit() -> None:
    try:
        drain()
    except Exception as exc:  # never an error at exit
        logger.debug("llmmeter: drain at exit failed: %r", exc)


def hook_flush() -> None:
    """Make the OpenTelemetry SDK's ``TracerProvider.force_flush`` and ``shutdown`` end queued spans first, and
    end them at exit too: a provider made before the hook (by ``instrument()``, or by the distro under
    ``opentelemetry-instrument``) registered its unhooked ``shutdown`` with ``atexit``; this handler, registered
    later, runs before it."""
    atexit.unregister(_drain_at_exit)
    atexit.register(_drain_at_exit)
    try:
        for method in _FLUSHING_METHODS:
            wrap_function_wrapper("opentelemetry.sdk.trace", f"TracerProvider.{method}", _drain_first)
    except ImportError:  # the API without the SDK: nothing exports spans, the recorder thread is enough
        pass


def unhook_flush() -> None:
    atexit.unregister(_drain_at_exit)
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return
    for method in _FLUSHING_METHODS:
        unwrap(TracerProvider, method)


# --- the recorder thread ---------------------------------------------------------------------------------


def next_interval(interval: float, queued: int) -> float:
    """The recorder thread's next pause, after ``queued`` items came in during ``interval`` seconds: long
    enough for about ``DRAIN_BATCH`` items at that rate, within ``DRAIN_SECONDS``..``IDLE_DRAIN_SECONDS``."""
    return min(IDLE_DRAIN_SECONDS, max(DRAIN_SECONDS, interval * DRAIN_BATCH / max(queued, 1)))


def _queued() -> int:
    return len(_work) + sum(len(metrics.queue) for metrics in _live_metrics())


_restart = threading.Event()  # set by ``restart``: the thread starts over at ``DRAIN_SECONDS``


def restart() -> None:
    """Have the recorder thread work every ``DRAIN_SECONDS`` again from now (``instrument()``: calls are about to
    come, and the pause it chose while nothing was instrumented may be up to ``IDLE_DRAIN_SECONDS``)."""
    _restart.set()


def _run() -> None:
    interval = DRAIN_SECONDS
    while True:
        if _restart.wait(interval):
            _restart.clear()
            interval = DRAIN_SECONDS
            continue
        try:
            interval = next_interval(interval, _queued())
            drain(wait=False)  # no one waits on this thread: nothing to wait for
        except Exception:  # the queues catch per item; this thread must outlive anything else
            _warn_once("work off the queues")


def _start_drainer() -> None:
    global _drainer
    with _lock:
        if _drainer is None:
            thread = threading.Thread(target=_run, name="llmmeter-recorder", daemon=True)
            thread.start()
            _drainer = thread


def _after_fork_in_child() -> None:
    # The parent ends and records what was queued before the fork; the child must not do it twice.
    global _drainer, _lock, _restart
    _lock = threading.Lock()  # a fork while another thread held it would leave it locked forever
    _restart = threading.Event()
    _drainer = None  # the thread did not survive the fork: the child's first call starts its own
    _work.clear()
    for metrics in _live_metrics():
        metrics.queue.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
