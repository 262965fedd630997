"""``GET /api/v1/prices`` (what a model costs, models without a price) and ``POST /api/v1/prices/reload`` (admin:
re-read the overrides file, keeping the last good prices when the new file has errors; SIGHUP does the same).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
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

    return [
        Route("/api/v1/prices", get_prices, methods=["GET"]),
        Route("/api/v1/prices/reload", post_reload, methods=["POST"]),
    ]
