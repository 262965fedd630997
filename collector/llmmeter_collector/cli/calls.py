"""``llmmeter calls``: the most expensive (or the latest) calls, with filters, page by page."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, url_option, usd
from llmmeter_collector.cli.filters import call_filters, query_params


@click.command("calls")
@url_option
@json_option
@call_filters
@click.option("--order", type=click.Choice(["cost", "time"]), default="cost", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Calls per page.")
@click.option("--cursor", default=None, help="next_cursor of a previous page (with --json).")
def calls_command(url: str, as_json: bool, order: str, limit: int, cursor: str | None, **filters: Any) -> None:
    """The most expensive calls (or the latest with --order time), filtered by time, project, model, user, ..."""
    params = {**query_params(filters), "order": order, "limit": str(limit)}
    if cursor:
        params["cursor"] = cursor
    data = get(url, "/api/v1/calls", params)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    table = Table(title="Most expensive calls" if order == "cost" else "Latest calls")
    for column in ("time (UTC)", "project", "feature", "model", "user", "in", "out", "cost", "status"):
        table.add_column(column, justify="right" if column in ("in", "out", "cost") else "left")
    for c in data["calls"]:
        table.add_row(
            c["ts"][:19].replace("T", " "),
            c["project"] or "-",
            c["feature"] or "-",
            c["model"],
            c["user_id"] or "-",
            f"{c['input_tokens']:,}",
            f"{c['output_tokens']:,}",
            usd(c["cost_usd"]) if c["cost_usd"] is not None else "[yellow]unpriced[/yellow]",
            c["status"] if c["status"] == "ok" else f"[red]{c['error_type'] or 'error'}[/red]",
        )
    console.print(table)
    if data["next_cursor"]:
        console.print(f"[dim]next page: llmmeter calls --order {order} --cursor {data['next_cursor']}[/dim]")
