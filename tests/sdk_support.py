"""Helpers shared by the SDK instrumentation tests (tests/test_sdk_*.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import llmmeter


def llm_spans(exporter: Any) -> list[Any]:
    """llmmeter's own spans, in the order their calls started (spans end off the call path, in any order; an
    SDK that traces itself, like anthropic 2.x, adds its own beside them)."""
    found = [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "llmmeter"]
    return sorted(found, key=lambda s: s.start_time)


def only_span(exporter: Any) -> dict[str, Any]:
    found = llm_spans(exporter)
    assert len(found) == 1, [s.name for s in found]
    return dict(found[0].attributes)


def points(reader: Any, name: str) -> list[Any]:
    """Histogram data points of one metric."""
    data = reader.get_metrics_data()
    out: list[Any] = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    out.extend(metric.data.data_points)
    return out


def usage_header(**usage: int) -> dict[str, str]:
    return {"x-fake-usage": json.dumps(usage)}


def instrumented_with(**kwargs: Any) -> Iterator[None]:
    llmmeter.uninstrument()
    llmmeter.instrument(configure_export=False, **kwargs)
    yield
    llmmeter.uninstrument()
