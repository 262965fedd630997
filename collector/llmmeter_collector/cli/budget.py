"""``llmmeter budget``: set, list and remove budgets over the collector's REST API.

llmmeter budget 500                                   # the monthly total (budget "total", no scope)
llmmeter budget set --name search-team --scope feature=search --period monthly --limit 200
llmmeter budget list [--json]
llmmeter budget rm search-team
llmmeter budget reload                                # re-read the collector's budgets file
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import CollectorError, json_option, request, url_option, usd

PERIODS = ("daily", "weekly", "monthly", "fixed")
BAR_WIDTH = 20
# The collector's budgets.MAX_LIMIT_USD, checked here before any request (the CLI does not import the service).
MAX_LIMIT_USD = Decimal("1000000000")
_NUMBER = re.compile(r"^[-+]?\$?[-+]?[0-9][0-9,]*(\.[0-9]*)?([eE][-+]?[0-9]+)?$|^[-+]?\$?[-+]?\.[0-9]+$")


def _looks_like_amount(text: str) -> bool:
    return bool(_NUMBER.match(text.strip())) or text.strip().lower().lstrip("+-$") in ("inf", "infinity", "nan")


def parse_amount(text: str) -> Decimal:
    """A budget limit in USD: positive, finite, at most $1,000,000,000 and at most cents; ``$1,500.50`` is fine."""
    cleaned = text.strip().replace(",", "").replace("$", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"must be an amount in USD such as 500 or 1250.50, got {text!r}") from None
    if not amount.is_finite():
        raise ValueError(f"must be a finite amount in USD, got {text!r}")
    if amount <= 0:
        raise ValueError(f"must be more than $0, got {text!r} (remove a budget with `llmmeter budget rm NAME`)")
    if amount > MAX_LIMIT_USD:
        raise ValueError(f"must be at most ${MAX_LIMIT_USD:,} a period, got {text!r}")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"must be whole cents (at most 2 decimals), got {text!r}")
    return amount


def _amount_or_usage(text: str, hint: str) -> str:
    try:
        return str(parse_amount(text))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


class _BudgetGroup(click.Group):
    """``llmmeter budget 500`` is short for ``llmmeter budget total 500``; ``-5`` or ``abc`` get a clear message."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and _looks_like_amount(args[0]):  # not an option: a negative amount
            _amount_or_usage(args[0], "AMOUNT")
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            if _looks_like_amount(args[0]):
                return "total", self.commands["total"], args
            raise click.UsageError(
                f"expected an amount in USD (`llmmeter budget 500`) or one of {', '.join(sorted(self.commands))};"
                f" got {args[0]!r}",
                ctx,
            )
        return super().resolve_command(ctx, args)


def _write(url: str, name: str, body: dict[str, Any]) -> Any:
    """PUT the budget; a definition the collector refuses is a usage error (exit 2) naming the field."""
    try:
        return request(url, "PUT", f"/api/v1/budgets/{name}", json=body)
    except CollectorError as exc:
        if "answered 400" in exc.message:
            raise click.UsageError(exc.message.split(": ", 1)[1]) from None
        raise


def _scope(values: tuple[str, ...]) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"expected key=value (e.g. feature=search), got {item!r}", param_hint="--scope")
        if key in scope:  # repeated key: several values, any of them matches
            scope[key] = [*(scope[key] if isinstance(scope[key], list) else [scope[key]]), value]
        else:
            scope[key] = value
    return scope


def _bar(utilization: Decimal, thresholds: list[float]) -> str:
    filled = min(int(utilization * BAR_WIDTH), BAR_WIDTH)
    colour = "green"
    if utilization >= Decimal(str(thresholds[-1])):
        colour = "red"
    elif utilization >= Decimal(str(thresholds[0])):
        colour = "yellow"
    return f"[{colour}]{'█' * filled}{'░' * (BAR_WIDTH - filled)} {utilization * 100:.0f}%[/{colour}]"


