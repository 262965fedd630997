"""``llmmeter calls``: the most expensive (or the latest) calls, with filters, page by page."""

from __future__ import annotations

import json
import shlex
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import count, get, json_option, url_option, usd, warn_unknown
from llmmeter_collector.cli.filters import as_options, call_filters, query_params

NARROW = 120


def next_page_command(url: str, params: dict[str, str], order: str, limit: int, cursor: str) -> str:
    """The command that prints the next page: the same URL, filters, order and page size, one line."""
    args = ["llmmeter", "calls", "--url", url, *as_options(params), "--order", order, "--limit", str(limit)]
    return shlex.join([*args, "--cursor", cursor])


@click.command("calls")
@url_option
@json_option
@call_filters
@click.option("--order", type=click.Choice(["cost", "time"]), default="cost", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Calls per page.")
@click.option("--cursor", default=None, help="next_cursor of a previous page (printed under the table).")
def calls_command(url: str, as_json: bool, order: str, limit: int, cursor: str | None, **filters: Any) -> None:
    """The most expensive calls (or the latest with --order time), filtered by time, project, model, user, ..."""
    filter_params = query_params(filters)
    params = {**filter_params, "order": order, "limit": str(limit)}
    if cursor:
        params["cursor"] = cursor
    data = get(url, "/api/v1/calls", params)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data["calls"] and not cursor:
        names = {k: filters.get(k) for k in ("project", "feature", "model")}
        warn_unknown(url, names)
        click.echo("No calls match these filters.")
        return
    console = Console()
    narrow = console.width < NARROW  # 80 columns: lighter borders, shorter times, text folds instead of "…"
    table = Table(
        title="Most expensive calls" if order == "cost" else "Latest calls",
        box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
        pad_edge=not narrow,
        collapse_padding=narrow,
    )
    for column in ("time (UTC)", "project", "feature", "model", "user", "in", "out", "cost", "status"):
        table.add_column(
            column,
            justify="right" if column in ("in", "out", "cost") else "left",
            no_wrap=column in ("model", "cost"),  # never cut a model name: gemini-2.5-flash vs -flash-lite
            overflow="fold",
        )
    for c in data["calls"]:
        table.add_row(
            c["ts"][5 if narrow else 0 : 16 if narrow else 19].replace("T", " "),
            c["project"] or "-",
            c["feature"] or "-",
            c["model"],
            c["user_id"] or "-",
            count(c["input_tokens"]),
            count(c["output_tokens"]),
            usd(c["cost_usd"]) if c["cost_usd"] is not None else "[yellow]unpriced[/yellow]",
            c["status"] if c["status"] == "ok" else f"[red]{c['error_type'] or 'error'}[/red]",
        )
    console.print(table)
    if data["next_cursor"]:
        # click.echo, not rich: the command stays on one line whatever the terminal width, so it copies whole
        click.echo("next page: " + next_page_command(url, filter_params, order, limit, data["next_cursor"]))
