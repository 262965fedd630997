"""The REST API (``/api/v1/...``): spend summaries from the Postgres rollups. Money is returned as strings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from llmmeter_collector.service import Collector

PERIODS = ("today", "week", "month", "all")


class BadRequest(ValueError):
    """A request parameter is invalid; the message names it."""


def period_starts(now: datetime) -> dict[str, datetime | None]:
    """Start of today, this ISO week (Monday) and this month, in UTC."""
    today = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "today": today,
        "week": today - timedelta(days=today.weekday()),
        "month": today.replace(day=1),
        "all": None,
    }


def _money(value: Decimal | None) -> str:
    return format(value if value is not None else Decimal(0), "f")


def _breakdown(pool: ConnectionPool, dims: str, since: datetime | None) -> list[dict[str, Any]]:
    where = "WHERE bucket >= %(since)s" if since is not None else ""
    sql = f"""
        SELECT {dims}, sum(calls) AS calls, sum(unpriced_calls) AS unpriced_calls,
               sum(cost_usd) AS cost_usd, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
        FROM llm_rollup_hour {where}
        GROUP BY {dims} ORDER BY sum(cost_usd) DESC, sum(calls) DESC"""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, {"since": since}).fetchall()
    for row in rows:
        row["cost_usd"] = _money(row["cost_usd"])
        for key in ("calls", "unpriced_calls", "input_tokens", "output_tokens"):
            row[key] = int(row[key])
    return rows


def summary(pool: ConnectionPool, period: str = "month", now: datetime | None = None) -> dict[str, Any]:
    """Spend today / this week / this month / all time, and breakdowns for ``period``."""
    if period not in PERIODS:
        raise BadRequest(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    starts = period_starts(now or datetime.now(timezone.utc))
    sql = """
        SELECT coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(today)s), 0) AS today,
               coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(week)s), 0) AS week,
               coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(month)s), 0) AS month,
               coalesce(sum(cost_usd), 0) AS all,
               coalesce(sum(calls), 0) AS calls, coalesce(sum(unpriced_calls), 0) AS unpriced_calls
        FROM llm_rollup_hour"""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        totals = cur.execute(sql, starts).fetchone() or {}
        unpriced = cur.execute(
            """SELECT provider, model, sum(unpriced_calls) AS calls FROM llm_rollup_hour
               GROUP BY provider, model HAVING sum(unpriced_calls) > 0 ORDER BY 3 DESC"""
        ).fetchall()
    since = starts[period]
    return {
        "currency": "USD",
        "period": period,
        "period_start": since.isoformat() if since else None,
        "spend": {p: _money(totals.get(p)) for p in PERIODS},
        "calls": int(totals.get("calls", 0)),
        "unpriced_calls": int(totals.get("unpriced_calls", 0)),
        "unpriced_models": [{**r, "calls": int(r["calls"])} for r in unpriced],
        "by_model": _breakdown(pool, "provider, model", since),
        "by_provider": _breakdown(pool, "provider", since),
        "by_feature": _breakdown(pool, "feature", since),
        "by_project": _breakdown(pool, "project", since),
    }


def counter_seed(pool: ConnectionPool) -> list[dict[str, Any]]:
    """All-time totals per metric label set, to start Prometheus counters where they were."""
    sql = """
        SELECT provider, model, project, feature, operation, status,
               sum(calls) AS calls, sum(unpriced_calls) AS unpriced_calls, sum(cost_usd) AS cost_usd,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
               sum(reasoning_tokens) AS reasoning_tokens
        FROM llm_rollup_hour GROUP BY 1, 2, 3, 4, 5, 6"""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql).fetchall()


def routes(collector: Collector) -> list[Route]:
    """The REST API's routes, mounted by the collector service."""

    async def get_summary(request: Request) -> Response:
        try:
            body = await run_in_threadpool(summary, collector.pool, request.query_params.get("period", "month"))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(body)

    return [Route("/api/v1/summary", get_summary)]
