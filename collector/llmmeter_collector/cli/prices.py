"""``llmmeter prices``: validate an overrides file, look up what a model costs, list models without a price,
reprice stored calls and list the reprices.

``check FILE`` runs locally (no collector needed) and prints each problem as ``file:line: field: what``;
exit code 1 when the file is invalid. ``lookup`` and ``unpriced`` ask a running collector
(``GET /api/v1/prices``), so the answer includes its overrides file. ``reprice`` starts a run on the collector and
follows it with a progress bar; ``history`` lists the runs. The REST side is ``api/prices.py``.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmmeter_collector.cli.common import CollectorError, count, get, json_option, request, url_option, usd

POLL_SECONDS = 0.5


@click.group()
def prices() -> None:
    """Prices: check an overrides file, look up a model, list unpriced models."""


@prices.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a price overrides FILE (exit 1 and one line per problem when it is invalid)."""
    from pathlib import Path

    from llmmeter_collector.pricing import check_price_file

    if not Path(file).is_file():
        raise click.BadParameter(f"no such file {file!r}", param_hint="FILE")
    problems = check_price_file(file)
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise CollectorError(f"{file}: {len(problems)} problem(s); the collector would refuse this file")
    click.echo(f"{file}: OK")


@prices.command()
def schema() -> None:
    """Print the JSON Schema of the overrides file, for an editor's completion and inline checks."""
    from llmmeter_collector.pricing.overrides import schema_text

    click.echo(schema_text(), nl=False)


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


def _day_or_instant(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from datetime import datetime

    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"must be a date (2026-11-01) or an ISO date-time, got {value!r}") from None
    return value


def _minute(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _changes_table(run: dict[str, Any]) -> Table:
    verb = "would change" if run["dry_run"] else "changed"
    table = Table(title=f"reprice run {run['id']}: {verb} per day and model")
    for column in ("day", "provider", "model", "calls", "USD before", "USD after", "difference"):
        table.add_column(column, justify="right" if column not in ("day", "provider", "model") else "left")
    for c in run["changes"]:
        table.add_row(
            c["day"], c["provider"], c["model"], count(c["calls"]), usd(c["usd_before"]), usd(c["usd_after"]),
            _signed(c["usd_difference"]),
        )  # fmt: skip
    return table


def _signed(amount: str) -> str:
    value = Decimal(amount)
    return ("+" if value > 0 else "-" if value < 0 else "") + usd(str(abs(value)))


def _summary(run: dict[str, Any]) -> str:
    verb = "would change" if run["dry_run"] else "changed"
    line = (
        f"reprice run {run['id']} {run['status']}: {verb} {count(run['changed'])} of {count(run['examined'])} calls,"
        f" {usd(run['usd_before'])} -> {usd(run['usd_after'])} ({_signed(run['usd_difference'])})"
    )
    if run["newly_priced"]:
        line += f"; {count(run['newly_priced'])} stored unpriced are priced"
    if run["newly_unpriced"]:
        line += f"; {count(run['newly_unpriced'])} have no price any more"
    return line


def _follow(url: str, run: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Poll the run until it is no longer running, with a progress bar on a terminal."""
    path = f"/api/v1/prices/reprices/{run['id']}"
    if quiet:
        while run["status"] == "running":
            time.sleep(POLL_SECONDS)
            run = get(url, path)
        return run
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("repricing", total=max(run["total_calls"], 1))
        while run["status"] == "running":
            bar.update(task, completed=run["examined"], description=f"{count(run['changed'])} changed")
            time.sleep(POLL_SECONDS)
            run = get(url, path)
        bar.update(task, completed=run["examined"])
    return run


@prices.command()
@click.option("--from", "start", required=True, callback=_day_or_instant, help="First UTC day.")
@click.option("--to", "end", required=True, callback=_day_or_instant, help="Last UTC day (included).")
@click.option("--provider", default="", help="Only this provider's calls (openai, anthropic, ...).")
@click.option("--model", default="", help="Only calls to this model.")
@click.option("--project", default="", help="Only this project's calls.")
@click.option("--dry-run", is_flag=True, help="Show the difference per day and model; change nothing.")
@url_option
@json_option
def reprice(
    start: str, end: str, provider: str, model: str, project: str, dry_run: bool, url: str, as_json: bool
) -> None:
    """Price stored calls again with the current catalog and overrides (admin key).

    Calls and every rollup change together; a second run changes nothing. Dates are UTC days, both included.
    """
    params = {"from": start, "to": end, "provider": provider, "model": model, "project": project}
    params = {k: v for k, v in params.items() if v}
    if dry_run:
        params["dry_run"] = "true"
    run = _follow(url, request(url, "POST", "/api/v1/prices/reprice", params=params), quiet=as_json)
    if as_json:
        click.echo(json.dumps(run, indent=2))
    else:
        if run["changes"]:
            Console().print(_changes_table(run))
        click.echo(_summary(run))
    if run["status"] == "failed":
        raise CollectorError(f"reprice run {run['id']} failed: {run['error']}")


@prices.command()
@click.argument("run_id", required=False, type=click.IntRange(min=1))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="Runs to list.")
@url_option
@json_option
def history(run_id: int | None, limit: int, url: str, as_json: bool) -> None:
    """Reprice runs (who, when, range, calls changed, dollars), or one RUN_ID's changes per day and model."""
    if run_id is not None:
        run = get(url, f"/api/v1/prices/reprices/{run_id}")
        if as_json:
            click.echo(json.dumps(run, indent=2))
            return
        Console().print(_changes_table(run))
        click.echo(_summary(run))
        return
    runs = get(url, "/api/v1/prices/reprices", {"limit": limit})["runs"]
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    if not runs:
        click.echo("no reprice runs yet")
        return
    table = Table(title="reprice runs")
    for column in ("id", "when", "who", "range", "filters", "status", "calls changed", "USD before", "USD after"):
        table.add_column(column)
    for r in runs:
        filters = ", ".join(f"{k}={r[k]}" for k in ("provider", "model", "project") if r[k])
        if r["only_unpriced"]:
            filters = ", ".join(x for x in (filters, "unpriced calls") if x)
        status = r["status"] + (" (dry run)" if r["dry_run"] else "")
        table.add_row(
            str(r["id"]), _minute(r["created_at"]), r["actor"], f"{_minute(r['range_from'])} to {_minute(r['range_to'])}",  # noqa: E501
            filters or "-", status, count(r["changed"]), usd(r["usd_before"]), usd(r["usd_after"]),
        )  # fmt: skip
    Console().print(table)
