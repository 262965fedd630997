"""``llmmeter doctor``: is all the GenAI traffic the collector receives counted, and priced on full usage?

For each instrumentation scope the collector has seen since it started: the spans it counted as calls, and
the spans that carry a model or token counts but were not counted, with why (``no_provider``: names we read
but no provider attribute; ``unknown_attributes``: names no dialect in ``dialects.py`` uses; ``rejected``:
invalid counts or no model). Then the models without a price, and the calls whose instrumentation is known not
to report a token class (``usage_missing``) with the spend that rests on them. The REST side lives here too
(``routes``): ``GET /api/v1/doctor``. Scope counts are per collector process and shown to keys that see every
project; the ledger parts are limited to the key's projects.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, url_option, usd

if TYPE_CHECKING:
    from starlette.routing import Route

    from llmmeter_collector.service import Collector

WINDOW_DAYS = 30  # the ledger part covers the last 30 days
REASONS = {
    "no_provider": "model/tokens but no provider attribute",
    "unknown_attributes": "model/tokens under names llmmeter does not read",
    "rejected": "rejected (invalid counts or no model)",
}


@click.command()
@url_option
@json_option
def doctor(url: str, as_json: bool) -> None:
    """Which instrumentations send spans, which GenAI-looking spans are not counted and why, what is unpriced."""
    data = get(url, "/api/v1/doctor")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    scopes = Table(title="instrumentation scopes seen (since the collector started)")
    for column in ("scope", "calls", "not counted", "why"):
        scopes.add_column(column)
    seen: set[str] = set()
    for row in data["scopes"]:
        why = ", ".join(f"{n} {r}" for r, n in sorted(row["not_counted"].items()))
        seen.update(row["not_counted"])
        scopes.add_row(row["scope"], str(row["calls"]), str(sum(row["not_counted"].values())), why or "-")
    console.print(scopes if data["scopes"] else "no GenAI spans seen since the collector started")
    for reason in sorted(seen):
        click.echo(f"  {reason}: {REASONS.get(reason, reason)}")
    unpriced = data["unpriced_models"]
    if unpriced:
        table = Table(title="models without a price (stored unpriced, never $0)")
        for column in ("provider", "model", "calls"):
            table.add_column(column)
        for row in unpriced:
            table.add_row(row["provider"], row["model"], str(row["calls"]))
        console.print(table)
    incomplete = data["incomplete_usage"]
    if incomplete["calls"]:
        table = Table(title=f"calls on incomplete usage (last {WINDOW_DAYS} days)")
        for column in ("provider", "model", "missing", "calls", "spend"):
            table.add_column(column)
        for row in incomplete["by_model"]:
            table.add_row(row["provider"], row["model"], row["missing"], str(row["calls"]), usd(row["cost_usd"]))
        console.print(table)
    not_counted = sum(sum(r["not_counted"].values()) for r in data["scopes"])
    if not_counted or unpriced or incomplete["calls"]:
        click.echo(
            f"{not_counted} GenAI-looking span(s) not counted, {len(unpriced)} unpriced model(s), "
            f"{usd(incomplete['cost_usd'])} of spend on incomplete usage: see docs/instrumentations.md"
        )
    else:
        click.echo("every GenAI span seen was counted, priced and complete")


# --- REST -------------------------------------------------------------------------------------------------------


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
        "calls": sum(r["calls"] for r in by_model),
        "cost_usd": str(sum((r[4] for r in rows), start=0)),
        "by_model": by_model,
    }


def routes(collector: Collector) -> list[Route]:
    """``GET /api/v1/doctor``."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from llmmeter_collector.api import auth as apiauth
    from llmmeter_collector.cli.prices import unpriced_models

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

    return [Route("/api/v1/doctor", get_doctor, methods=["GET"])]
