"""llmmeter export stripe: bill your own customers for their AI usage through Stripe meters.

A YAML file maps projects, features and end users to Stripe customers and meters; usage per UTC day comes from the
collector (``GET /api/v1/usage``) and is sent as meter events with the official ``stripe`` library
(``pip install 'llmmeter[billing]'``). Each event's identifier is derived from the meter, the customer and the day,
and every event sent is written to a local log first checked on the next run, so a rerun never bills twice (Stripe
itself refuses a repeated identifier only within about 24 hours). Only complete UTC days, at most 35 days old (what
Stripe accepts), are sent; a day with unpriced calls is refused for a cost meter until they are priced.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import CollectorError, count, get, url_option

VALUES = ("cost_usd", "cost_cents", "tokens", "input_tokens", "output_tokens", "calls")
MATCH_KEYS = ("project", "feature", "user")
MAX_AGE_DAYS = 35  # Stripe refuses meter events older than 35 days


class MissingExtra(click.ClickException):
    exit_code = 3


class ConfigFileError(click.ClickException):
    exit_code = 2


@dataclass(frozen=True)
class Mapping:
    customer: str
    match: dict[str, str]  # project / feature / user -> value; every one given must match

    def matches(self, row: dict[str, Any]) -> bool:
        return all(row[key] == value for key, value in self.match.items())


@dataclass(frozen=True)
class Meter:
    event_name: str
    value: str
    customer_key: str
    value_key: str
    customers: tuple[Mapping, ...]


def load_config(path: Path) -> list[Meter]:
    """The meters of a mapping file; ConfigFileError naming the field of the first problem."""
    try:
        import yaml
    except ImportError:
        raise MissingExtra("llmmeter export stripe needs: pip install 'llmmeter[billing]'") from None
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigFileError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None

    def fail(where: str, what: str) -> ConfigFileError:
        return ConfigFileError(f"{path}: {where}: {what}")

    if not isinstance(data, dict) or data.get("version") != 1:
        raise fail("version", "must be 1")
    if set(data) - {"version", "meters"}:
        raise fail(sorted(set(data) - {"version", "meters"})[0], "unknown key")
    meters_in = data.get("meters")
    if not isinstance(meters_in, list) or not meters_in:
        raise fail("meters", "must be a non-empty list")
    meters = []
    for i, m in enumerate(meters_in):
        where = f"meters[{i}]"
        if not isinstance(m, dict):
            raise fail(where, "must be a mapping")
        unknown = set(m) - {"event_name", "value", "customer_key", "value_key", "customers"}
        if unknown:
            raise fail(f"{where}.{sorted(unknown)[0]}", "unknown key")
        event = m.get("event_name")
        if not isinstance(event, str) or not event or len(event) > 100:
            raise fail(f"{where}.event_name", "must be the Stripe meter's event name (1-100 characters)")
        value = m.get("value", "cost_usd")
        if value not in VALUES:
            raise fail(f"{where}.value", f"must be one of {', '.join(VALUES)}, got {value!r}")
        customers = m.get("customers")
        if not isinstance(customers, list) or not customers:
            raise fail(f"{where}.customers", "must be a non-empty list")
        mappings = []
        for j, c in enumerate(customers):
            cwhere = f"{where}.customers[{j}]"
            if not isinstance(c, dict):
                raise fail(cwhere, "must be a mapping")
            unknown = set(c) - {"customer", *MATCH_KEYS}
            if unknown:
                raise fail(f"{cwhere}.{sorted(unknown)[0]}", "unknown key (customer, project, feature, user)")
            customer = c.get("customer")
            if not isinstance(customer, str) or not customer.startswith("cus_"):
                raise fail(f"{cwhere}.customer", "must be a Stripe customer id (cus_...)")
            match = {k: str(c[k]) for k in MATCH_KEYS if k in c}
            if not match:
                raise fail(cwhere, "needs at least one of project, feature, user")
            mappings.append(Mapping(customer, match))
        meters.append(
            Meter(event, value, str(m.get("customer_key", "stripe_customer_id")), str(m.get("value_key", "value")),
                  tuple(mappings))
        )  # fmt: skip
    return meters


def _value(kind: str, rows: list[dict[str, Any]]) -> Decimal:
    if kind in ("cost_usd", "cost_cents"):
        usd = sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0))
        return usd if kind == "cost_usd" else (usd * 100).quantize(Decimal(1), ROUND_HALF_UP)
    if kind == "tokens":
        return Decimal(sum(r["input_tokens"] + r["output_tokens"] for r in rows))
    return Decimal(sum(r[kind] for r in rows))


@dataclass
class Event:
    meter: Meter
    customer: str
    day: date
    value: Decimal
    unpriced: int

    @property
    def identifier(self) -> str:
        digest = hashlib.sha256(f"{self.meter.event_name}|{self.customer}|{self.day}".encode()).hexdigest()
        return f"llmmeter_{self.day:%Y%m%d}_{digest[:40]}"

    @property
    def timestamp(self) -> int:
        return int(datetime.combine(self.day, time(12), tzinfo=timezone.utc).timestamp())


def events(meters: list[Meter], usage: list[dict[str, Any]]) -> Iterator[Event]:
    """One event per meter, customer and day with a value; each usage row counts for its first matching mapping."""
    for meter in meters:
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in usage:
            found = next((m for m in meter.customers if m.matches(row)), None)
            if found is not None:
                grouped.setdefault((found.customer, row["day"]), []).append(row)
        for (customer, day), rows in sorted(grouped.items()):
            value = _value(meter.value, rows)
            unpriced = sum(r["unpriced_calls"] for r in rows)
            if value or unpriced:
                yield Event(meter, customer, date.fromisoformat(day), value, unpriced)


def _days(period: str | None, start: str | None, end: str | None) -> tuple[date, date]:
    """[first, last] complete UTC days asked for."""
    try:
        if period:
            if start or end:
                raise click.BadParameter("give --period or --from/--to, not both", param_hint="--period")
            first = datetime.strptime(period, "%Y-%m").date()
            last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        elif start and end:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        else:
            raise click.BadParameter("give --period YYYY-MM, or --from DAY --to DAY", param_hint="--period")
    except ValueError as exc:
        raise click.BadParameter(f"not a month (2026-11) or a day (2026-11-03): {exc}", param_hint="--period") from None
    today = datetime.now(timezone.utc).date()
    last = min(last, today - timedelta(days=1))  # today is not over: its usage would change after it is billed
    if last < first:
        raise click.BadParameter("no complete UTC day in that period yet", param_hint="--period")
    if first < today - timedelta(days=MAX_AGE_DAYS):
        raise click.BadParameter(
            f"{first} is more than {MAX_AGE_DAYS} days ago: Stripe refuses meter events that old", param_hint="--period"
        )
    return first, last


def _sent_log(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            out[entry["identifier"]] = entry["value"]
    return out


def _default_state() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("llmmeter")) / "stripe-sent.jsonl"


@click.command("stripe")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="YAML mapping of projects / features / users to Stripe customers and meters.")  # fmt: skip
@click.option("--period", help="A month: 2026-11 (its complete UTC days).")
@click.option("--from", "start", help="First UTC day.")
@click.option("--to", "end", help="Last UTC day (included).")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Log of the events sent (default: the user data directory's stripe-sent.jsonl).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Show the events; send nothing.")
@url_option
def stripe_export(
    config_path: Path, period: str | None, start: str | None, end: str | None, state: Path | None, dry_run: bool,
    url: str,
) -> None:  # fmt: skip
    """Send each mapped customer's daily usage to Stripe as meter events (STRIPE_API_KEY); reruns send nothing twice."""
    if not config_path.is_file():
        raise click.BadParameter(f"no such file {str(config_path)!r}", param_hint="--config")
    meters = load_config(config_path)
    first, last = _days(period, start, end)
    usage = get(url, "/api/v1/usage", {"since": first.isoformat(), "until": (last + timedelta(days=1)).isoformat()})
    found = list(events(meters, usage["usage"]))
    blocked = [e for e in found if e.unpriced and e.meter.value.startswith("cost")]
    if blocked:
        worst = ", ".join(f"{e.customer} on {e.day} ({e.unpriced} calls)" for e in blocked[:3])
        raise CollectorError(
            f"calls without a price would be billed as $0: {worst}. Price their model (llmmeter prices unpriced),"
            " reprice the days (llmmeter prices reprice), then export again; nothing was sent"
        )
    state = state or _default_state()
    sent = _sent_log(state)
    table = Table(title=f"Stripe meter events {first} to {last}" + (" (dry run)" if dry_run else ""))
    for column in ("day", "meter", "customer", "value", ""):
        table.add_column(column)
    todo = []
    for e in found:
        note = ""
        if e.identifier in sent:
            note = "already sent" if sent[e.identifier] == str(e.value) else f"already sent as {sent[e.identifier]}"
        else:
            todo.append(e)
        table.add_row(str(e.day), e.meter.event_name, e.customer, str(e.value), note)
    console = Console()
    console.print(table)
    changed = [e for e in found if e.identifier in sent and sent[e.identifier] != str(e.value)]
    for e in changed:
        click.echo(
            f"warning: {e.customer} {e.day} {e.meter.event_name} changed since it was sent ({sent[e.identifier]} ->"
            f" {e.value}); Stripe meter events are append-only: correct it in Stripe",
            err=True,
        )
    if dry_run or not todo:
        click.echo(f"{count(len(todo))} events to send" + (" (dry run: nothing sent)" if dry_run else ""))
        return
    _send(todo, state)
    click.echo(f"sent {count(len(todo))} meter events; {count(len(found) - len(todo))} were already sent")


