"""``llmmeter doctor``: is all the GenAI traffic the collector receives counted, and priced on full usage?

For each instrumentation scope the collector has seen since it started: the spans it counted as calls, and
the spans that carry a model or token counts but were not counted, with why (``no_provider``: names we read
but no provider attribute; ``unknown_attributes``: names no dialect in ``ingest/dialects.py`` uses; ``rejected``:
invalid counts or no model). Then the models without a price, and the calls whose instrumentation is known not
to report a token class (``usage_missing``) with the spend that rests on them. The REST side is
``api/doctor.py`` (``GET /api/v1/doctor``). Scope counts are per collector process and shown to keys that see every
project; the ledger parts are limited to the key's projects.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, url_option, usd

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
        table = Table(title=f"calls on incomplete usage (last {incomplete['days']} days)")
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
