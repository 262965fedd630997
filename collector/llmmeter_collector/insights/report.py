"""The weekly / monthly cost report: spend of the last complete week or month (or the current one so far),
compared with the period before, by model, feature and project, unpriced calls, and budget status.

Served as ``GET /api/v1/report?period=week|month[&current=true]`` (``api/budgets.py``) and
rendered by ``llmmeter report`` (text, Markdown, JSON; sent to a webhook or Slack). Money as strings.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

if TYPE_CHECKING:
    from llmmeter_collector.budgets.status import BudgetEngine

PERIODS = ("week", "month")
TOP = 10


class ReportError(ValueError):
    """A report parameter is invalid; the message names it."""


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_bounds(period: str, now: datetime, current: bool = False) -> tuple[datetime, datetime, datetime, datetime]:
    """(start, end, previous start, previous end) in UTC. Weeks start on Monday.

    Default: the last complete week or month. ``current``: this week or month up to ``now``, compared with
    the same length of time at the start of the period before.
    """
    if period not in PERIODS:
        raise ReportError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    now = now.astimezone(timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        this_start = today - timedelta(days=today.weekday())
        prev_of = lambda start: start - timedelta(days=7)  # noqa: E731
    else:
        this_start = _month_start(today)
        prev_of = lambda start: _month_start(start - timedelta(days=1))  # noqa: E731
    if current:
        prev_start = prev_of(this_start)
        return this_start, now, prev_start, prev_start + (now - this_start)
    start = prev_of(this_start)
    prev_start = prev_of(start)
    return start, this_start, prev_start, start


def _money(value: Decimal | None) -> str:
    return format(value if value is not None else Decimal(0), "f")


def _rows(pool: ConnectionPool, dims: str, params: dict[str, Any], only: str) -> list[dict[str, Any]]:
    sql = f"""SELECT {dims}, sum(calls) AS calls, sum(unpriced_calls) AS unpriced_calls, sum(cost_usd) AS cost_usd
              FROM llm_rollup_hour WHERE bucket >= %(start)s AND bucket < %(end)s{only}
              GROUP BY {dims} ORDER BY sum(cost_usd) DESC, sum(calls) DESC LIMIT {TOP}"""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
    for row in rows:
        row["cost_usd"] = _money(row["cost_usd"])
        row["calls"], row["unpriced_calls"] = int(row["calls"]), int(row["unpriced_calls"])
    return rows


def build(
    pool: ConnectionPool,
    period: str = "week",
    now: datetime | None = None,
    current: bool = False,
    engine: BudgetEngine | None = None,
    projects: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The report as JSON-ready data; ``projects`` limits it to those projects (an API key's)."""
    only = "" if projects is None else " AND project = ANY(%(projects)s)"
    start, end, prev_start, prev_end = period_bounds(period, now or datetime.now(timezone.utc), current)
    totals_sql = f"""
        SELECT coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(start)s AND bucket < %(end)s), 0),
               coalesce(sum(calls) FILTER (WHERE bucket >= %(start)s AND bucket < %(end)s), 0),
               coalesce(sum(unpriced_calls) FILTER (WHERE bucket >= %(start)s AND bucket < %(end)s), 0),
               coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(prev_start)s AND bucket < %(prev_end)s), 0)
        FROM llm_rollup_hour WHERE bucket >= %(prev_start)s AND bucket < %(end)s{only}"""
    daily_sql = f"""SELECT date_trunc('day', bucket) AS day, sum(cost_usd) FROM llm_rollup_hour
                    WHERE bucket >= %(start)s AND bucket < %(end)s{only} GROUP BY 1 ORDER BY 1"""
    unpriced_sql = f"""SELECT provider, model, sum(unpriced_calls) AS calls FROM llm_rollup_hour
                       WHERE bucket >= %(start)s AND bucket < %(end)s{only}
                      GROUP BY provider, model HAVING sum(unpriced_calls) > 0 ORDER BY 3 DESC"""
    # a list: psycopg sends a tuple as a record, which ``= ANY(...)`` cannot take (every scoped key got 500)
    visible = None if projects is None else list(projects)
    params = {"start": start, "end": end, "prev_start": prev_start, "prev_end": prev_end, "projects": visible}
    with pool.connection() as conn:
        total, calls, unpriced, previous = conn.execute(totals_sql, params).fetchone() or (0, 0, 0, 0)
        daily = conn.execute(daily_sql, params).fetchall()
        unpriced_models = conn.execute(unpriced_sql, params).fetchall()
    total, previous = Decimal(total), Decimal(previous)
    change = None if previous == 0 else ((total - previous) / previous * 100).quantize(Decimal("0.1"))
    statuses = sorted(engine.statuses.values(), key=lambda s: s.budget.name) if engine else []
    if projects is not None:
        statuses = [s for s in statuses if s.budget.scope.project and set(s.budget.scope.project) <= set(projects)]
    return {
        "currency": "USD",
        "period": period,
        "current": current,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "previous_start": prev_start.isoformat(),
        "previous_end": prev_end.isoformat(),
        "total_usd": _money(total),
        "previous_total_usd": _money(previous),
        "change_pct": None if change is None else format(change, "f"),
        "calls": int(calls),
        "unpriced_calls": int(unpriced),
        "unpriced_models": [{"provider": p, "model": m, "calls": int(c)} for p, m, c in unpriced_models],
        "daily": [{"day": d.date().isoformat(), "cost_usd": _money(c)} for d, c in daily],
        "by_model": _rows(pool, "provider, model", params, only),
        "by_feature": _rows(pool, "feature", params, only),
        "by_project": _rows(pool, "project", params, only),
        "budgets": [s.to_json() for s in statuses],
    }