def _send(todo: list[Event], state: Path) -> None:
    try:
        import stripe
    except ImportError:
        raise MissingExtra("llmmeter export stripe needs: pip install 'llmmeter[billing]'") from None
    key = os.environ.get("STRIPE_API_KEY")
    if not key:
        raise click.UsageError("set STRIPE_API_KEY (a secret or restricted key with meter event write access)")
    base = os.environ.get("LLMMETER_STRIPE_API_BASE")  # tests: a local fake of the endpoint
    client = stripe.StripeClient(key, base_addresses={"api": base} if base else None, max_network_retries=3)
    state.parent.mkdir(parents=True, exist_ok=True)
    with state.open("a") as log:
        for e in todo:
            params: Any = {
                "event_name": e.meter.event_name,
                "identifier": e.identifier,
                "timestamp": e.timestamp,
                "payload": {e.meter.customer_key: e.customer, e.meter.value_key: str(e.value)},
            }
            try:
                client.v1.billing.meter_events.create(params=params, options={"idempotency_key": e.identifier})
            except stripe.StripeError as exc:
                message = str(getattr(exc, "user_message", None) or exc)
                if "already exists" not in message:
                    raise CollectorError(f"Stripe refused the event of {e.customer} on {e.day}: {message}") from None
            log.write(json.dumps({"identifier": e.identifier, "value": str(e.value), "customer": e.customer,
                                  "day": str(e.day), "event_name": e.meter.event_name}) + "\n")  # fmt: skip
            log.flush()
