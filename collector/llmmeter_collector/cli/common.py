"""What every CLI command shares: the collector client, exit codes, common options, money formatting."""

from __future__ import annotations

import difflib
from decimal import Decimal
from typing import Any

import click
import httpx

from llmmeter_collector.cli.config import DEFAULT_URL, load, resolved

# Exit codes of every ``llmmeter`` command (documented in docs/cli.md, "Exit codes").
EXIT_OK = 0
EXIT_COLLECTOR = 1  # the collector answered with an error, or could not be reached
EXIT_USAGE = 2  # wrong usage: a bad option, argument or amount
EXIT_MISSING_EXTRA = 3  # a needed extra is not installed (pip install 'llmmeter[cli]' / '[collector]')
EXIT_PORT_BUSY = 4  # `serve`: the HTTP or gRPC port is already taken
EXIT_DATABASE = 5  # Postgres cannot be reached or the database URL is wrong
EXIT_OUTPUT = 6  # a local file cannot be written (export -o)
EXIT_PYTHON = 7  # this Python is too old for the command (the collector needs 3.11+)


class CollectorError(click.ClickException):
    """The collector answered with an error or could not be reached (exit code 1)."""

    exit_code = EXIT_COLLECTOR


class DatabaseError(click.ClickException):
    """Postgres cannot be reached or the database URL is wrong (exit code 5)."""

    exit_code = EXIT_DATABASE


class OutputError(click.ClickException):
    """A local output file cannot be written (exit code 6)."""

    exit_code = EXIT_OUTPUT


def api_key() -> str | None:
    """The API key for this invocation: --api-key > LLMMETER_API_KEY > config file (see cli/config.py)."""
    ctx = click.get_current_context(silent=True)
    flag = ctx.meta.get(_KEY_META) if ctx is not None else None
    return resolved(key_flag=flag)["api_key"]


def auth_headers() -> dict[str, str]:
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def request(url: str, method: str, path: str, **kwargs: Any) -> Any:
    """Call the collector's REST API; errors become CollectorError with the collector's message."""
    headers = {**auth_headers(), **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, url.rstrip("/") + path, timeout=30, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise CollectorError(f"cannot reach the collector at {url}: {exc}") from None
    if response.status_code >= 400:
        raise CollectorError(error_message(url, response))
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise CollectorError(not_a_collector(url, response)) from None


def not_a_collector(url: str, response: httpx.Response) -> str:
    """One line for a server that answers, but not with llmmeter's JSON (never the page itself)."""
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
    return (
        f"{url} answered {response.status_code}{reason} with {kind}, not llmmeter's JSON API: "
        "is --url the collector's address (port 4318 by default)?"
    )


def error_message(url: str, response: httpx.Response) -> str:
    """The collector's own error message, or a one-line hint when the server is not a collector."""
    try:
        body = response.json()
    except ValueError:
        return not_a_collector(url, response)
    detail = body.get("error", response.text) if isinstance(body, dict) else response.text
    hint = ""
    if response.status_code in (401, 403):
        hint = " (pass --api-key, set LLMMETER_API_KEY or run `llmmeter init`)"
    return f"collector answered {response.status_code}: {detail}{hint}"


def get(url: str, path: str, params: dict[str, Any] | None = None) -> Any:
    return request(url, "GET", path, params=params)


def unknown_names(url: str, wanted: dict[str, str | None]) -> list[str]:
    """For each --project/--feature/--model value no recorded call has: a line naming it and close matches.

    Asks the collector's ``/api/v1/dimensions``; an older collector without it gives no hints (empty list).
    """
    asked = {k: v for k, v in wanted.items() if v}
    if not asked:
        return []
    try:
        known = request(url, "GET", "/api/v1/dimensions")
    except CollectorError:
        return []
    lines = []
    for name, value in asked.items():
        values = known.get(name + "s", []) if isinstance(known, dict) else []
        if value in values:
            continue
        close = difflib.get_close_matches(value, values, n=3, cutoff=0.6)
        tail = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(values[:10]) or 'none yet'}"
        lines.append(f"no {name} named {value!r} has any calls{tail}")
    return lines


def warn_unknown(url: str, wanted: dict[str, str | None]) -> bool:
    """Print ``unknown_names`` on stderr; True when any value is unknown."""
    lines = unknown_names(url, wanted)
    for line in lines:
        click.echo(f"llmmeter: {line}", err=True)
    return bool(lines)


def count(value: int) -> str:
    """A count with thousands separators: 1,234,567."""
    return f"{value:,}"


def usd(value: str | Decimal) -> str:
    """Dollars for display: cents for normal amounts, micro-dollars for tiny ones."""
    amount = Decimal(value)
    if amount == 0:
        return "$0.00"
    if abs(amount) < Decimal("0.01"):
        return f"${amount:.6f}"
    return f"${amount:,.2f}"


_KEY_META = "llmmeter.api_key"


def _default_url() -> str:
    return load().get("url") or DEFAULT_URL


def _remember_key(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[_KEY_META] = value


def url_option(f: Any) -> Any:
    """``--url`` (flag > LLMMETER_URL > config file > default) and ``--api-key`` (used by ``request``)."""
    f = click.option(
        "--api-key",
        envvar="LLMMETER_API_KEY",
        expose_value=False,
        callback=_remember_key,
        help="API key (or LLMMETER_API_KEY, or the config file).",
    )(f)
    return click.option(
        "--url", envvar="LLMMETER_URL", default=_default_url, show_default=DEFAULT_URL, help="Collector base URL."
    )(f)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


COLLECTOR_PYTHON = (3, 11)


class PythonTooOld(click.ClickException):
    """This Python is older than the collector needs (exit code 7)."""

    exit_code = EXIT_PYTHON


def require_collector_python(what: str, version: tuple[int, ...] | None = None) -> None:
    """One clear line (exit code 7) instead of an ImportError deep in the collector on Python < 3.11."""
    import sys

    have = version or tuple(sys.version_info[:3])
    if tuple(have[:2]) < COLLECTOR_PYTHON:
        need = ".".join(map(str, COLLECTOR_PYTHON))
        raise PythonTooOld(
            f"{what} needs Python {need} or newer; this is Python {'.'.join(map(str, have))} "
            f"({sys.executable}). The SDK (import llmmeter) and the other CLI commands work on 3.10."
        )
