"""``GET /api/v1/doctor``: per instrumentation scope, the spans counted and the GenAI-looking ones that were not,
the models without a price and the spend resting on incomplete usage (rendered by ``llmmeter doctor``).
``GET /api/v1/sdk-versions``: the instrumentations and versions sending calls, flagged (``insights/sdk_versions.py``;
keys of every project, shown by ``llmmeter status``).

Scope counts are per collector process and shown to keys that see every project; the ledger parts are limited to
the key's projects.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.prices import unpriced_models
from llmmeter_collector.insights import sdk_versions

WINDOW_DAYS = 30  # the ledger part covers the last 30 days


def scope_report(collector: Collector) -> list[dict[str, Any]]:
    """Per instrumentation scope: calls and the GenAI-looking spans not counted, by reason."""
    rows: dict[str, dict[str, Any]] = {}
    for (scope, outcome), n in sorted(collector.metrics.scopes.snapshot().items()):
        row = rows.setdefault(scope, {"scope": scope, "calls": 0, "not_counted": {}})
        if outcome == "call":
            row["calls"] += n
        else:
            row["not_counted"][outcome] = n
    return sorted(rows.values(), key=lambda r: (-sum(r["not_counted"].values()), r["scope"]))


def incomplete_usage(collector: Collector, projects: tuple[str, ...] | None) -> dict[str, Any]:
    """Calls of the last ``WINDOW_DAYS`` days whose usage an instrumentation did not fully report, and their spend."""
    since = datetime.now(timezone.utc) - timedelta(days=WINDOW_DAYS)
    where = "usage_missing AND ts >= %(since)s" + (" AND project = ANY(%(projects)s)" if projects is not None else "")
    sql = f"""SELECT provider, model, usage_incomplete, count(*), coalesce(sum(cost_usd), 0)
              FROM llm_calls WHERE {where} GROUP BY 1, 2, 3 ORDER BY 5 DESC, 1, 2"""
    with collector.pool.connection() as conn:
        rows = conn.execute(sql, {"since": since, "projects": list(projects or ())}).fetchall()
    by_model = [
        {"provider": r[0], "model": r[1], "missing": r[2] or "usage", "calls": int(r[3]), "cost_usd": str(r[4])}
        for r in rows
    ]
    return {
        "days": WINDOW_DAYS,
        "calls": sum(r["calls"] for r in by_model),
        "cost_usd": str(sum((r[4] for r in rows), start=0)),
        "by_model": by_model,
    }


def routes(collector: Collector) -> list[Route]:
    """``GET /api/v1/doctor``."""

    def report(request: Request) -> Response:
        projects = apiauth.visible_projects(request)
        return JSONResponse(
            {
                "scopes": scope_report(collector) if projects is None else [],
                "unpriced_models": unpriced_models(collector, projects),
                "incomplete_usage": incomplete_usage(collector, projects),
            }
        )

    async def get_doctor(request: Request) -> Response:
        return await run_in_threadpool(report, request)

    async def get_sdk_versions(request: Request) -> Response:
        """The instrumentations and versions that sent calls, with what to fix"""
        found = await run_in_threadpool(sdk_versions.versions, collector.pool)
        return JSONResponse({"sdk_versions": found})

    return [
        Route("/api/v1/doctor", get_doctor, methods=["GET"]),
        Route("/api/v1/sdk-versions", get_sdk_versions, methods=["GET"]),
    ]
