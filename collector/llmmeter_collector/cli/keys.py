"""``llmmeter keys create|list|revoke``: API keys with roles (ingest, viewer, admin), limited to projects.

Keys are off until the first one exists; after that every export and API request needs one, so create an
admin key first (and save it: it is shown once).
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import get, json_option, request, url_option


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (admin)."""


@keys.command("create")
@url_option
@json_option
@click.argument("name")
@click.option("--role", type=click.Choice(["ingest", "viewer", "admin"]), required=True, help="What the key may do.")
@click.option("--project", "projects", multiple=True, help="Limit the key to this project (repeat for more).")
def create(url: str, as_json: bool, name: str, role: str, projects: tuple[str, ...]) -> None:
    """Create a key NAME; prints the key once (only its hash is stored)."""
    data = request(url, "POST", "/api/v1/keys", json={"name": name, "role": role, "projects": list(projects)})
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    scope = ", ".join(projects) or "every project"
    click.echo(f"Created {role} key {name!r} (id {data.get('id')}) for {scope}. It is shown only now:\n")
    click.echo(data["key"])


@keys.command("list")
@url_option
@json_option
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def list_keys(url: str, as_json: bool, include_revoked: bool) -> None:
    """List keys (never the keys themselves: their first characters only)."""
    data = get(url, "/api/v1/keys", {"include_revoked": str(include_revoked).lower()})
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title="API keys")
    for column in ("id", "name", "prefix", "role", "projects", "created", "revoked"):
        table.add_column(column)
    for k in data["keys"]:
        table.add_row(
            str(k["id"]),
            k["name"],
            k["prefix"] + "…",
            k["role"],
            ", ".join(k["projects"]) or "(all)",
            k["created_at"][:19].replace("T", " "),
            (k["revoked_at"] or "")[:19].replace("T", " "),
        )
    Console().print(table)


@keys.command("revoke")
@url_option
@json_option
@click.argument("key_id", type=click.IntRange(1))
def revoke(url: str, as_json: bool, key_id: int) -> None:
    """Revoke key KEY_ID (see `llmmeter keys list`); takes effect within the collector's key cache time."""
    data = request(url, "DELETE", f"/api/v1/keys/{key_id}")
    click.echo(json.dumps(data, indent=2) if as_json else f"Revoked key {key_id}.")
