"""The identity of a provider call: which spans, from however many instrumentations, are one call to price once.

Two instrumentations of one app can trace the same provider call (llmmeter and the official openai-v2; OpenLLMetry's
Anthropic instrumentation and anthropic's own tracing). Their spans are one call when:

1. they report the same provider and response id (``gen_ai.response.id``): the provider's own id of the call, unique
   across its traffic, so spans of two traces match too (two tracer setups that do not share context, as OpenLLMetry
   and anthropic's own tracing were seen to do; a response served again from a client-side cache is no new call
   either); or
2. in one trace, one is the parent of the other in the same export, both of the same provider and operation, and
   no response id tells them apart (a wrapper's span over the SDK's own), the parent having only that one such
   child (a parent over several calls, e.g. retries, is not one of them).

The key is decided here, per export; the ledger (ledger/storage.py) enforces it across exports and collectors: the first
span of a key is stored as the call, a later one either becomes a duplicate or, when it reports more of the usage,
takes the call's place. Limits: spans without a response id are matched only with their parent or child in the
same export and trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmmeter_collector.llmcall import LlmCall

# Usage fields (normalize's names) in the order they weigh: a span reporting cache or reasoning detail ranks above
# one that reports only input and output, which ranks above one that reports no usage at all.
_WEIGHTS = (
    ("input", 1),
    ("output", 1),
    ("cache_read", 2),
    ("cache_write", 2),
    ("reasoning", 2),
    ("audio_input", 1),
    ("audio_output", 1),
)


_ATTRIBUTION = ("project", "feature", "user")


def completeness(fields: Mapping[str, Any]) -> int:
    """How much of a call a span reports: the token classes it carries (weighted), then whether it carries llmmeter
    attribution (so, at equal usage, the span that says where the money went is kept)."""
    usage = sum(weight for name, weight in _WEIGHTS if name in fields)
    return 2 * usage + any(name in fields for name in _ATTRIBUTION)


def _same_call(parent: LlmCall, child: LlmCall) -> bool:
    if parent.provider != child.provider or parent.operation != child.operation:
        return False
    return not (parent.response_id and child.response_id and parent.response_id != child.response_id)


def assign(calls: Iterable[LlmCall]) -> None:
    """Set ``call_key`` on the calls of one export (see the module docstring)."""
    calls = list(calls)
    by_span = {call.span_id: call for call in calls}
    children: dict[str, list[LlmCall]] = {}
    for call in calls:
        parent = by_span.get(call.parent_span_id)
        if parent is not None and _same_call(parent, call):
            children.setdefault(parent.span_id, []).append(call)
    # union each call with its parent when rule 2 holds, then key the group
    root: dict[str, str] = {}
    for call in calls:
        top = call
        for _ in range(32):  # nesting deeper than this is no instrumentation stack
            parent = by_span.get(top.parent_span_id)
            if parent is None or len(children.get(parent.span_id, ())) != 1 or children[parent.span_id][0] is not top:
                break
            top = parent
        root[call.span_id] = top.span_id
    keys: dict[str, str] = {}
    for call in calls:
        if call.response_id:
            keys.setdefault(root[call.span_id], f"{call.provider}:{call.response_id}")
    for call in calls:
        group = root[call.span_id]
        if group in keys:
            call.call_key = keys[group]
        elif group != call.span_id or group in children:
            call.call_key = f"span:{call.trace_id}:{group}"
