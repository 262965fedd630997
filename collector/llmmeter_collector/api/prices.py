"""``GET /api/v1/prices`` (what a model costs, models without a price), ``POST /api/v1/prices/reload`` (admin:
re-read the overrides file, keeping the last good prices when the new file has errors; SIGHUP does the same) and
retroactive repricing (admin): ``POST /api/v1/prices/reprice`` starts a run (``ledger/reprice.py``),
``GET /api/v1/prices/reprices`` lists the runs, ``GET /api/v1/prices/reprices/{run_id}`` shows one with its
progress and what it changed per day and model.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.openapi import BadRequest, Operation, Param, register
from llmmeter_collector.ledger import reprice
from llmmeter_collector.pricing import Rates

_MILLION = Decimal(1_000_000)
_RATE_NAMES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "input_audio", "output_audio")


def _per_million(per_token: Decimal) -> str:
    return format((per_token * _MILLION).normalize(), "f")


def rates_json(rates: Rates | None, provider: str, model: str) -> dict[str, Any]:
    if rates is None:
        return {"priced": False, "provider": provider, "model": model}
    return {
        "priced": True,
        "provider": rates.provider or provider,
        "model": model,
        "matched_model": rates.model,
        "source": rates.source,
        "usd_per_million_tokens": {n: _per_million(getattr(rates, n)) for n in _RATE_NAMES},
        "per_request_usd": format(rates.per_request, "f"),
        "per_hour_usd": format(rates.per_hour, "f"),
        "long_context": [
            {
                "threshold": tier.threshold,
                "usd_per_million_tokens": {n: _per_million(getattr(tier.rates, n)) for n in _RATE_NAMES},
            }
            for tier in rates.long_context
        ],
        "notes": list(rates.notes),
    }


def unpriced_models(collector: Collector, projects: tuple[str, ...] | None) -> list[dict[str, Any]]:
    where = "unpriced_calls > 0" + (" AND project = ANY(%(projects)s)" if projects is not None else "")
    sql = f"""SELECT provider, model, sum(unpriced_calls) AS calls, max(bucket) AS last_seen
              FROM llm_rollup_hour WHERE {where} GROUP BY provider, model ORDER BY 3 DESC, 1, 2"""
    with collector.pool.connection() as conn:
        rows = conn.execute(sql, {"projects": list(projects or ())}).fetchall()
    return [{"provider": r[0], "model": r[1], "calls": int(r[2]), "last_seen": r[3].isoformat()} for r in rows]


REPRICE = Operation(
    "POST",
    "/api/v1/prices/reprice",
    "Reprice stored calls with the current prices (or, with dry_run, show what would change)",
    description="Starts a run in the background and answers 202 with it; follow it at /api/v1/prices/reprices/{id}. "
    "Dates are UTC days, both included; date-times are from (included) to (excluded). A key limited to projects "
    "reprices only its projects' calls.",
    role="admin",
    params=(
        Param("from", "datetime", "First day or instant to reprice.", required=True),
        Param("to", "datetime", "Last day (included) or instant (excluded).", required=True),
        Param("provider", "string", "Only this provider's calls."),
        Param("model", "string", "Only calls to this model."),
        Param("project", "string", "Only this project's calls."),
        Param("dry_run", "boolean", "Record what would change, change nothing.", default=False),
    ),
    tag="prices",
)
REPRICES = Operation(
    "GET",
    "/api/v1/prices/reprices",
    "Reprice runs, newest first: who, when, range, filters, calls changed, dollars before and after",
    role="admin",
    params=(Param("limit", "integer", "Runs to list.", default=50, minimum=1, maximum=1000),),
    tag="prices",
)
REPRICE_RUN = Operation(
    "GET",
    "/api/v1/prices/reprices/{run_id}",
    "One reprice run: its progress and what it changed per UTC day, provider and model",
    role="admin",
    tag="prices",
)
register(REPRICE, REPRICES, REPRICE_RUN)


def _actor(request: Request) -> str:
    found = apiauth.principal(request)
    return f"key {found.key_id} ({found.name})" if found is not None else "no key"


def _range(query: Any, args: dict[str, Any]) -> tuple[datetime, datetime]:
    start, end = args["from"], args["to"]
    if "T" not in query["to"]:  # a date: that whole UTC day is included
        end = end + timedelta(days=1)
    if end <= start:
        raise BadRequest("to", "must not be before from")
    return start, end


def routes(collector: Collector) -> list[Route]:
    """``GET /api/v1/prices`` (lookup + unpriced models) and ``POST /api/v1/prices/reload`` (admin)."""

    def lookup_or_list(request: Request) -> Response:
        q = request.query_params
        body: dict[str, Any] = {
            "catalog": collector.catalog.catalog_version,
            "overrides_file": str(collector.catalog.overrides_path or "") or None,
            "unpriced_models": unpriced_models(collector, apiauth.visible_projects(request)),
        }
        model = q.get("model", "").strip()
        if model:
            try:
                at = datetime.fromisoformat(q["at"]) if q.get("at") else datetime.now(timezone.utc)
            except ValueError:
                return JSONResponse({"error": f"at: not an ISO date/time: {q['at']!r}"}, status_code=400)
            batch = q.get("batch", "false").lower()
            if batch not in ("true", "false"):
                return JSONResponse({"error": f"batch: must be true or false, got {batch!r}"}, status_code=400)
            provider = q.get("provider", "").strip()
            rates = collector.catalog.rates(
                provider, model, at, batch=batch == "true", service_tier=q.get("service_tier", "")
            )
            body["lookup"] = rates_json(rates, provider, model)
        return JSONResponse(body)

    async def get_prices(request: Request) -> Response:
        return await run_in_threadpool(lookup_or_list, request)

    async def post_reload(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        problems = await run_in_threadpool(collector.reload_prices)
        if problems:
            return JSONResponse(
                {"error": "the overrides file has errors; the last good prices stay in use", "problems": problems},
                status_code=422,
            )
        return JSONResponse({"reloaded": True, "overrides_file": str(collector.catalog.overrides_path or "") or None})

    def start_reprice(request: Request) -> Response:
        try:
            args = REPRICE.parse(request.query_params)
            start, end = _range(request.query_params, args)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        project = args["project"] or ""
        if project and not apiauth.may_see(request, project):
            return JSONResponse({"error": f"project: this key may not see {project!r}", "field": "project"}, 403)
        spec = reprice.RepriceSpec(
            start, end, provider=args["provider"] or "", model=args["model"] or "", project=project,
            projects=apiauth.visible_projects(request), dry_run=args["dry_run"],
        )  # fmt: skip
        assert collector.repricer is not None
        try:
            run_id = collector.repricer.start(spec, _actor(request))
        except reprice.RepriceError as exc:
            field_name = str(exc).split(":", 1)[0]
            return JSONResponse({"error": str(exc), "field": field_name}, status_code=400)
        with collector.pool.connection() as conn:
            return JSONResponse(reprice.get_run(conn, run_id, None), status_code=202)

    def list_reprices(request: Request) -> Response:
        try:
            args = REPRICES.parse(request.query_params)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        with collector.pool.connection() as conn:
            return JSONResponse({"runs": reprice.list_runs(conn, apiauth.visible_projects(request), args["limit"])})

    def show_reprice(request: Request) -> Response:
        raw = request.path_params["run_id"]
        if not raw.isdigit() or len(raw) > 18:
            return JSONResponse({"error": f"run_id: must be a whole number, got {raw!r}", "field": "run_id"}, 400)
        with collector.pool.connection() as conn:
            run = reprice.get_run(conn, int(raw), apiauth.visible_projects(request))
        if run is None:
            return JSONResponse({"error": f"run_id: no reprice run {raw}", "field": "run_id"}, status_code=404)
        return JSONResponse(run)

    def admin_only(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            denied = apiauth.require_admin(request)
            return denied if denied is not None else await run_in_threadpool(handler, request)

        run.__doc__ = handler.__doc__
        return run

    return [
        Route("/api/v1/prices", get_prices, methods=["GET"]),
        Route("/api/v1/prices/reload", post_reload, methods=["POST"]),
        Route(REPRICE.path, admin_only(start_reprice), methods=["POST"]),
        Route(REPRICES.path, admin_only(list_reprices), methods=["GET"]),
        Route(REPRICE_RUN.path, admin_only(show_reprice), methods=["GET"]),
    ]
