"""The call filters shared by ``llmmeter calls`` and ``llmmeter export`` (the REST API's call parameters)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

DATE = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"])
NAMES = ("since", "until", "project", "feature", "provider", "model", "user", "status", "min_cost")


def call_filters(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --since/--until/--project/--feature/--provider/--model/--user/--status/--min-cost."""
    options = [
        click.option("--since", type=DATE, default=None, help="From this UTC date or date-time (inclusive)."),
        click.option("--until", type=DATE, default=None, help="Up to this UTC date or date-time (exclusive)."),
        click.option("--project", default=None, help="Only this project."),
        click.option("--feature", default=None, help="Only this feature."),
        click.option("--provider", default=None, help="Only this provider (openai, anthropic, gcp.gemini, ...)."),
        click.option("--model", default=None, help="Only this model."),
        click.option("--user", default=None, help="Only this end user."),
        click.option("--status", type=click.Choice(["ok", "error"]), default=None, help="Only ok or failed calls."),
        click.option("--min-cost", default=None, help="Only calls costing at least this many USD."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def query_params(values: dict[str, Any]) -> dict[str, str]:
    """The REST query parameters for the filter options given (naive dates are UTC)."""
    out = {}
    for name in NAMES:
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
        out[name] = str(value)
    return out
