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


def request(url: str, method: str, path: str, **kwargs: Any) -> Any:
    """Call the collector's REST API; errors become CollectorError with the collector's message."""
    try:
        response = httpx.request(method, url.rstrip("/") + path, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        raise CollectorError(f"cannot reach the collector at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        raise CollectorError(f"collector answered {response.status_code}: {detail}")
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


url_option = click.option(
    "--url", envvar="LLMMETER_URL", default=DEFAULT_URL, show_default=True, help="Collector base URL."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
