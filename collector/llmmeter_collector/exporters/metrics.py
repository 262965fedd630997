"""Prometheus metrics: spend, tokens, calls and latency by bounded labels, plus collector self-metrics.

Labels are only provider, model, project, feature, operation (and status / token type). Each label keeps
at most ``max_values`` distinct values; later ones are reported as ``other`` so a runaway dimension
cannot explode the series count. Counters are seeded from the Postgres rollups at start, so a restart
does not reset them and ``increase()`` is not fooled.

The per-call series are one custom collector (``CallSeries``): a committed batch updates plain numbers
under one lock, about a microsecond per call, where ``Counter.labels(...).inc()`` for the eight series a
call touches costs over ten; a scrape turns them into the same metric families.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

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

    def __init__(self, max_values: int, names: Iterable[str] = sc.CALL_LABELS) -> None:
        self._max = max_values
        self._seen: dict[str, set[str]] = {name: set() for name in names}
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


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # the last one is +Inf
        self.sum = 0.0


class _Series:
    """Everything counted for one set of call labels."""

    __slots__ = ("calls", "cost", "duration", "tokens", "ttfc", "unpriced")

    def __init__(self) -> None:
        self.calls: dict[str, float] = {}  # status -> calls
        self.unpriced = 0.0
        self.cost = 0.0
        self.tokens = [0] * len(_TOKEN_TYPES)
        self.duration = _Histogram(len(_LATENCY_BUCKETS))
        self.ttfc = _Histogram(len(_LATENCY_BUCKETS))


class CallSeries(Collector):
    """Spend, tokens, calls and latency per bounded label set, as Prometheus counters and histograms."""

    def __init__(self, cap: LabelCap, project_labels: bool = True) -> None:
        self._cap = cap
        self._project_labels = project_labels  # False: series are summed over projects when scraped
        self._series: dict[tuple[str, ...], _Series] = {}
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}  # raw labels -> capped labels
        self._lock = threading.Lock()

    def _get(self, raw: tuple[str, ...]) -> _Series:
        key = self._keys.get(raw)
        if key is None:
            key = tuple(self._cap(name, value) for name, value in zip(sc.CALL_LABELS, raw, strict=True))
            if len(self._keys) < 100_000:  # raw combinations beyond the cap are capped again, not remembered
                self._keys[raw] = key
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        return series

    def observe(self, calls: Iterable[LlmCall]) -> None:
        buckets = _LATENCY_BUCKETS
        with self._lock:
            for call in calls:
                if call.duplicate_of or call.replaces:
                    continue  # a call another span already counted (ingest/identity.py)
                series = self._get((call.provider, call.model, call.project, call.feature, call.operation))
                series.calls[call.status] = series.calls.get(call.status, 0.0) + 1
                if call.cost is None:
                    series.unpriced += 1
                else:
                    series.cost += float(call.cost.total)
                usage, tokens = call.usage, series.tokens
                tokens[0] += usage.input_tokens
                tokens[1] += usage.output_tokens
                tokens[2] += usage.cache_read_tokens
                tokens[3] += usage.cache_write_tokens
                tokens[4] += usage.reasoning_tokens
                duration = call.duration_s
                series.duration.counts[bisect_left(buckets, duration)] += 1
                series.duration.sum += duration
                if call.ttfc_s is not None:
                    series.ttfc.counts[bisect_left(buckets, call.ttfc_s)] += 1
                    series.ttfc.sum += call.ttfc_s

    def seed(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                series = self._get(tuple(str(row[name]) for name in sc.CALL_LABELS))
                status = row["status"]
                series.calls[status] = series.calls.get(status, 0.0) + int(row["calls"])
                series.unpriced += int(row["unpriced_calls"] or 0)
                series.cost += float(row["cost_usd"])
                for i, (_, field) in enumerate(_TOKEN_TYPES):
                    series.tokens[i] += int(row[field] or 0)

    def collect(self) -> Iterator[Metric]:
        labels = [name for name in sc.CALL_LABELS if self._project_labels or name != "project"]
        cost = CounterMetricFamily(sc.PROM_COST, "Spend on priced LLM calls, USD.", labels=labels)
        tokens = CounterMetricFamily(sc.PROM_TOKENS, "Tokens used, by token type.", labels=[*labels, "type"])
        calls = CounterMetricFamily(sc.PROM_CALLS, "LLM calls, by status.", labels=[*labels, "status"])
        unpriced = CounterMetricFamily(
            sc.PROM_UNPRICED_CALLS, "LLM calls whose model has no known price.", labels=labels
        )
        duration = HistogramMetricFamily(sc.PROM_CALL_DURATION, "LLM call duration.", labels=labels)
        ttfc = HistogramMetricFamily(
            sc.PROM_TIME_TO_FIRST_CHUNK, "Time to first chunk of streamed LLM calls.", labels=labels
        )
        with self._lock:
            snapshot = [
                (key, dict(s.calls), s.unpriced, s.cost, list(s.tokens), list(s.duration.counts), s.duration.sum,
                 list(s.ttfc.counts), s.ttfc.sum)
                for key, s in self._series.items()
            ]  # fmt: skip
        if not self._project_labels:
            snapshot = _without_project(snapshot)
        for key, by_status, n_unpriced, spent, counts, d_counts, d_sum, t_counts, t_sum in snapshot:
            values = list(key)
            for status, n in by_status.items():
                calls.add_metric([*values, status], n)
            if n_unpriced:
                unpriced.add_metric(values, n_unpriced)
            if sum(by_status.values()) > n_unpriced:  # some call was priced
                cost.add_metric(values, spent)
            for (token_type, _), n in zip(_TOKEN_TYPES, counts, strict=True):
                if n:
                    tokens.add_metric([*values, token_type], n)
            if any(d_counts):
                duration.add_metric(values, _cumulative(d_counts), d_sum)
            if any(t_counts):
                ttfc.add_metric(values, _cumulative(t_counts), t_sum)
        yield from (cost, tokens, calls, unpriced, duration, ttfc)


def _without_project(snapshot: list[Any]) -> list[Any]:
    """The snapshot's series summed over the project label, which is dropped from their keys."""
    at = sc.CALL_LABELS.index("project")
    merged: dict[tuple[str, ...], list[Any]] = {}
    for key, by_status, n_unpriced, spent, counts, d_counts, d_sum, t_counts, t_sum in snapshot:
        short = key[:at] + key[at + 1 :]
        into = merged.get(short)
        if into is None:
            merged[short] = [short, dict(by_status), n_unpriced, spent, counts, d_counts, d_sum, t_counts, t_sum]
            continue
        for status, n in by_status.items():
            into[1][status] = into[1].get(status, 0.0) + n
        into[2] += n_unpriced
        into[3] += spent
        for i, more in ((4, counts), (5, d_counts), (7, t_counts)):
            into[i] = [a + b for a, b in zip(into[i], more, strict=True)]
        into[6] += d_sum
        into[8] += t_sum
    return [tuple(x) for x in merged.values()]


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    out, total = [], 0
    for bound, n in zip((*(str(float(b)) for b in _LATENCY_BUCKETS), "+Inf"), counts, strict=True):
        total += n
        out.append((bound, float(total)))
    return out


