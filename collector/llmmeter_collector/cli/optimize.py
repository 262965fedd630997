"""``llmmeter optimize``: the top savings recommendations, each with monthly dollars, confidence and evidence."""

from __future__ import annotations

import json
from decimal import Decimal

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, url_option, usd, warn_unknown

_CONFIDENCE = {"high": "green", "medium": "yellow", "low": "dim"}


@click.command()
@url_option
@json_option
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True, help="Days of history to analyse.")
@click.option("--project", default=None, help="Only this project.")
@click.option("--top", type=click.IntRange(1, 100), default=5, show_default=True, help="How many to show.")
def optimize(url: str, as_json: bool, days: int, project: str | None, top: int) -> None:
    """The changes that would cut spend most, ranked by monthly savings, with the evidence behind each."""
    params: dict[str, object] = {"days": days, **({"project": project} if project else {})}
    data = get(url, "/api/v1/recommendations", params)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    recs = data["recommendations"]
    if not recs:
        warn_unknown(url, {"project": project})
        console.print(data.get("message", "no recommendations"))
        return
    priced = [Decimal(r["monthly_savings_usd"]) for r in recs if r["monthly_savings_usd"] is not None]
    console.print(
        f"[bold]{len(recs)} recommendations[/bold] from {data['calls']:,} calls over {data['window_days']} days"
        f" ({usd(data['cost_usd'])} spent); up to [bold green]{usd(sum(priced, Decimal(0)))}[/bold green] a month"
    )
    table = Table(show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("saves / month", justify="right")
    table.add_column("confidence")
    table.add_column("recommendation")
    for i, rec in enumerate(recs[:top], 1):
        saving = usd(rec["monthly_savings_usd"]) if rec["monthly_savings_usd"] is not None else "price missing"
        evidence = ", ".join(
            f"{k}={v}" for k, v in rec["evidence"].items() if not isinstance(v, (list, dict)) and v not in ("", None)
        )
        colour = _CONFIDENCE.get(rec["confidence"], "")
        table.add_row(
            str(i),
            saving,
            f"[{colour}]{rec['confidence']}[/{colour}]",
            f"[bold]{rec['title']}[/bold]\n{rec['action']}\n[dim]{evidence}[/dim]",
        )
    console.print(table)
    if len(recs) > top:
        console.print(f"[dim]{len(recs) - top} more: llmmeter optimize --top {len(recs)}[/dim]")
