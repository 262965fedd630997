"""What the webhook dispatcher watches for: each source returns (event, event id, payload) triples; the id names
what happened, so noticing it again on the next round queues nothing new (``webhooks.emit``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from psycopg_pool import ConnectionPool

from llmmeter_collector.budgets.status import BudgetStatus
from llmmeter_collector.insights import anomalies

Event = tuple[str, str, dict[str, Any]]
DRIFT_RATIO = 0.05  # the LLMBillDrift alert's threshold


def budget_thresholds(statuses: Callable[[], Mapping[str, BudgetStatus]]) -> Callable[[], list[Event]]:
    """A budget past its warning threshold or exceeded, once per budget, period and state."""

    def source() -> list[Event]:
        out = []
        for name, status in statuses().items():
            if status.state == "ok":
                continue
            data = status.to_json()
            data["summary"] = (
                f"budget {name} is {status.state}: ${status.spent:.2f} of ${status.budget.limit:.2f}"
                f" ({float(status.utilization) * 100:.0f} %) since {status.period_start:%Y-%m-%d}"
            )
            out.append(("budget.threshold", f"budget:{name}:{status.period_start.isoformat()}:{status.state}", data))
        return out

    return source


def unpriced_models(pool: Callable[[], ConnectionPool]) -> Callable[[], list[Event]]:
    """A model seen without a price, once per provider and model."""

    def source() -> list[Event]:
        with pool().connection() as conn:
            rows = conn.execute(
                "SELECT provider, model, sum(unpriced_calls), min(bucket) FROM llm_rollup_hour"
                " WHERE unpriced_calls > 0 GROUP BY 1, 2"
            ).fetchall()
        return [
            ("model.unpriced", f"unpriced:{provider}:{model}",
             {"provider": provider, "model": model, "calls": int(calls), "first_seen": first.isoformat(),
              "summary": f"{provider}/{model} has no price: {int(calls)} calls stored unpriced (llmmeter prices"
                         " unpriced; add it to the overrides file)"})
            for provider, model, calls, first in rows
        ]  # fmt: skip

    return source


def spend_anomalies(pool: Callable[[], ConnectionPool]) -> Callable[[], list[Event]]:
    """An hour or day whose spend is far outside its baseline (``insights/anomalies.py``), once per bucket."""

    def source() -> list[Event]:
        found = anomalies.detect(pool(), granularity="both")["anomalies"]
        return [
            ("anomaly", f"anomaly:{a['project']}:{a['feature']}:{a['granularity']}:{a['bucket']}",
             {**a, "summary": f"{a['direction']} in {a['project'] or '(no project)'}/{a['feature'] or '(no feature)'}"
                              f" at {a['bucket']}: ${float(a['spend_usd']):.2f} against a usual"
                              f" ${float(a['baseline_median_usd']):.2f}"})
            for a in found
        ]  # fmt: skip

    return source


def reconcile_drift(result: Mapping[str, Any]) -> Event | None:
    """A reconcile whose drift is over the alert's threshold, once per provider and range."""
    ratio = result.get("drift_ratio")
    if ratio is None or float(ratio) <= DRIFT_RATIO:
        return None
    event_id = f"drift:{result['provider']}:{result['from']}:{result['to']}"
    data = {k: result[k] for k in ("provider", "from", "to", "provider_usd", "ledger_usd", "difference_usd",
                                   "coverage", "drift_ratio", "summary")}  # fmt: skip
    return ("reconcile.drift", event_id, data)
