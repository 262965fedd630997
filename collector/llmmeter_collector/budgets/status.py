"""Budget spend from Postgres, its evaluation (utilisation, state, forecast) and the budget gauges.

Spend is read from the rollups, so it survives restarts and is right after one. The cheapest correct
source is picked per scope:

* project / feature / provider / model / environment only: ``llm_rollup_hour`` for the whole hours of the
  window, raw calls for the part of an hour at either edge (only time zones with a non-whole-hour offset
  have one);
* user (with at most project and feature): ``llm_rollup_user_day`` for whole UTC days, raw calls for the
  edges (indexed on (user_id, ts));
* tags, or user together with provider / model / environment: raw calls of the window (partition pruning on
  ts; tags use a GIN index on ``tags``).

``BudgetEngine`` evaluates every budget in a background thread every ``budgets_refresh_seconds`` and keeps
the result; ``/metrics`` scrapes, ``/api/v1/budgets/status`` and the SDK guard read that cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from llmmeter_collector import semconv as sc
from llmmeter_collector.budgets import definition as b
from llmmeter_collector.budgets.forecast import Forecast, forecast_period_end

logger = logging.getLogger("llmmeter.collector")

STATES = ("ok", "warning", "exceeded")
_RATIO = Decimal("0.000001")


@dataclass(frozen=True)
class Spend:
    """Spend of one budget's window: total, per local day from the first day, and call counts."""

    total: Decimal
    daily: dict[date, Decimal]
    calls: int
    unpriced_calls: int


@dataclass(frozen=True)
class BudgetStatus:
    """One budget evaluated at ``evaluated_at``."""

    budget: b.Budget
    period_start: datetime
    period_end: datetime
    spent: Decimal
    calls: int
    unpriced_calls: int
    utilization: Decimal
    state: str
    forecast: Forecast | None  # None once the period is over
    evaluated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.budget.name,
            "state": self.state,
            "limit_usd": format(self.budget.limit, "f"),
            "spent_usd": format(self.spent, "f"),
            "remaining_usd": format(max(self.budget.limit - self.spent, Decimal(0)), "f"),
            "utilization": format(self.utilization, "f"),
            "thresholds": [float(t) for t in self.budget.thresholds],
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "forecast": self.forecast.to_json() if self.forecast else None,
            "evaluated_at": self.evaluated_at.isoformat(),
        }


# --- spend queries ---------------------------------------------------------------------------------------


def source_of(scope: b.Scope) -> str:
    """Which table answers a scope: ``hour``, ``user_day`` or ``calls`` (see the module docstring)."""
    if scope.tags:
        return "calls"
    if scope.user:
        return "calls" if (scope.provider or scope.model or scope.environment) else "user_day"
    return "hour"


def _where(scope: b.Scope, params: dict[str, Any], calls: bool) -> str:
    clauses = []
    for key, values in scope.filters().items():
        params[key] = list(values)
        clauses.append(f"{b.SCOPE_COLUMNS[key]} = ANY(%({key})s)")
    if scope.tags and calls:
        params["tags"] = Jsonb(dict(scope.tags))
        clauses.append("tags <> '{}'::jsonb AND tags @> %(tags)s")
    return "".join(f" AND {c}" for c in clauses)