def _show(data: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    status = data.get("status") or {}
    click.echo(
        f"budget {data['name']}: {usd(data['limit_usd'])} {data['period']} ({_describe(data['scope'])}),"
        f" spent {usd(status.get('spent_usd', '0'))} ({status.get('state', 'not evaluated yet')})"
    )


def _describe(scope: dict[str, Any]) -> str:
    parts = [f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in scope.items() if k != "tags"]
    parts += [f"tag.{k}={v}" for k, v in scope.get("tags", {}).items()]
    return ", ".join(parts) or "everything"


@click.group(cls=_BudgetGroup)
def budget() -> None:
    """Budgets: `llmmeter budget 500` sets the monthly total; set, list, rm for scoped budgets."""


@budget.command("total", context_settings={"ignore_unknown_options": True})
@click.argument("amount", metavar="AMOUNT")
@click.option("--period", type=click.Choice(["daily", "weekly", "monthly"]), default="monthly", show_default=True)
@url_option
@json_option
def total(amount: str, period: str, url: str, as_json: bool) -> None:
    """Set the total budget of all LLM spend (budget "total"), monthly unless --period says otherwise."""
    _show(_write(url, "total", {"limit": _amount_or_usage(amount, "AMOUNT"), "period": period}), as_json)


@budget.command("set")
@click.option("--name", required=True, help="Budget name (letters, digits, '_', '.', '-').")
@click.option("--limit", "limit", required=True, help="Limit in USD for each period.")
@click.option("--scope", "scopes", multiple=True, help="key=value; keys: project, feature, provider, model, user, "
              "environment, tag.<name>. Repeat for more (same key twice = either value).")  # fmt: skip
@click.option("--period", type=click.Choice(PERIODS), default="monthly", show_default=True)
@click.option("--thresholds", help="Alert thresholds as ratios or percentages, ascending (default 0.8,1.0).")
@click.option("--reset-day", help="Weekly: 1-7 or monday..sunday; monthly: day of month 1-28.")
@click.option("--timezone", "tz", help="IANA time zone of the period boundaries (default UTC).")
@click.option("--start", help="First day of a fixed period (YYYY-MM-DD).")
@click.option("--end", help="Last day of a fixed period (YYYY-MM-DD, inclusive).")
@url_option
@json_option
def set_budget(
    name: str,
    limit: str,
    scopes: tuple[str, ...],
    period: str,
    thresholds: str | None,
    reset_day: str | None,
    tz: str | None,
    start: str | None,
    end: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Create or replace a budget."""
    body: dict[str, Any] = {"limit": _amount_or_usage(limit, "--limit"), "period": period, "scope": _scope(scopes)}
    for key, value in (
        ("thresholds", thresholds),
        ("reset_day", reset_day),
        ("timezone", tz),
        ("start", start),
        ("end", end),
    ):
        if value is not None:
            body[key] = value
    _show(_write(url, name, body), as_json)


@budget.command("list")
@url_option
@json_option
def list_budgets(url: str, as_json: bool) -> None:
    """Every budget with its spend this period, utilisation and period-end forecast."""
    data = request(url, "GET", "/api/v1/budgets")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    if not data["budgets"]:
        console.print("No budgets. Set one with `llmmeter budget 500` or `llmmeter budget set ...`.")
        return
    table = Table(title="Budgets (USD)")
    for column in ("name", "scope", "period", "limit", "spent", "used", "forecast", "source"):
        table.add_column(
            column,
            justify="right" if column in ("limit", "spent", "forecast") else "left",
            no_wrap=column in ("name", "limit"),
            overflow="fold",
        )
    for item in data["budgets"]:
        status = item.get("status") or {}
        forecast = (status.get("forecast") or {}).get("expected_usd")
        used = _bar(Decimal(status["utilization"]), item["thresholds"]) if status else "-"
        spent = usd(status["spent_usd"]) if status else "-"
        if status.get("unpriced_calls"):
            spent += f" + {status['unpriced_calls']} unpriced"
        table.add_row(
            item["name"],
            _describe(item["scope"]),
            item["period"] if item["period"] != "fixed" else f"{item['start']}..{item['end']}",
            usd(item["limit_usd"]),
            spent,
            used,
            usd(forecast) if forecast else "-",
            item["source"],
        )
    console.print(table)
    if data.get("shadowed_by_file"):
        console.print(f"[yellow]API budgets hidden by the budgets file:[/yellow] {', '.join(data['shadowed_by_file'])}")


@budget.command("rm")
@click.argument("name")
@url_option
@json_option
def remove(name: str, url: str, as_json: bool) -> None:
    """Delete a budget made with the API or CLI (budgets from the collector's file are read-only)."""
    data = request(url, "DELETE", f"/api/v1/budgets/{name}")
    click.echo(json.dumps(data) if as_json else f"deleted budget {name}")


@budget.command("reload")
@url_option
@json_option
def reload(url: str, as_json: bool) -> None:
    """Re-read the collector's budgets file (a bad file is refused and the previous budgets stay)."""
    data = request(url, "POST", "/api/v1/budgets/reload")
    click.echo(json.dumps(data) if as_json else f"reloaded {data['budgets_file']}: {', '.join(data['budgets'])}")
