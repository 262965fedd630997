"""What every CLI command shares: the collector client, common options, money formatting."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import click
import httpx

DEFAULT_URL = "http://localhost:4318"


class CollectorError(click.ClickException):
    """The collector answered with an error or could not be reached (exit code 1)."""

    exit_code = 1


def api_key() -> str | None:
    """The API key for this invocation: --api-key > LLMMETER_API_KEY > config file (see cli/config.py)."""
    from llmmeter_collector.cli.config import resolved

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
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        hint = ""
        if response.status_code in (401, 403):
            hint = " (pass --api-key, set LLMMETER_API_KEY or run `llmmeter init`)"
        raise CollectorError(f"collector answered {response.status_code}: {detail}{hint}")
    return response.json() if response.content else None


def get(url: str, path: str, params: dict[str, Any] | None = None) -> Any:
    return request(url, "GET", path, params=params)


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
    from llmmeter_collector.cli.config import load

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
