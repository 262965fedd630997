"""``GET /api/v1/reconcile``: the ledger against a provider's own usage and cost reports (``insights/reconcile.py``).

Admin key of every project only: the provider's reports cover the whole organisation. The provider's admin key is
the collector's (its environment), never the caller's. Each answer also sets the reconcile gauges on /metrics.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.openapi import BadRequest, Operation, Param, register
from llmmeter_collector.insights import provider_reports, reconcile

RECONCILE = Operation(
    "GET",
    "/api/v1/reconcile",
    "The ledger against the provider's own usage and cost reports, per UTC day and model",
    description="Reads the provider's organisation reports with the collector's admin key for that provider "
    "(LLMMETER_OPENAI_ADMIN_KEY, LLMMETER_ANTHROPIC_ADMIN_KEY). Dates are UTC days, both included; default: the last "
    "7 complete days. 400 when no key is configured, 502 when the provider cannot be read.",
    role="admin",
    params=(
        Param(
            "provider",
            "string",
            "Whose reports (focus: the clouds' FOCUS imports).",
            required=True,
            choices=(*provider_reports.PROVIDERS, "focus"),
        ),
        Param("from", "datetime", "First UTC day."),
        Param("to", "datetime", "Last UTC day (included)."),
        Param(
            "group_by",
            "string",
            "Also break the provider's figures down by its project (workspace) or API key.",
            choices=("project", "api_key"),
        ),
    ),
    tag="spend",
)
register(RECONCILE)


def _days(args: dict[str, Any]) -> tuple[date, date]:
    start, end = reconcile.window(7)
    if args["from"] is not None:
        start = args["from"].astimezone(timezone.utc).date()
    if args["to"] is not None:
        end = args["to"].astimezone(timezone.utc).date() + timedelta(days=1)
    if end <= start:
        raise BadRequest("to", "must not be before from")
    if end > datetime.now(timezone.utc).date() + timedelta(days=1):
        raise BadRequest("to", "is in the future")
    return start, end


def routes(collector: Collector) -> list[Route]:
    def run(request: Request) -> Response:
        try:
            args = RECONCILE.parse(request.query_params)
            start, end = _days(args)
            if args["provider"] == "focus":
                result = reconcile.reconcile_focus(collector.pool, start, end)
            else:
                result = reconcile.reconcile(collector.pool, args["provider"], start, end, args["group_by"] or "")
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        except ValueError as exc:
            return JSONResponse({"error": str(exc), "field": str(exc).split(":", 1)[0]}, status_code=400)
        except provider_reports.ReportError as exc:
            collector.metrics.reconcile_failures.labels(args["provider"]).inc()
            if exc.configuration:
                return JSONResponse({"error": str(exc), "field": "provider"}, status_code=400)
            return JSONResponse({"error": str(exc)}, status_code=502)
        if args["provider"] != "focus":
            collector.reconciled(result)
        return JSONResponse(result)

    async def get_reconcile(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        return denied if denied is not None else await run_in_threadpool(run, request)

    get_reconcile.__doc__ = RECONCILE.summary
    return [Route(RECONCILE.path, get_reconcile, methods=["GET"])]
