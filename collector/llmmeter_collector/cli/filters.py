"""The call filters shared by ``llmmeter calls`` and ``llmmeter export`` (the REST API's call parameters), and
the date type every command taking a date uses: ISO dates and times, or relative ones (``yesterday``, ``7d``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import click

NAMES = ("since", "until", "project", "feature", "provider", "model", "user", "status", "min_cost")
_RELATIVE = re.compile(r"^(\d+)\s*([wdhm])$")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}
DATE_HELP = "ISO date/time (UTC unless it has an offset), today, yesterday, now, or an age: 30m, 12h, 7d, 2w"


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """An aware UTC datetime for ``text``: ``today``/``yesterday`` (UTC midnight), ``now``, ``7d``, ISO 8601."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    word = text.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    named = {"now": now, "today": midnight, "yesterday": midnight - timedelta(days=1)}
    if word in named:
        return named[word]
    match = _RELATIVE.match(word)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected {DATE_HELP}; got {text!r}") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class When(click.ParamType):
    """A click type for ``parse_when``: a bad value is a usage error (exit code 2) naming the accepted forms."""

    name = "when"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


WHEN = When()


def call_filters(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --since/--until/--project/--feature/--provider/--model/--user/--status/--min-cost."""
    options = [
        click.option("--since", type=WHEN, default=None, help=f"From this time (inclusive): {DATE_HELP}."),
        click.option("--until", type=WHEN, default=None, help="Up to this time (exclusive), same forms as --since."),
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


def as_options(params: dict[str, str]) -> list[str]:
    """The command-line options that reproduce ``query_params`` (dates absolute, so the next page is stable)."""
    out = []
    for name in NAMES:
        if name in params:
            out += ["--" + name.replace("_", "-"), params[name]]
    return out
