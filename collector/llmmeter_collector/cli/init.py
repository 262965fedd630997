"""``llmmeter init``: point the CLI at a collector, check it answers, and save the URL and key (mode 0600)."""

from __future__ import annotations

import json
import warnings
from getpass import GetPassWarning

import click
import httpx

from llmmeter_collector.cli.common import DEFAULT_URL, CollectorError, error_message, not_a_collector
from llmmeter_collector.cli.config import config_path, load, mask, save

APP_LINES = "import llmmeter\nllmmeter.instrument()"


def check_connection(url: str, key: str | None) -> dict[str, object]:
    """Health, then an authenticated read: proves the URL is a collector and the key (if any) is accepted."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    base = url.rstrip("/")
    try:
        health = httpx.get(base + "/healthz", timeout=10)
        if health.status_code != 200:
            raise CollectorError(not_a_collector(url, health))
        summary = httpx.get(base + "/api/v1/summary", params={"period": "today"}, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise CollectorError(f"cannot reach the collector at {url}: {exc}") from None
    if summary.status_code in (401, 403):
        reason = "needs an API key" if not key else "refused the API key"
        raise CollectorError(f"the collector {reason} ({summary.status_code}): create one with `llmmeter keys create`")
    if summary.status_code != 200:
        raise CollectorError(error_message(url, summary))
    try:
        data = summary.json()
    except ValueError:
        raise CollectorError(not_a_collector(url, summary)) from None
    return {"calls": data.get("calls", 0), "spend_today_usd": data.get("spend", {}).get("today")}


def _ask(text: str, flag: str, default: str, hide_input: bool = False) -> str:
    """Prompt for a value; with no terminal and no input, a usage error naming the flag (not "Aborted!")."""
    hint = f"{flag} (or LLMMETER_API_KEY; '' for no key)" if flag == "--api-key" else flag
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GetPassWarning)  # no terminal: the key is read from stdin instead
            value: str = click.prompt(text, default=default, show_default=not hide_input, hide_input=hide_input)
    except click.Abort:
        raise click.UsageError(f"no terminal to ask for the {text.split(' (')[0]}: give it with {hint}") from None
    return value


@click.command()
@click.option("--url", default=None, help=f"Collector URL (asked when missing) [{DEFAULT_URL}].")
@click.option(
    "--api-key",
    envvar="LLMMETER_API_KEY",
    default=None,
    help="API key or LLMMETER_API_KEY (asked if missing; '' none).",
)
@click.option("--no-check", is_flag=True, help="Save without checking the connection.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def init(url: str | None, api_key: str | None, no_check: bool, as_json: bool) -> None:
    """Ask for (or take) the collector URL and API key, check the connection, save them (0600)."""
    current = load()
    if url is None:
        url = _ask("Collector URL", "--url", default=current.get("url", DEFAULT_URL))
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"must start with http:// or https://, got {url!r}", param_hint="--url")
    if api_key is None:
        api_key = _ask("API key (empty if the collector has no keys)", "--api-key", default="", hide_input=True)
    api_key = api_key.strip() or None
    checked = None if no_check else check_connection(url, api_key)
    path = save({"url": url.rstrip("/"), **({"api_key": api_key} if api_key else {})})
    endpoint = url.rstrip("/")
    env = f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}"
    if api_key:
        env += f'  OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20{api_key}"'
    if as_json:
        out = {"config_file": str(path), "url": endpoint, "api_key": mask(api_key), "check": checked}
        click.echo(json.dumps({**out, "app_lines": APP_LINES.splitlines(), "app_env": env}, indent=2))
        return
    if checked is not None:
        click.echo(f"Connected to {endpoint}: {checked['calls']} calls recorded so far.")
    click.echo(f"Saved {config_path()} (mode 0600).")
    click.echo("\nAdd these two lines to your app, at start-up:\n")
    click.echo("    " + APP_LINES.replace("\n", "\n    "))
    click.echo(f"\nand run it with:  {env}")
    click.echo("Then `llmmeter status` shows the spend and `llmmeter optimize` what to change.")
