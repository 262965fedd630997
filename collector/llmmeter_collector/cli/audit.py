"""``llmmeter audit``: the audit log (admin key of every project), as a table, JSON lines or CSV
(``GET /api/v1/audit``)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, url_option
from llmmeter_collector.cli.filters import WHEN

COLUMNS = ("id", "at", "actor", "role", "projects", "action", "target", "client", "status")


@click.command()
@click.option("--since", type=WHEN, default=None, help="From this time (ISO date, today, 7d, ...).")
@click.option("--until", type=WHEN, default=None, help="Up to this time.")
@click.option("--actor", default=None, help='Only this actor, e.g. "key 3 (root)".')
@click.option("--action", default=None, help='Only actions containing this, e.g. "POST /api/v1/keys", "retention".')
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True)
@url_option
def audit(since: Any, until: Any, actor: str | None, action: str | None, limit: int, fmt: str, url: str) -> None:
    """Who read call-level data or changed something, when, from where, with what result (newest first)."""
    params = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
              "actor": actor, "action": action, "limit": limit}  # fmt: skip
    entries = get(url, "/api/v1/audit", {k: v for k, v in params.items() if v is not None})["entries"]
    if fmt == "jsonl":
        for entry in entries:
            click.echo(json.dumps(entry))
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for entry in entries:
            writer.writerow({**entry, "projects": ",".join(entry["projects"] or [])})
        click.echo(out.getvalue(), nl=False)
        return
    if not entries:
        click.echo("no audit entries match")
        return
    table = Table(title="audit log (newest first)")
    for column in ("at", "actor", "action", "target", "client", "status"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e["at"][:19].replace("T", " "), e["actor"], e["action"], e["target"], e["client"], str(e["status"])
        )
    Console().print(table)
