"""``llmmeter report --period week|month``: the cost report, printed (text or Markdown, or --json) and
optionally sent to a webhook (JSON: text + data) or a Slack incoming webhook. Run it on a schedule (cron,
systemd timer, Kubernetes CronJob: see the README, "Cost reports")."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import click
import httpx

from llmmeter_collector.cli.common import CollectorError, count, get, json_option, url_option, usd


def cost_text(row: dict[str, Any]) -> str:
    """A row's cost: "unpriced" when none of its calls has a price (never $0.00), "+ N unpriced" when some."""
    unpriced = int(row.get("unpriced_calls") or 0)
    if unpriced and unpriced >= int(row["calls"]):
        return "unpriced"
    return usd(row["cost_usd"]) + (f" + {count(unpriced)} unpriced calls" if unpriced else "")


def _change(report: dict[str, Any]) -> str:
    if report["change_pct"] is None:
        return "no spend in the period before"
    pct = Decimal(report["change_pct"])
    arrow = "up" if pct > 0 else "down" if pct < 0 else "flat"
    return f"{arrow} {abs(pct)}% from {usd(report['previous_total_usd'])} the period before"


def _title(report: dict[str, Any]) -> str:
    what = {"week": "week", "month": "month"}[report["period"]]
    span = f"{report['start'][:10]} to {report['end'][:10]}"
    return f"LLM cost report, {'this' if report['current'] else 'last'} {what} ({span}, UTC)"


def render(report: dict[str, Any], style: str = "text") -> str:
    """The report as plain text, GitHub Markdown (``markdown``) or Slack mrkdwn (``slack``)."""
    bold = {"text": "{}", "markdown": "**{}**", "slack": "*{}*"}[style]
    head = {"text": "{}", "markdown": "### {}", "slack": "*{}*"}[style]
    bullet = "-" if style != "slack" else "•"
    lines = [
        head.format(_title(report)),
        "",
        f"Total: {bold.format(usd(report['total_usd']))} over {count(report['calls'])} calls ({_change(report)}).",
    ]
    if report["unpriced_calls"]:
        models = ", ".join(f"{m['provider']}/{m['model']} ({count(m['calls'])})" for m in report["unpriced_models"])
        unpriced = count(report["unpriced_calls"])
        lines.append(f"{unpriced} calls have no known price and are not in the total: {models}.")
    for key, title, dims in (
        ("by_model", "Top models", ("provider", "model")),
        ("by_feature", "Top features", ("feature",)),
        ("by_project", "By project", ("project",)),
    ):
        if not report[key]:
            continue
        lines += ["", head.format(title) if style != "text" else f"{title}:"]
        for row in report[key]:
            name = "/".join(row[d] or "(none)" for d in dims)
            lines.append(f"{bullet} {name}: {cost_text(row)} ({count(row['calls'])} calls)")
    if report["budgets"]:
        lines += ["", head.format("Budgets (current period)") if style != "text" else "Budgets (current period):"]
        for b in report["budgets"]:
            used = Decimal(b["utilization"]) * 100
            forecast = (b.get("forecast") or {}).get("expected_usd")
            tail = f", forecast {usd(forecast)} by period end" if forecast else ""
            state = bold.format(b["state"]) if b["state"] != "ok" else b["state"]
            lines.append(
                f"{bullet} {b['name']}: {usd(b['spent_usd'])} of {usd(b['limit_usd'])} ({used:.0f}%, {state}){tail}"
            )
    return "\n".join(lines) + "\n"


def _send(target: str, payload: dict[str, Any]) -> None:
    try:
        response = httpx.post(target, json=payload, timeout=30)
    except httpx.HTTPError as exc:
        raise CollectorError(f"cannot send the report to {target}: {exc}") from None
    if response.status_code >= 400:
        raise CollectorError(f"sending the report to {target} failed: {response.status_code} {response.text[:200]}")


@click.command()
@click.option("--period", type=click.Choice(["week", "month"]), default="week", show_default=True)
@click.option("--current", is_flag=True, help="This week/month so far instead of the last complete one.")
@click.option(
    "--format", "style", type=click.Choice(["text", "markdown"]), default="text", show_default=True, help="Output."
)
@click.option("--send-webhook", metavar="URL", help="POST {text, report} as JSON to this URL.")
@click.option(
    "--send-slack",
    metavar="WEBHOOK_URL",
    envvar="LLMMETER_SLACK_WEBHOOK_URL",
    help="Post to a Slack incoming webhook (or LLMMETER_SLACK_WEBHOOK_URL).",
)
@url_option
@json_option
def report(
    period: str,
    current: bool,
    style: str,
    send_webhook: str | None,
    send_slack: str | None,
    url: str,
    as_json: bool,
) -> None:
    """The weekly or monthly cost report: total, change, top models and features, unpriced calls, budgets."""
    data = get(url, "/api/v1/report", {"period": period, "current": str(current).lower()})
    text = render(data, style)
    if send_webhook:
        _send(send_webhook, {"text": text, "report": data})
    if send_slack:
        _send(send_slack, {"text": render(data, "slack")})
    click.echo(json.dumps(data, indent=2) if as_json else text, nl=as_json)
