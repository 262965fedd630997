"""``llmmeter prices``: validate an overrides file, look up what a model costs, list models without a price.

``check FILE`` runs locally (no collector needed) and prints each problem as ``file:line: field: what``;
exit code 1 when the file is invalid. ``lookup`` and ``unpriced`` ask a running collector
(``GET /api/v1/prices``), so the answer includes its overrides file. The REST side lives here too
(``routes``): ``GET /api/v1/prices`` and ``POST /api/v1/prices/reload`` (admin: re-read the overrides file,
keeping the last good prices when the new file has errors; SIGHUP does the same).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import CollectorError, get, json_option, request, url_option

if TYPE_CHECKING:
    from starlette.routing import Route

    from llmmeter_collector.pricing.catalog import Rates
    from llmmeter_collector.service import Collector

_MILLION = Decimal(1_000_000)
_RATE_NAMES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "input_audio", "output_audio")


@click.group()
def prices() -> None:
    """Prices: check an overrides file, look up a model, list unpriced models."""


@prices.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a price overrides FILE (exit 1 and one line per problem when it is invalid)."""
    from pathlib import Path

    from llmmeter_collector.pricing.catalog import check_price_file

    if not Path(file).is_file():
        raise click.BadParameter(f"no such file {file!r}", param_hint="FILE")
    problems = check_price_file(file)
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise CollectorError(f"{file}: {len(problems)} problem(s); the collector would refuse this file")
    click.echo(f"{file}: OK")


@prices.command()
@click.argument("model")
@click.option("--provider", default="", help="gen_ai.provider.name (openai, anthropic, gcp.gemini, …).")
@click.option("--batch", is_flag=True, help="Price as a Batch API call.")
@click.option("--service-tier", default="", help="flex, priority, …")
@click.option("--at", "at", default=None, help="ISO date/time (UTC) the price applies at [now].")
@url_option
@json_option
def lookup(model: str, provider: str, batch: bool, service_tier: str, at: str | None, url: str, as_json: bool) -> None:
    """What MODEL costs per million tokens, as the collector prices it (catalog + overrides)."""
    params: dict[str, Any] = {"model": model, "provider": provider, "service_tier": service_tier}
    if batch:
        params["batch"] = "true"
    if at:
        params["at"] = at
    data = get(url, "/api/v1/prices", params)
    found = data["lookup"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found["priced"]:
        raise CollectorError(f"no price for {provider + '/' if provider else ''}{model}: it would be stored unpriced")
    table = Table(title=f"{found['provider'] or '?'} / {found['matched_model']} ({found['source']})")
    table.add_column("token class")
    table.add_column("USD per 1M tokens", justify="right")
    for name, value in found["usd_per_million_tokens"].items():
        table.add_row(name, value)
    if Decimal(found["per_request_usd"]):
        table.add_row("per request (USD)", found["per_request_usd"])
    if Decimal(found["per_hour_usd"]):
        table.add_row("per hour (USD)", found["per_hour_usd"])
    Console().print(table)
    for tier in found["long_context"]:
        click.echo(f"prompts over {tier['threshold']} tokens: the whole request at the tier rates")
    for note in found["notes"]:
        click.echo(f"note: {note}")


@prices.command()
@url_option
@json_option
def unpriced(url: str, as_json: bool) -> None:
    """Models seen without a price (stored with a NULL cost): add them to the overrides file."""
    data = get(url, "/api/v1/prices")
    rows = data["unpriced_models"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("every call seen so far had a price")
        return
    table = Table(title="models without a price")
    for column in ("provider", "model", "calls", "last seen"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["provider"], row["model"], str(row["calls"]), row["last_seen"])
    Console().print(table)


@prices.command()
@url_option
def reload(url: str) -> None:
    """Ask the collector to re-read its overrides file (admin key)."""
    data = request(url, "POST", "/api/v1/prices/reload")
    click.echo(f"prices reloaded from {data['overrides_file'] or 'the catalog only'}")


# --- REST -------------------------------------------------------------------------------------------------------


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
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from llmmeter_collector.api import auth as apiauth

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