class ScopeTally:
    """Spans per instrumentation scope and outcome since the collector started (``llmmeter doctor``)."""

    def __init__(self, max_scopes: int) -> None:
        self._max = max_scopes
        self._scopes: set[str] = set()
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, scope: str, outcome: str, n: int) -> str:
        """Add ``n`` spans; returns the scope as counted (a scope past the cap is counted as ``other``)."""
        scope = scope or "(no scope name)"
        with self._lock:
            if scope not in self._scopes:
                if len(self._scopes) < self._max:
                    self._scopes.add(scope)
                else:
                    scope = OTHER
            self._counts[scope, outcome] = self._counts.get((scope, outcome), 0) + n
        return scope

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class Metrics:
    """The collector's Prometheus registry."""

    def __init__(self, max_label_values: int = 200, *, project_labels: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = CallSeries(LabelCap(max_label_values), project_labels)
        r = self.registry
        r.register(self.calls)
        self.spans_received = Counter(sc.PROM_SPANS_RECEIVED, "Spans received, by kind.", ("kind",), registry=r)
        # GenAI spans not stored, by reason: bounds.REASONS (a value over its limit, a non-finite or out-of-range
        # number, text Postgres cannot hold, a bad id) or "invalid_span" (no model, bad counts, absurd time).
        self.spans_rejected = Counter(
            sc.PROM_SPANS_REJECTED, "GenAI spans rejected as invalid, by reason.", ("reason",), registry=r
        )
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
        self._scopes = LabelCap(max_label_values, ("scope", "version"))
        self.sdk_calls = Counter(
            sc.PROM_SDK_CALLS,
            "Calls committed, by the instrumentation scope that traced them and its version (llmmeter status).",
            ("scope", "version"),
            registry=r,
        )
        self.duplicate_spans = Counter(
            sc.PROM_DUPLICATE_SPANS,
            "Spans of a provider call another span already carries (not priced again), by instrumentation scope.",
            ("scope",),
            registry=r,
        )
        self.price_reloads = Counter(
            sc.PROM_PRICE_RELOADS, "Reloads of the price overrides file, by result.", ("result",), registry=r
        )
        # retroactive repricing (ledger/reprice.py): the ledger's totals change, llmmeter_cost_usd_total never goes back
        self.repriced_calls = Counter(
            sc.PROM_REPRICED_CALLS,
            "Stored calls whose cost a reprice changed, by reason (manual, new_price: priced when their model got a "
            "price).",
            ("reason",),
            registry=r,
        )
        self.repriced_usd = Counter(
            sc.PROM_REPRICED_COST,
            "USD a reprice added to or removed from the ledger (direction added / removed), by reason.",
            ("reason", "direction"),
            registry=r,
        )
        # reconciliation with the provider's own reports (insights/reconcile.py): set by each run, per provider
        self.reconcile_coverage = Gauge(
            sc.PROM_RECONCILE_COVERAGE, "Share of the provider's billed spend the ledger holds (last reconcile).",
            ("provider",), registry=r,
        )  # fmt: skip
        self.reconcile_drift = Gauge(
            sc.PROM_RECONCILE_DRIFT, "Ledger minus the provider's billed USD over the last reconcile's days.",
            ("provider",), registry=r,
        )  # fmt: skip
        self.reconcile_drift_ratio = Gauge(
            sc.PROM_RECONCILE_DRIFT_RATIO, "|ledger - billed| / billed over the last reconcile's days.",
            ("provider",), registry=r,
        )  # fmt: skip
        self.reconcile_billed = Gauge(
            sc.PROM_RECONCILE_BILLED, "The provider's billed USD over the last reconcile's days.", ("provider",),
            registry=r,
        )  # fmt: skip
        self.reconcile_success = Gauge(
            sc.PROM_RECONCILE_SUCCESS, "When the last reconcile of the provider succeeded (Unix time).", ("provider",),
            registry=r,
        )  # fmt: skip
        self.reconcile_failures = Counter(
            sc.PROM_RECONCILE_FAILURES, "Reconciles that could not read the provider's reports.", ("provider",),
            registry=r,
        )  # fmt: skip
        # ledger robustness (ledger/writer.py): rows Postgres refuses, spool segments set aside, why writes fail now
        self.rejected_calls = Counter(
            sc.PROM_REJECTED_CALLS,
            "Calls Postgres refused for their data (kept in llm_calls_dead_letter), by source (export, spool).",
            ("source",),
            registry=r,
        )
        self.quarantined_segments = Counter(
            sc.PROM_QUARANTINED_SEGMENTS, "Unreadable spool segments moved to the spool's quarantine/.", registry=r
        )
        self.storage_problem = Gauge(
            sc.PROM_STORAGE_PROBLEM,
            "1 while the reason keeps calls from the ledger: storage_unreachable, spool_full, poisoned_segment.",
            ("reason",),
            registry=r,
        )

        self.unrecognized_genai = Counter(
            sc.PROM_UNRECOGNIZED_GENAI,
            "Spans with a model or token counts that were not counted as calls, by instrumentation scope and reason.",
            ("scope", "reason"),
            registry=r,
        )
        self.scopes = ScopeTally(max_label_values)

    def observe_reprice(self, reason: str, calls: int, before: Decimal, after: Decimal) -> None:
        """Count one committed reprice batch: its changed calls and the dollars it moved."""
        self.repriced_calls.labels(reason).inc(calls)
        if after != before:
            self.repriced_usd.labels(reason, "added" if after > before else "removed").inc(float(abs(after - before)))

    def observe_reconcile(self, result: dict[str, Any]) -> None:
        """Set the reconcile gauges from one reconcile's answer (``insights/reconcile.py``)."""
        provider = result["provider"]
        self.reconcile_billed.labels(provider).set(float(result["provider_usd"]))
        self.reconcile_drift.labels(provider).set(float(result["difference_usd"]))
        if result["coverage"] is not None:
            self.reconcile_coverage.labels(provider).set(float(result["coverage"]))
            self.reconcile_drift_ratio.labels(provider).set(float(result["drift_ratio"]))
        self.reconcile_success.labels(provider).set_to_current_time()

    def observe_scopes(self, counts: dict[tuple[str, str], int]) -> None:
        """Count an export's spans by instrumentation scope: calls, and GenAI-looking spans not counted."""
        for (scope, outcome), n in counts.items():
            scope = self.scopes.add(scope, outcome, n)
            if outcome != "call":
                self.unrecognized_genai.labels(scope, outcome).inc(n)

    def observe(self, calls: Iterable[LlmCall], commit_seconds: float | None = None) -> None:
        """Count calls that were newly committed (never a retried export, never a second span of one call)."""
        calls = calls if isinstance(calls, list) else list(calls)
        self.calls.observe(calls)
        sdks: dict[tuple[str, str], int] = {}
        for call in calls:
            key = (call.scope or "(none)", call.scope_version or "(none)")
            sdks[key] = sdks.get(key, 0) + 1
        for (scope, version), n in sdks.items():
            self.sdk_calls.labels(self._scopes("scope", scope), self._scopes("version", version)).inc(n)
        for call in calls:  # the span that became a duplicate: this one, or the one it displaced
            if call.duplicate_of or call.replaces:
                scope = call.scope if call.duplicate_of else call.replaced_scope
                self.duplicate_spans.labels(self._scopes("scope", scope or "(none)")).inc()
        if commit_seconds is not None:
            self.commit_seconds.observe(commit_seconds)

    def seed(self, rows: Iterable[dict[str, Any]]) -> None:
        """Start counters from the totals already in Postgres (rows of the all-time rollup)."""
        self.calls.seed(rows)
