"""``llmmeter status``: spend today / this week / this month / all time, by model and by feature, budget bars
coloured at the warning threshold (80 % by default) and at 100 %, and the month-end forecast."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmmeter_collector.cli.common import CollectorError, count, get, json_option, url_option, usd, warn_unknown

BAR_WIDTH = 30


def budget_colour(utilization: Decimal, thresholds: list[float]) -> str:
    """green below the first threshold, yellow from it (80 % by default), red from 100 %."""
    warning = Decimal(str(thresholds[0])) if thresholds else Decimal("0.8")
    if utilization >= 1:
        return "red"
    if utilization >= warning:
        return "yellow"
    return "green"


def budget_bar(budget: dict[str, Any]) -> Text:
    """``[██████░░░░] 83%  $415.00 of $500.00`` in the budget's colour."""
    utilization = Decimal(budget["utilization"])
    colour = budget_colour(utilization, budget.get("thresholds") or [])
    filled = min(BAR_WIDTH, int(utilization * BAR_WIDTH))
    bar = Text("[")
    bar.append("█" * filled, style=colour)
    bar.append("░" * (BAR_WIDTH - filled), style="dim")
    bar.append("] ")
    bar.append(f"{utilization * 100:5.1f}%", style=f"bold {colour}")
    bar.append(f"  {usd(budget['spent_usd'])} of {usd(budget['limit_usd'])}")
    forecast = budget.get("forecast") or {}
    if forecast.get("expected_usd"):
        bar.append(f"  → {usd(forecast['expected_usd'])} by period end", style="dim")
    return bar


def _incomplete_usage(url: str) -> dict[str, Any] | None:
    """Spend that rests on usage an instrumentation did not fully report (``GET /api/v1/doctor``)."""
    try:
        result: dict[str, Any] = get(url, "/api/v1/doctor")["incomplete_usage"]
    except (CollectorError, KeyError):
        return None  # an older collector without doctor: status still answers
    return result


def _month_forecast(url: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = get(url, "/api/v1/forecast", {"period": "month"})
    except CollectorError:
        return None  # an older collector without forecasts: status still answers
    return result


def _sdk_versions(url: str) -> list[dict[str, Any]] | None:
    """The SDK versions sending data; None from an older collector or for a key limited to projects."""
    try:
        found: list[dict[str, Any]] = get(url, "/api/v1/sdk-versions")["sdk_versions"]
    except CollectorError:
        return None
    return found


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
@click.option("--project", default=None, help="Only this project.")
def status(url: str, as_json: bool, period: str, project: str | None) -> None:
    """Spend today / this week / this month / all time, by model and feature, budgets and the month-end forecast."""
    params = {"period": period, **({"project": project} if project else {})}
    data = get(url, "/api/v1/summary", params)
    data["forecast"] = _month_forecast(url) if project is None else None
    data["incomplete_usage"] = _incomplete_usage(url) if project is None else None
    data["sdk_versions"] = _sdk_versions(url) if project is None else None
    if project and not data["calls"] and not as_json:
        warn_unknown(url, {"project": project})
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
            table.add_column(dim, no_wrap=True)  # never cut a name: gemini-2.5-flash vs gemini-2.5-flash-lite
        for column in ("calls", "input tokens", "output tokens", "cost"):
            table.add_column(column, justify="right", no_wrap=column == "cost")
        for row in data[key]:
            unpriced = row["unpriced_calls"]
            cost = "unpriced" if unpriced and unpriced >= row["calls"] else usd(row["cost_usd"])
            if unpriced and cost != "unpriced":
                cost += f" + {count(unpriced)} unpriced"
            names = [row[d] or "(none)" for d in dims]
            table.add_row(*names, count(row["calls"]), count(row["input_tokens"]), count(row["output_tokens"]), cost)
        console.print(table)
    budgets = data.get("budgets") or []
    if budgets:
        table = Table(title="Budgets", show_header=True)
        table.add_column("budget")
        table.add_column("period")
        table.add_column("use")
        for budget in budgets:
            table.add_row(budget["name"], budget["period_start"][:10] + " →", budget_bar(budget))
        console.print(table)
    forecast = data.get("forecast")
    if forecast and forecast.get("expected_usd"):
        line = f"Month-end forecast: [bold]{usd(forecast['expected_usd'])}[/bold]"
        if forecast.get("lower_usd") and forecast.get("upper_usd"):
            level = round(float(forecast["level"]) * 100)
            line += f" ({level} % interval {usd(forecast['lower_usd'])} – {usd(forecast['upper_usd'])})"
        line += f", {usd(forecast['spent_usd'])} spent so far, method {forecast['method']}"
        console.print(line)
    incomplete = data.get("incomplete_usage")
    if incomplete and incomplete["calls"]:
        console.print(
            f"[yellow]{usd(incomplete['cost_usd'])} on incomplete usage ({incomplete['calls']} calls)[/yellow] in the"
            " last 30 days: their instrumentation does not report every token class (see llmmeter doctor)"
        )
    for sdk in data.get("sdk_versions") or []:
        line = f"SDK {sdk['scope']} {sdk['version']}: {count(sdk['calls'])} calls, last {sdk['last_seen'][:16]}"
        if sdk["flags"]:
            console.print(f"[yellow]{line}: {'; '.join(sdk['flags'])}[/yellow]")
        else:
            console.print(line)
    if data["unpriced_calls"]:
        models = ", ".join(f"{m['provider']}/{m['model']} ({m['calls']})" for m in data["unpriced_models"])
        console.print(f"[yellow]{data['unpriced_calls']} calls have no known price:[/yellow] {models}")
