"""``llmmeter status``: spend today / this week / this month / all time, by model and by feature."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, url_option, usd


@click.command()
@url_option
@json_option
@click.option(
    "--period",
    type=click.Choice(["today", "week", "month", "all"]),
    default="month",
    show_default=True,
    help="Period of the by-model and by-feature breakdowns.",
)
def status(url: str, as_json: bool, period: str) -> None:
    """Spend today / this week / this month / all time, by model and by feature."""
    data = get(url, "/api/v1/summary", {"period": period})
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    spend = data["spend"]
    totals = Table(title="LLM spend (USD)", show_header=True)
    for column in ("today", "this week", "this month", "all time"):
        totals.add_column(column, justify="right")
    totals.add_row(*(usd(spend[p]) for p in ("today", "week", "month", "all")))
    console.print(totals)
    label = {"today": "today", "week": "this week", "month": "this month", "all": "all time"}[period]
    for key, title, dims in (
        ("by_model", f"By model ({label})", ("provider", "model")),
        ("by_feature", f"By feature ({label})", ("feature",)),
    ):
        table = Table(title=title)
        for dim in dims:
            table.add_column(dim)
        for column in ("calls", "input tokens", "output tokens", "cost"):
            table.add_column(column, justify="right")
        for row in data[key]:
            cost = usd(row["cost_usd"])
            if row["unpriced_calls"]:
                cost += f" + {row['unpriced_calls']} unpriced"
            names = [row[d] or "(none)" for d in dims]
            table.add_row(*names, str(row["calls"]), f"{row['input_tokens']:,}", f"{row['output_tokens']:,}", cost)
        console.print(table)
    if data["unpriced_calls"]:
        models = ", ".join(f"{m['provider']}/{m['model']} ({m['calls']})" for m in data["unpriced_models"])
        console.print(f"[yellow]{data['unpriced_calls']} calls have no known price:[/yellow] {models}")
