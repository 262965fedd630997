"""The days (months) and projects a daily (monthly) rollup is read over: the prompt, experiment, signature rollups."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


def where(
    since: datetime | None,
    until: datetime | None,
    projects: Sequence[str] | None,
    project: str | None = None,
    *,
    counted: bool = True,
    unit: str = "day",
    **equal: str | None,
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause over ``bucket`` (the UTC day holding ``since``, up to ``until``), the key's projects, an
    asked-for project and columns equal to values (``None``: not filtered), and its parameters. ``counted``: only
    rows with calls (a rollup a displaced span emptied keeps a zero row until it is pruned)."""
    parts, params = ["calls > 0" if counted else "TRUE"], dict[str, Any]()
    if since is not None:
        parts.append(f"bucket >= date_trunc('{unit}', %(since)s::timestamptz)")  # the bucket holding since
        params["since"] = since
    if until is not None:
        parts.append("bucket < %(until)s")
        params["until"] = until
    if projects is not None:
        parts.append("project = ANY(%(projects)s)")
        params["projects"] = list(projects)
    for column, value in (("project", project), *equal.items()):
        if value is not None:
            parts.append(f"{column} = %({column})s")
            params[column] = value
    return " AND ".join(parts), params
