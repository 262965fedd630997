"""``llmmeter webhooks``: event webhook subscriptions and their delivery logs (``/api/v1/webhooks``, admin key of
every project)."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, request, url_option

EVENTS = ("budget.threshold", "anomaly", "model.unpriced", "reconcile.drift")


@click.group()
def webhooks() -> None:
    """Signed event webhooks: budget thresholds, anomalies, unpriced models, reconcile drift."""


@webhooks.command()
@click.argument("target")
@click.option("--event", "chosen", type=click.Choice(EVENTS), multiple=True, required=True, help="Repeat for several.")
@click.option("--format", "fmt", type=click.Choice(["json", "slack"]), default="json", show_default=True)
@url_option
def add(target: str, chosen: tuple[str, ...], fmt: str, url: str) -> None:
    """Subscribe TARGET (an http(s) URL); prints the signing secret, shown only this once."""
    made = request(url, "POST", "/api/v1/webhooks", json={"url": target, "events": list(chosen), "format": fmt})
    click.echo(f"webhook {made['id']}: {', '.join(made['events'])} -> {made['url']} ({made['format']})")
    click.echo(f"secret (keep it to check X-Llmmeter-Signature; shown only now): {made['secret']}")


@webhooks.command("list")
@url_option
@json_option
def list_command(url: str, as_json: bool) -> None:
    """The subscriptions with their delivered, pending and failed counts."""
    found = get(url, "/api/v1/webhooks")["webhooks"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table(title="webhooks")
    for column in ("id", "url", "events", "format", "delivered", "pending", "failed"):
        table.add_column(column)
    for w in found:
        table.add_row(str(w["id"]), w["url"], ", ".join(w["events"]), w["format"], str(w["delivered"]),
                      str(w["pending"]), str(w["failed"]))  # fmt: skip
    Console().print(table)


@webhooks.command()
@click.argument("webhook_id", type=click.IntRange(min=1))
@url_option
def remove(webhook_id: int, url: str) -> None:
    """Remove a subscription (its pending deliveries are dropped)."""
    request(url, "DELETE", f"/api/v1/webhooks/{webhook_id}")
    click.echo(f"webhook {webhook_id} removed")


@webhooks.command()
@click.argument("webhook_id", type=click.IntRange(min=1))
@url_option
@json_option
def deliveries(webhook_id: int, url: str, as_json: bool) -> None:
    """A subscription's delivery log, newest first."""
    found = get(url, f"/api/v1/webhooks/{webhook_id}/deliveries")["deliveries"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"webhook {webhook_id} deliveries")
    for column in ("id", "event", "event id", "status", "attempts", "last answer", "error"):
        table.add_column(column)
    for d in found:
        table.add_row(str(d["id"]), d["event"], d["event_id"], d["status"], str(d["attempts"]),
                      str(d["last_status"] or "-"), d["last_error"] or "-")  # fmt: skip
    Console().print(table)
