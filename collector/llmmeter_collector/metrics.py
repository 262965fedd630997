"""Prometheus metrics: spend, tokens, calls and latency by bounded labels, plus collector self-metrics.

Labels are only provider, model, project, feature, operation (and status / token type). Each label keeps
at most ``max_values`` distinct values; later ones are reported as ``other`` so a runaway dimension
cannot explode the series count. Counters are seeded from the Postgres rollups at start, so a restart
does not reset them and ``increase()`` is not fooled.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmmeter_collector import semconv as sc
from llmmeter_collector.llmcall import LlmCall

OTHER = "other"
_TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("reasoning", "reasoning_tokens"),
)
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


class LabelCap:
    """Remembers the first ``max_values`` values of each label; any later value becomes ``other``."""

    def __init__(self, max_values: int) -> None:
        self._max = max_values
        self._seen: dict[str, set[str]] = {name: set() for name in sc.CALL_LABELS}
        self._lock = threading.Lock()

    def __call__(self, name: str, value: str) -> str:
        seen = self._seen[name]
        if value in seen:
            return value
        with self._lock:
            if len(seen) < self._max:
                seen.add(value)
                return value
        return OTHER


class Metrics:
    """The collector's Prometheus registry."""

    def __init__(self, max_label_values: int = 200) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cap = LabelCap(max_label_values)
        labels = sc.CALL_LABELS
        r = self.registry
        self.cost = Counter(sc.PROM_COST, "Spend on priced LLM calls, USD.", labels, registry=r)
        self.tokens = Counter(sc.PROM_TOKENS, "Tokens used, by token type.", (*labels, "type"), registry=r)
        self.calls = Counter(sc.PROM_CALLS, "LLM calls, by status.", (*labels, "status"), registry=r)
        self.unpriced = Counter(sc.PROM_UNPRICED_CALLS, "LLM calls whose model has no known price.", labels, registry=r)
        self.duration = Histogram(
            sc.PROM_CALL_DURATION, "LLM call duration.", labels, buckets=_LATENCY_BUCKETS, registry=r
        )
        self.ttfc = Histogram(
            sc.PROM_TIME_TO_FIRST_CHUNK,
            "Time to first chunk of streamed LLM calls.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.spans_received = Counter(sc.PROM_SPANS_RECEIVED, "Spans received, by kind.", ("kind",), registry=r)
        self.spans_rejected = Counter(sc.PROM_SPANS_REJECTED, "GenAI spans rejected as invalid.", registry=r)
        self.exports_refused = Counter(sc.PROM_EXPORTS_REFUSED, "Exports refused, by reason.", ("reason",), registry=r)
        self.queue_depth = Gauge(sc.PROM_QUEUE_DEPTH, "Calls waiting to be committed.", registry=r)
        self.commit_seconds = Histogram(
            sc.PROM_COMMIT_SECONDS,
            "Time to commit one batch of calls.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.spool_bytes = Gauge(sc.PROM_SPOOL_BYTES, "Bytes of calls spooled on disk, to replay.", registry=r)
        self.spooled_calls = Counter(
            sc.PROM_SPOOLED_CALLS, "Calls written to the on-disk spool while Postgres was unreachable.", registry=r
        )
        self.postgres_up = Gauge(sc.PROM_POSTGRES_UP, "1 when the last Postgres write succeeded.", registry=r)
        self.forwarded = Counter(sc.PROM_FORWARDED_SPANS, "Spans forwarded over OTLP.", registry=r)
        self.forward_dropped = Counter(
            sc.PROM_FORWARD_DROPPED_SPANS, "Spans that could not be forwarded (queue full or backend down).", registry=r
        )
        self.price_reloads = Counter(
            sc.PROM_PRICE_RELOADS, "Reloads of the price overrides file, by result.", ("result",), registry=r
        )

    def _labels(self, call: LlmCall) -> tuple[str, ...]:
        cap = self.cap
        return (
            cap("provider", call.provider),
            cap("model", call.model),
            cap("project", call.project),
            cap("feature", call.feature),
            cap("operation", call.operation),
        )

    def observe(self, calls: Iterable[LlmCall], commit_seconds: float | None = None) -> None:
        """Count calls that were newly committed (never a retried duplicate)."""
        for call in calls:
            labels = self._labels(call)
            self.calls.labels(*labels, call.status).inc()
            if call.cost is None:
                self.unpriced.labels(*labels).inc()
            else:
                self.cost.labels(*labels).inc(float(call.cost.total))
            usage = call.usage
            for token_type, field in _TOKEN_TYPES:
                count = getattr(usage, field)
                if count:
                    self.tokens.labels(*labels, token_type).inc(count)
            self.duration.labels(*labels).observe(call.duration_s)
            if call.ttfc_s is not None:
                self.ttfc.labels(*labels).observe(call.ttfc_s)
        if commit_seconds is not None:
            self.commit_seconds.observe(commit_seconds)

    def seed(self, rows: Iterable[dict[str, Any]]) -> None:
        """Start counters from the totals already in Postgres (rows of the all-time rollup)."""
        for row in rows:
            labels = (
                self.cap("provider", row["provider"]),
                self.cap("model", row["model"]),
                self.cap("project", row["project"]),
                self.cap("feature", row["feature"]),
                self.cap("operation", row["operation"]),
            )
            self.calls.labels(*labels, row["status"]).inc(int(row["calls"]))
            if row["unpriced_calls"]:
                self.unpriced.labels(*labels).inc(int(row["unpriced_calls"]))
            self.cost.labels(*labels).inc(float(row["cost_usd"]))
            for token_type, field in _TOKEN_TYPES:
                if row[field]:
                    self.tokens.labels(*labels, token_type).inc(int(row[field]))
