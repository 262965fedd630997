"""The ``llmmeter`` command: run a collector, and read spend from one over its REST API.

Exit codes: 0 success; 1 the collector answered with an error or could not be reached;
2 wrong usage (bad option or argument); 3 a needed extra is not installed.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

DEFAULT_URL = "http://localhost:4318"


class CollectorError(click.ClickException):
    exit_code = 1


def _get(url: str, path: str, params: dict[str, Any] | None = None) -> Any:
    try:
        response = httpx.get(url.rstrip("/") + path, params=params, timeout=10)
    except httpx.HTTPError as exc:
        raise CollectorError(f"cannot reach the collector at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        raise CollectorError(f"collector answered {response.status_code}: {detail}")
    return response.json()


def _usd(value: str) -> str:
    amount = Decimal(value)
    if amount == 0:
        return "$0.00"
    if abs(amount) < Decimal("0.01"):
        return f"${amount:.6f}"
    return f"${amount:,.2f}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """llmmeter: what your LLM calls cost, by model, feature, project and user."""


url_option = click.option(
    "--url", envvar="LLMMETER_URL", default=DEFAULT_URL, show_default=True, help="Collector base URL."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


@cli.command()
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
    data = _get(url, "/api/v1/summary", {"period": period})
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    spend = data["spend"]
    totals = Table(title="LLM spend (USD)", show_header=True)
    for column in ("today", "this week", "this month", "all time"):
        totals.add_column(column, justify="right")
    totals.add_row(*(_usd(spend[p]) for p in ("today", "week", "month", "all")))
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
            cost = _usd(row["cost_usd"])
            if row["unpriced_calls"]:
                cost += f" + {row['unpriced_calls']} unpriced"
            names = [row[d] or "(none)" for d in dims]
            table.add_row(
                *names, str(row["calls"]), f"{row['input_tokens']:,}", f"{row['output_tokens']:,}", cost
            )
        console.print(table)
    if data["unpriced_calls"]:
        models = ", ".join(f"{m['provider']}/{m['model']} ({m['calls']})" for m in data["unpriced_models"])
        console.print(f"[yellow]{data['unpriced_calls']} calls have no known price:[/yellow] {models}")


@cli.command()
@click.option("--host", envvar="LLMMETER_HOST", default=None, help="Address to listen on [127.0.0.1].")
@click.option(
    "--port", "http_port", type=click.IntRange(0, 65535), default=None, help="OTLP/HTTP + API port [4318]."
)
@click.option(
    "--database-url", envvar="LLMMETER_DATABASE_URL", default=None, help="Postgres DSN; none: embedded."
)
def serve(host: str | None, http_port: int | None, database_url: str | None) -> None:
    """Run the collector: OTLP in, prices on, ledger in Postgres, /metrics and the REST API out."""
    from llmmeter_collector.config import ConfigError, Settings
    from llmmeter_collector.service import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(host=host, http_port=http_port, database_url=database_url)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    run(settings)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="llmmeter")