def _floor(moment: datetime, unit: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((moment - epoch) // unit) * unit


def _ceil(moment: datetime, unit: timedelta) -> datetime:
    floor = _floor(moment, unit)
    return floor if floor == moment else floor + unit


def spend_query(scope: b.Scope, start: datetime, end: datetime, tz: str) -> tuple[str, dict[str, Any]]:
    """SQL + parameters returning (local day, cost, calls, unpriced calls) rows for a scope and window."""
    params: dict[str, Any] = {"start": start, "end": end, "tz": tz}
    calls_where = _where(scope, params, calls=True)
    calls_sql = f"""SELECT ts AS bucket, coalesce(cost_usd, 0) AS cost, 1 AS calls,
                           CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END AS unpriced
                    FROM llm_calls WHERE {{edge}}{calls_where}"""
    source = source_of(scope)
    if source == "calls":
        parts = [calls_sql.replace("{edge}", "ts >= %(start)s AND ts < %(end)s")]
    else:
        unit = timedelta(hours=1) if source == "hour" else timedelta(days=1)
        params["a0"], params["a1"] = _ceil(start, unit), max(_floor(end, unit), _ceil(start, unit))
        table = "llm_rollup_hour" if source == "hour" else "llm_rollup_user_day"
        parts = [
            f"""SELECT bucket, cost_usd AS cost, calls, unpriced_calls AS unpriced FROM {table}
                WHERE bucket >= %(a0)s AND bucket < %(a1)s{_where(scope, params, calls=False)}"""
        ]
        if params["a0"] > start:
            parts.append(calls_sql.replace("{edge}", "ts >= %(start)s AND ts < %(a0)s"))
        if params["a1"] < end:
            parts.append(calls_sql.replace("{edge}", "ts >= %(a1)s AND ts < %(end)s"))
    union = "\nUNION ALL\n".join(parts)
    sql = f"""SELECT (bucket AT TIME ZONE %(tz)s)::date AS day, sum(cost) AS cost, sum(calls) AS calls,
                     sum(unpriced) AS unpriced
              FROM ({union}) AS spend GROUP BY 1 ORDER BY 1"""
    return sql, params


def spend(pool: ConnectionPool, scope: b.Scope, start: datetime, end: datetime, tz: str = "UTC") -> Spend:
    """Exact spend of ``scope`` in [start, end) and its split per local day of ``tz``.

    Also the building block of ``GET /api/v1/forecast``: pass ``Scope()`` for all spend.
    """
    sql, params = spend_query(scope, start, end, tz)
    with pool.connection() as conn:
        rows = conn.execute(sql, params).fetchall()
    daily = {row[0]: Decimal(row[1]) for row in rows}
    return Spend(
        total=sum(daily.values(), Decimal(0)),
        daily=daily,
        calls=sum(int(row[2]) for row in rows),
        unpriced_calls=sum(int(row[3]) for row in rows),
    )


def state_of(budget: b.Budget, utilization: Decimal) -> str:
    if utilization >= budget.exceeded:
        return "exceeded"
    if utilization >= budget.warning:
        return "warning"
    return "ok"


def period_forecast(budget: b.Budget, spent: Spend, now: datetime, level: float = 0.8) -> Forecast | None:
    """The period-end forecast of a budget from its spend per local day; None once the period is over."""
    zone = ZoneInfo(budget.timezone)
    first, after = budget.local_days(now)
    period_days = float((after - first).days)
    local_now = now.astimezone(zone)
    today = local_now.date()
    if today >= after:
        return None
    if today < first:  # a fixed period that has not started yet
        return forecast_period_end([Decimal(0)], elapsed_days=0, period_days=period_days, level=level)
    midnight = datetime.combine(today, time(), tzinfo=zone)
    fraction = min((local_now - midnight).total_seconds() / 86400, 1.0)  # wall-clock day; DST ignored
    days = [spent.daily.get(first + timedelta(days=i), Decimal(0)) for i in range((today - first).days + 1)]
    elapsed = (today - first).days + fraction
    return forecast_period_end(days, elapsed_days=elapsed, period_days=period_days, level=level)


def evaluate(pool: ConnectionPool, budget: b.Budget, now: datetime) -> BudgetStatus:
    """Spend, utilisation, state and forecast of one budget's current period."""
    start, end = budget.window(now)
    spent = spend(pool, budget.scope, start, end, budget.timezone)
    utilization = (spent.total / budget.limit).quantize(_RATIO)
    return BudgetStatus(
        budget=budget,
        period_start=start,
        period_end=end,
        spent=spent.total,
        calls=spent.calls,
        unpriced_calls=spent.unpriced_calls,
        utilization=utilization,
        state=state_of(budget, utilization),
        forecast=period_forecast(budget, spent, now),
        evaluated_at=now,
    )


# --- API budgets in Postgres -----------------------------------------------------------------------------


def load_api_budgets(pool: ConnectionPool) -> list[b.Budget]:
    sql = """SELECT name, limit_usd, period, scope, thresholds, reset_day, timezone, start_date, end_date
             FROM llm_budgets ORDER BY name"""
    with pool.connection() as conn:
        rows = conn.execute(sql).fetchall()
    out = []
    for name, limit, period, scope, thresholds, reset_day, tz, start, end in rows:
        data = {"name": name, "limit": limit, "period": period, "scope": scope, "thresholds": thresholds}
        data.update({"timezone": tz, "start": start, "end": end})
        if period in ("weekly", "monthly"):
            data["reset_day"] = reset_day
        out.append(b.parse_budget(data, source="api"))
    return out


def save_api_budget(pool: ConnectionPool, budget: b.Budget, *, create_only: bool = False) -> bool:
    """Insert or replace an API budget. Returns False when ``create_only`` and the name exists."""
    conflict = (
        "DO NOTHING"
        if create_only
        else """DO UPDATE SET limit_usd = EXCLUDED.limit_usd, period = EXCLUDED.period, scope = EXCLUDED.scope,
               thresholds = EXCLUDED.thresholds, reset_day = EXCLUDED.reset_day, timezone = EXCLUDED.timezone,
               start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date, updated_at = now()"""
    )
    sql = f"""INSERT INTO llm_budgets (name, limit_usd, period, scope, thresholds, reset_day, timezone,
                                      start_date, end_date)
              VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) {conflict} RETURNING name"""
    params = (
        budget.name,
        budget.limit,
        budget.period,
        Jsonb(budget.scope.to_json()),
        list(budget.thresholds),
        budget.reset_day,
        budget.timezone,
        budget.start,
        budget.end,
    )
    with pool.connection() as conn:
        return conn.execute(sql, params).fetchone() is not None


def delete_api_budget(pool: ConnectionPool, name: str) -> bool:
    with pool.connection() as conn:
        return conn.execute("DELETE FROM llm_budgets WHERE name = %s RETURNING name", (name,)).fetchone() is not None


# --- the engine ------------------------------------------------------------------------------------------


class BudgetEngine(PromCollector):
    """Holds the budget set (file + API) and its latest evaluation; refreshes both in a daemon thread.

    It is also a Prometheus collector: a scrape only formats the cached evaluation (floats only there).
    """

    def __init__(
        self,
        pool: Callable[[], ConnectionPool],
        budgets_file: str = "",
        refresh_seconds: float = 15,
        clock: Callable[[], datetime] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self._pool = pool
        self._alive = alive or (lambda: True)
        self.budgets_file = budgets_file
        self.refresh_seconds = max(refresh_seconds, 0.2)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self.file_budgets: list[b.Budget] = b.load_file(budgets_file) if budgets_file else []
        self.api_budgets: list[b.Budget] = []
        self.statuses: dict[str, BudgetStatus] = {}
        self.evaluated_at: datetime | None = None
        self.last_error: str = ""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload_requested = False
        self._thread: threading.Thread | None = None

    # budget set ----------------------------------------------------------------------------------------
    def budgets(self) -> list[b.Budget]:
        return b.merge(self.file_budgets, self.api_budgets)

    def get(self, name: str) -> b.Budget | None:
        return next((x for x in self.budgets() if x.name == name), None)

    def reload_file(self) -> list[b.Budget]:
        """Re-read the budgets file. On error the previous good set stays in force and the error is raised."""
        if not self.budgets_file:
            return []
        budgets = b.load_file(self.budgets_file)
        self.file_budgets = budgets
        logger.info("budgets file %s reloaded: %d budgets", self.budgets_file, len(budgets))
        return budgets

    def request_reload(self) -> None:
        """Ask the background thread to reload the file (safe from a signal handler)."""
        self._reload_requested = True
        self._wake.set()

    # evaluation ----------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload API budgets from Postgres and evaluate every budget now."""
        with self._lock:
            pool = self._pool()
            self.api_budgets = load_api_budgets(pool)
            now = self._clock()
            statuses = {}
            for budget in self.budgets():
                statuses[budget.name] = evaluate(pool, budget, now)
            self.statuses = statuses
            self.evaluated_at = now
            self.last_error = ""

    def start(self) -> None:
        """First evaluation now (so the first scrape has gauges), then every ``refresh_seconds``."""
        self._safe_refresh()
        self._thread = threading.Thread(target=self._run, name="llmmeter-budgets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _safe_refresh(self) -> bool:
        try:
            self.refresh()
        except Exception as exc:
            if self._stop.is_set():
                return False
            message = f"budget evaluation failed (keeping the last result): {exc!r}"
            if message != self.last_error:
                logger.warning("%s", message)
            self.last_error = message
            return "closed" not in str(exc).lower()  # a closed pool: the collector is stopping
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()
            if self._stop.is_set() or not self._alive():
                return  # stopped, or the collector shut down
            if self._reload_requested:
                self._reload_requested = False
                try:
                    self.reload_file()
                except b.BudgetError as exc:
                    logger.error("budgets file not reloaded, the previous budgets stay in force: %s", exc)
            if not self._safe_refresh():
                return

    # prometheus ----------------------------------------------------------------------------------------
    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families(self.statuses.values()))

    def _families(self, statuses: Sequence[BudgetStatus] | Any = ()) -> list[GaugeMetricFamily]:
        limit = GaugeMetricFamily(sc.PROM_BUDGET_LIMIT, "Budget limit for the current period, USD.", labels=["budget"])
        spent = GaugeMetricFamily(sc.PROM_BUDGET_SPENT, "Spend in the budget's current period, USD.", labels=["budget"])
        util = GaugeMetricFamily(sc.PROM_BUDGET_UTILIZATION, "Spent / limit.", labels=["budget"])
        forecast = GaugeMetricFamily(
            sc.PROM_BUDGET_FORECAST, "Forecast spend at the end of the budget's period, USD.", labels=["budget"]
        )
        threshold = GaugeMetricFamily(
            sc.PROM_BUDGET_THRESHOLD,
            "Budget alert thresholds as ratios of the limit (warning = first, exceeded = last).",
            labels=["budget", "threshold"],
        )
        for status in statuses:
            name = [status.budget.name]
            limit.add_metric(name, float(status.budget.limit))
            spent.add_metric(name, float(status.spent))
            util.add_metric(name, float(status.utilization))
            if status.forecast is not None:
                forecast.add_metric(name, float(status.forecast.expected))
            threshold.add_metric([*name, "warning"], float(status.budget.warning))
            threshold.add_metric([*name, "exceeded"], float(status.budget.exceeded))
        return [limit, spent, util, forecast, threshold]
