"""``llmmeter prices``: validate an overrides file, look up what a model costs, list models without a price.

``check FILE`` runs locally (no collector needed) and prints each problem as ``file:line: field: what``;
exit code 1 when the file is invalid. ``lookup`` and ``unpriced`` ask a running collector
(``GET /api/v1/prices``), so the answer includes its overrides file. The REST side is
``api/prices.py``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import CollectorError, get, json_option, request, url_option


@click.group()
def prices() -> None:
    """Prices: check an overrides file, look up a model, list unpriced models."""


@prices.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a price overrides FILE (exit 1 and one line per problem when it is invalid)."""
    from pathlib import Path

    from llmmeter_collector.pricing import check_price_file

    if not Path(file).is_file():
        raise click.BadParameter(f"no such file {file!r}", param_hint="FILE")
    problems = check_price_file(file)
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise CollectorError(f"{file}: {len(problems)} problem(s); the collector would refuse this file")
    click.echo(f"{file}: OK")


@prices.command()
def schema() -> None:
    """Print the JSON Schema of the overrides file, for an editor's completion and inline checks."""
    from llmmeter_collector.pricing.overrides import schema_text

    click.echo(schema_text(), nl=False)


@prices.command()
@click.argument("model")
@click.option("--provider", default="", help="gen_ai.provider.name (openai, anthropic, gcp.gemini, …).")
@click.option("--batch", is_flag=True, help="Price as a Batch API call.")
@click.option("--service-tier", default="", help="flex, priority, …")
@click.option("--at", "at", default=None, help="ISO date/time (UTC) the price applies at [now].")
@url_option
@json_option
def lookup(model: str, provider: str, batch: bool, service_tier: str, at: str | None, url: str, as_json: bool) -> None:
    """What MODEL costs per million tokens, as the collector prices it (catalog + overrides)."""
    params: dict[str, Any] = {"model": model, "provider": provider, "service_tier": service_tier}
    if batch:
        params["batch"] = "true"
    if at:
        params["at"] = at
    data = get(url, "/api/v1/prices", params)
    found = data["lookup"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found["priced"]:
        raise CollectorError(f"no price for {provider + '/' if provider else ''}{model}: it would be stored unpriced")
    table = Table(title=f"{found['provider'] or '?'} / {found['matched_model']} ({found['source']})")
    table.add_column("token class")
    table.add_column("USD per 1M tokens", justify="right")
    for name, value in found["usd_per_million_tokens"].items():
        table.add_row(name, value)
    if Decimal(found["per_request_usd"]):
        table.add_row("per request (USD)", found["per_request_usd"])
    if Decimal(found["per_hour_usd"]):
        table.add_row("per hour (USD)", found["per_hour_usd"])
    Console().print(table)
    for tier in found["long_context"]:
        click.echo(f"prompts over {tier['threshold']} tokens: the whole request at the tier rates")
    for note in found["notes"]:
        click.echo(f"note: {note}")


@prices.command()
@url_option
@json_option
def unpriced(url: str, as_json: bool) -> None:
    """Models seen without a price (stored with a NULL cost): add them to the overrides file."""
    data = get(url, "/api/v1/prices")
    rows = data["unpriced_models"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("every call seen so far had a price")
        return
    table = Table(title="models without a price")
    for column in ("provider", "model", "calls", "last seen"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["provider"], row["model"], str(row["calls"]), row["last_seen"])
    Console().print(table)


@prices.command()
@url_option
def reload(url: str) -> None:
    """Ask the collector to re-read its overrides file (admin key)."""
    data = request(url, "POST", "/api/v1/prices/reload")
    click.echo(f"prices reloaded from {data['overrides_file'] or 'the catalog only'}")
