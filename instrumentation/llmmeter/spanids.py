"""The LLM span's ids, reserved on the call path so that spans opened inside the call are its children.

The span itself is made later (off the call path); the call path only draws a span id (and, for a root, a
trace id) and makes a non-recording span with those ids current while the SDK call runs. llmmeter's own tracer
gets an id generator that hands out the reserved ids when the recorder creates the real span, so the span
exported has exactly the ids its children point at.

Sampling: the reserved context carries the parent's sampled flag (a root: sampled). The SDK's sampler decides
for the real span later with the same trace id, parent and attributes: ParentBased, AlwaysOn, AlwaysOff and
TraceIdRatio decide the same for children and span (a root under TraceIdRatio: children are marked sampled,
and the span is kept or dropped by its trace id). A custom sampler that decides at random may drop the LLM
span while its children are kept (they then point at a span that was never exported).
"""

from __future__ import annotations

import random
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_bits = random.getrandbits


class ReservedIds:
    """An SDK id generator that hands out the ids reserved for the span being created on this thread."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.local = threading.local()

    def generate_span_id(self) -> int:
        ids = getattr(self.local, "ids", None)
        return ids[1] if ids is not None else int(self.inner.generate_span_id())

    def is_trace_id_random(self) -> bool:
        """Reserved trace ids are drawn from ``random.getrandbits``; otherwise as the wrapped generator says."""
        return bool(getattr(self.inner, "is_trace_id_random", lambda: False)())

    def generate_trace_id(self) -> int:
        ids = getattr(self.local, "ids", None)
        return ids[0] if ids is not None else int(self.inner.generate_trace_id())


def adopt(tracer: Any) -> ReservedIds | None:
    """Give an OpenTelemetry SDK tracer a ``ReservedIds`` generator; None for a tracer without one."""
    inner = getattr(tracer, "id_generator", None)
    if inner is None:
        return None
    if isinstance(inner, ReservedIds):
        return inner
    ids = ReservedIds(inner)
    tracer.id_generator = ids
    return ids


def reserve(parent: Context) -> tuple[tuple[int, int], Context]:
    """(trace id, span id) for a span under ``parent``, and the context with it current."""
    psc = trace.get_current_span(parent).get_span_context()
    if psc.is_valid:
        trace_id, flags = psc.trace_id, psc.trace_flags
    else:
        trace_id, flags = _bits(128) or 1, _SAMPLED
    span_id = _bits(64) or 1
    span = NonRecordingSpan(SpanContext(trace_id, span_id, False, flags))
    return (trace_id, span_id), trace.set_span_in_context(span, parent)
