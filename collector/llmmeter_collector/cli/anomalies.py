"""``llmmeter anomalies``: hours and days whose spend is far outside their trailing baseline."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, url_option, usd, warn_unknown


@click.command()
@url_option
@json_option
@click.option("--granularity", type=click.Choice(["hour", "day", "both"]), default="both", show_default=True)
@click.option("--threshold", type=click.IntRange(2, 100), default=5, show_default=True, help="Robust z-score.")
@click.option("--min-usd", default="1", show_default=True, help="Smallest deviation worth reporting, USD.")
@click.option("--project", default=None, help="Only this project.")
def anomalies(url: str, as_json: bool, granularity: str, threshold: int, min_usd: str, project: str | None) -> None:
    """Spend spikes and drops per project and feature, against each series' own baseline."""
    params: dict[str, object] = {"granularity": granularity, "threshold": threshold, "min_usd": min_usd}
    if project:
        params["project"] = project
    data = get(url, "/api/v1/anomalies", params)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    if not data["anomalies"]:
        warn_unknown(url, {"project": project})
        console.print(f"No anomalies in {data['series_checked']} series ({data['method']}).")
        return
    table = Table(title=f"Spend anomalies ({len(data['anomalies'])})")
    for column in ("when", "project", "feature", "spend", "usual", "score", ""):
        table.add_column(column, justify="right" if column in ("spend", "usual", "score") else "left")
    for a in data["anomalies"]:
        when = a["bucket"][:13].replace("T", " ") + "h" if a["granularity"] == "hour" else a["bucket"][:10]
        colour = "red" if a["direction"] == "spike" else "cyan"
        table.add_row(
            when + ("" if a["complete"] else " (so far)"),
            a["project"] or "(none)",
            a["feature"] or "(none)",
            usd(a["spend_usd"]),
            usd(a["baseline_median_usd"]),
            f"{a['score']:+.1f}",
            f"[{colour}]{a['direction']}[/{colour}]",
        )
    console.print(table)
