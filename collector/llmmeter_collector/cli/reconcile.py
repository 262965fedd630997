"""``llmmeter reconcile``: the ledger against the provider's own usage and cost reports (``GET /api/v1/reconcile``).

The collector reads the reports with its admin key for the provider; the CLI only needs an admin key of the
collector. Exit 1 when the collector cannot read them (no admin key set there, the provider refused it).
"""

from __future__ import annotations

import json
from datetime import date

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import count, get, json_option, url_option, usd


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"must be a date such as 2026-11-01, got {value!r}") from None


def _signed(amount: str) -> str:
    value = float(amount)
    return ("+" if value > 0 else "-" if value < 0 else "") + usd(amount.lstrip("-"))


@click.command()
@click.option(
    "--provider",
    required=True,
    type=click.Choice(["openai", "anthropic", "focus"]),
    help="Whose reports (focus: the cloud AI spend of `llmmeter import focus`).",
)
@click.option("--from", "start", callback=_day, help="First UTC day [7 days ago].")
@click.option("--to", "end", callback=_day, help="Last UTC day, included [yesterday].")
@click.option(
    "--group-by", type=click.Choice(["project", "api_key"]), help="The provider's project / workspace or key."
)
@url_option
@json_option
def reconcile(provider: str, start: str | None, end: str | None, group_by: str | None, url: str, as_json: bool) -> None:
    """Does the ledger match the provider's bill? Per day and model: tokens, dollars, coverage (admin key)."""
    params = {"provider": provider, "from": start, "to": end, "group_by": group_by}
    data = get(url, "/api/v1/reconcile", {k: v for k, v in params.items() if v})
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    table = Table(title=f"{provider}: the ledger against the provider's reports, {data['from']} to {data['to']}")
    for column in ("day", "model", "billed tokens", "ledger tokens", "billed", "ledger", "difference", "coverage", ""):
        table.add_column(column, justify="left" if column in ("day", "model", "") else "right")
    for r in data["rows"]:
        billed = r["provider_input_tokens"] + r["provider_output_tokens"]
        ledger = r["ledger_input_tokens"] + r["ledger_output_tokens"]
        coverage = f"{float(r['coverage']) * 100:.1f} %" if r["coverage"] is not None else "-"
        findings = ", ".join(f for f in r["findings"] if f != "match")
        table.add_row(
            r["day"], r["model"], count(billed), count(ledger), usd(r["provider_usd"]), usd(r["ledger_usd"]),
            _signed(r["difference_usd"]), coverage, findings,
        )  # fmt: skip
    if data["rows"]:
        console.print(table)
    if data["groups"]:
        groups = Table(title=f"billed by the provider's {data['group_by'].replace('_', ' ')}")
        for column in ("day", "model", data["group_by"], "input tokens", "output tokens", "billed"):
            groups.add_column(column)
        for g in data["groups"]:
            groups.add_row(
                g["day"], g["model"], g["group"] or "-", count(g["input_tokens"]), count(g["output_tokens"]),
                usd(g["usd"]) if g["usd"] is not None else "(not by key)",
            )  # fmt: skip
        console.print(groups)
    for item in data["other_costs"]:
        click.echo(f"not a model's tokens: {item['day']} {item['item']} {usd(item['usd'])}")
    click.echo(
        f"billed {usd(data['provider_usd'])}, ledger {usd(data['ledger_usd'])}"
        f" (difference {_signed(data['difference_usd'])})"
    )
    click.echo(data["summary"])
