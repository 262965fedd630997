"""Reconciliation: the ledger beside the provider's own usage and cost reports, per UTC day and model.

For each day and model, the provider's tokens and dollars (``provider_reports``) are set against the ledger's
(billable calls of that provider, from the hourly rollups). Model names are matched on their base name: a dated
snapshot (``gpt-4o-2024-08-06``, ``claude-sonnet-4-20250514``) and its alias (``gpt-4o``) are one model, since the
ledger stores what the response named and the reports may name either.

* Where the ledger holds fewer tokens (input + output) than the provider billed, the dollars it lacks are
  *uninstrumented* spend: calls made with no instrumentation, or whose spans never reached the collector.
  ``coverage`` is the share of the billed dollars that is not: 1 - uninstrumented / billed.
* Where the tokens agree (within 0.5 %), the ledger's dollars minus the provider's are a *price difference*: a
  price llmmeter has wrong (a missing discount, a changed price). A day and model with both a gap and a wrong
  price shows the gap only: the two cannot be told apart without the provider's per-call prices.
* Where the ledger holds more tokens than the bill (``more_than_billed``), calls were counted that the provider
  did not bill to this organisation (another key's organisation, a cloud deployment with the same model name).
* Costs no model explains (tools, storage) are listed apart and left out of both.

The answer's ``summary`` says it in a sentence: "92.4 % of OpenAI's billed spend is instrumented; the rest is
$312.00 of gpt-4o on 2026-11-12, ...". Each run also sets the collector's reconcile gauges (``coverage``,
``drift``) for the Prometheus alert. ``ReconcileScheduler`` runs it periodically for every provider with a key.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from psycopg_pool import ConnectionPool

from llmmeter_collector.insights import provider_reports as reports

logger = logging.getLogger("llmmeter.collector")

_ZERO = Decimal(0)
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
TOKENS_AGREE = Decimal("0.005")  # token totals within 0.5 % agree (a report rounds nothing, but spans can be lost)
PRICE_TOLERANCE = Decimal("0.01")  # a price difference within 1 % of the billed dollars is rounding
PRICE_FLOOR = Decimal("0.000001")  # and so is one under a millionth of a dollar
GAPS_NAMED = 3
MAX_DAYS = 366
_QUANTUM = Decimal("1e-10")


def base_model(name: str) -> str:
    """The model name without a date snapshot suffix or a ``models/`` prefix, lower-cased."""
    return _SNAPSHOT.sub("", name.strip().lower().removeprefix("models/"))


@dataclass
class _Side:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    usd: Decimal = _ZERO
    calls: int = 0
    unpriced_calls: int = 0
    names: set[str] = field(default_factory=set)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _ledger(pool: ConnectionPool, provider: str, start: date, end: date) -> dict[tuple[date, str], _Side]:
    sql = """SELECT date_trunc('day', bucket)::date, model, sum(input_tokens), sum(output_tokens),
                    sum(cache_read_tokens), sum(cost_usd), sum(calls), sum(unpriced_calls)
             FROM llm_rollup_hour WHERE provider = %s AND bucket >= %s AND bucket < %s GROUP BY 1, 2"""
    out: dict[tuple[date, str], _Side] = {}
    with pool.connection() as conn:
        for day, model, inp, outp, cached, usd, calls, unpriced in conn.execute(
            sql, (provider, _midnight(start), _midnight(end))
        ):
            side = out.setdefault((day, base_model(model)), _Side())
            side.input_tokens += int(inp)
            side.output_tokens += int(outp)
            side.cache_read_tokens += int(cached)
            side.usd += usd
            side.calls += int(calls)
            side.unpriced_calls += int(unpriced)
            side.names.add(model)
    return out


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def _money(value: Decimal) -> str:
    return format(value.quantize(_QUANTUM).normalize() if value else _ZERO, "f")


def _usd(value: Decimal) -> str:
    return f"${value:,.2f}"


def reconcile(
    pool: ConnectionPool,
    provider: str,
    start: date,
    end: date,
    group_by: str = "",
    *,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ledger against ``provider``'s reports for the UTC days ``start`` <= day < ``end``."""
    if provider not in reports.PROVIDERS:
        raise ValueError(f"provider: must be one of {', '.join(reports.PROVIDERS)}, got {provider!r}")
    if group_by not in reports.GROUPS:
        raise ValueError(f"group_by: must be project or api_key, got {group_by!r}")
    if end <= start:
        raise ValueError("to: must not be before from")
    if (end - start).days > MAX_DAYS:
        raise ValueError(f"to: at most {MAX_DAYS} days at once")
    usage, costs = reports.read(provider, start, end, group_by, env=env)
    billed: dict[tuple[date, str], _Side] = {}
    for u in usage:
        side = billed.setdefault((u.day, base_model(u.model)), _Side())
        side.input_tokens += u.input_tokens
        side.output_tokens += u.output_tokens
        side.cache_read_tokens += u.cache_read_tokens
        side.calls += u.requests or 0
        side.names.add(u.model)
    other: list[dict[str, Any]] = []
    for c in costs:
        if not c.model:
            other.append({"day": c.day.isoformat(), "item": c.item, "group": c.group, "usd": _money(c.usd)})
            continue
        side = billed.setdefault((c.day, base_model(c.model)), _Side())
        side.usd += c.usd
        side.names.add(c.model)
    ledger = _ledger(pool, provider, start, end)
    rows = [_row(day, model, billed.get((day, model), _Side()), ledger.get((day, model), _Side()))
            for day, model in sorted(set(billed) | set(ledger))]  # fmt: skip
    groups = _groups(usage, costs) if group_by else []
    return _summarise(provider, start, end, group_by, rows, groups, other)


def reconcile_focus(pool: ConnectionPool, start: date, end: date) -> dict[str, Any]:
    """The ledger against the cloud AI spend of the FOCUS imports (``api/focus.py``), per UTC day and service:
    dollars only (cloud FOCUS exports count tokens in units of their own). A service no ledger provider matches
    (``ledger_provider`` '') is all uninstrumented."""
    if end <= start:
        raise ValueError("to: must not be before from")
    billed: dict[tuple[date, str], _Side] = {}
    providers: dict[str, str] = {}
    with pool.connection() as conn:
        for day, service, provider, usd in conn.execute(
            "SELECT charge_start::date, service, ledger_provider, sum(billed_cost) FROM focus_costs"
            " WHERE charge_start >= %s AND charge_start < %s AND currency = 'USD' GROUP BY 1, 2, 3",
            (_midnight(start), _midnight(end)),
        ):
            side = billed.setdefault((day, service), _Side())
            side.usd += usd
            providers[service] = provider
        spent = {
            (day, provider): usd
            for day, provider, usd in conn.execute(
                "SELECT date_trunc('day', bucket)::date, provider, sum(cost_usd) FROM llm_rollup_hour"
                " WHERE bucket >= %s AND bucket < %s AND provider = ANY(%s) GROUP BY 1, 2",
                (_midnight(start), _midnight(end), [p for p in set(providers.values()) if p]),
            )
        }
    rows = []
    for (day, service), side in sorted(billed.items()):
        provider = providers[service]
        ledger = _Side(usd=spent.get((day, provider), _ZERO) if provider else _ZERO)
        ledger.names.add(provider)
        gap = max(_ZERO, side.usd - ledger.usd)
        findings = ["match"] if not gap else ["uninstrumented"]
        if ledger.usd > side.usd:
            findings = ["more_than_billed"]
        rows.append({
            "day": day.isoformat(), "model": service, "provider_models": [service], "ledger_models": [provider],
            "provider_input_tokens": 0, "provider_output_tokens": 0, "provider_cache_read_tokens": 0,
            "provider_usd": _money(side.usd), "ledger_input_tokens": 0, "ledger_output_tokens": 0,
            "ledger_cache_read_tokens": 0, "ledger_usd": _money(ledger.usd), "ledger_calls": 0,
            "ledger_unpriced_calls": 0, "difference_usd": _money(ledger.usd - side.usd),
            "coverage": format(min(Decimal(1), ledger.usd / side.usd).quantize(Decimal("0.0001")), "f")
            if side.usd else None,
            "uninstrumented_usd": _money(gap), "price_difference_usd": "0", "findings": findings,
            "_uninstrumented": gap, "_price": _ZERO,
        })  # fmt: skip
    return _summarise("focus", start, end, "", rows, [], [])


def _row(day: date, model: str, billed: _Side, ledger: _Side) -> dict[str, Any]:
    share = Decimal(ledger.tokens) / billed.tokens if billed.tokens else Decimal(1)
    uninstrumented = price = _ZERO
    findings = []
    if billed.tokens == 0 and billed.usd == 0:
        findings.append("not_in_report")  # e.g. calls billed to another organisation or through a cloud
    elif abs(Decimal(1) - share) <= TOKENS_AGREE:  # the same calls: a dollar difference is a price difference
        price = ledger.usd - billed.usd
        if abs(price) > max(PRICE_FLOOR, billed.usd * PRICE_TOLERANCE):
            findings.append("price")
    elif share < 1:  # calls the ledger lacks: the dollar difference is spend nothing instrumented
        uninstrumented = max(_ZERO, billed.usd - ledger.usd)
        findings.append("uninstrumented")
    else:
        findings.append("more_than_billed")  # the ledger holds more tokens than the bill: spans counted twice?
    if ledger.unpriced_calls:
        findings.append("unpriced")
    share = min(share, Decimal(1))
    return {
        "day": day.isoformat(),
        "model": model,
        "provider_models": sorted(billed.names),
        "ledger_models": sorted(ledger.names),
        "provider_input_tokens": billed.input_tokens,
        "provider_output_tokens": billed.output_tokens,
        "provider_cache_read_tokens": billed.cache_read_tokens,
        "provider_usd": _money(billed.usd),
        "ledger_input_tokens": ledger.input_tokens,
        "ledger_output_tokens": ledger.output_tokens,
        "ledger_cache_read_tokens": ledger.cache_read_tokens,
        "ledger_usd": _money(ledger.usd),
        "ledger_calls": ledger.calls,
        "ledger_unpriced_calls": ledger.unpriced_calls,
        "difference_usd": _money(ledger.usd - billed.usd),
        "coverage": format(share.quantize(Decimal("0.0001")), "f") if billed.tokens else None,
        "uninstrumented_usd": _money(uninstrumented),
        "price_difference_usd": _money(price),
        "findings": findings or ["match"],
        "_uninstrumented": uninstrumented,
        "_price": price,
    }


def _groups(usage: list[reports.UsageRow], costs: list[reports.CostRow]) -> list[dict[str, Any]]:
    """The provider's figures per day, model and group (its project, workspace or API key)."""
    out: dict[tuple[date, str, str], dict[str, Any]] = {}
    for u in usage:
        g = out.setdefault((u.day, base_model(u.model), u.group), {"input_tokens": 0, "output_tokens": 0, "usd": None})
        g["input_tokens"] += u.input_tokens
        g["output_tokens"] += u.output_tokens
    for c in costs:
        if c.model and c.group:
            g = out.setdefault(
                (c.day, base_model(c.model), c.group), {"input_tokens": 0, "output_tokens": 0, "usd": None}
            )
            g["usd"] = (g["usd"] or _ZERO) + c.usd
    return [
        {
            "day": d.isoformat(),
            "model": m,
            "group": grp,
            **{**v, "usd": _money(v["usd"]) if v["usd"] is not None else None},
        }
        for (d, m, grp), v in sorted(out.items())
    ]


def _summarise(
    provider: str,
    start: date,
    end: date,
    group_by: str,
    rows: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    other: list[dict[str, Any]],
) -> dict[str, Any]:
    billed = sum((Decimal(r["provider_usd"]) for r in rows), _ZERO)
    ledger = sum((Decimal(r["ledger_usd"]) for r in rows), _ZERO)
    gap = sum((r.pop("_uninstrumented") for r in rows), _ZERO)
    price = sum((r.pop("_price") for r in rows), _ZERO)
    coverage = (Decimal(1) - gap / billed) if billed else None
    name = reports.NAMES.get(provider, "the clouds' FOCUS imports")
    if billed:
        pct = f"{coverage * 100:.1f} %"  # type: ignore[operator]
        if provider in reports.NAMES:
            sentence = f"{pct} of {name}'s billed spend is instrumented"
        else:
            sentence = f"{pct} of the cloud AI spend in the FOCUS imports is instrumented"
        named = sorted((r for r in rows if Decimal(r["uninstrumented_usd"]) >= Decimal("0.005")),
                       key=lambda r: -Decimal(r["uninstrumented_usd"]))[:GAPS_NAMED]  # fmt: skip
        if named:
            parts = [f"{_usd(Decimal(r['uninstrumented_usd']))} of {r['model']} on {r['day']}" for r in named]
            more = sum(1 for r in rows if "uninstrumented" in r["findings"]) - len(named)
            sentence += "; the rest is " + ", ".join(parts) + (f" and {more} more day-model pairs" if more > 0 else "")
        priced = [r for r in rows if "price" in r["findings"]]
        if priced:
            worst = max(priced, key=lambda r: abs(Decimal(r["price_difference_usd"])))
            sentence += (
                f". llmmeter's prices differ from the bill by {_usd(price)} on the instrumented calls (the most on"
                f" {worst['model']} on {worst['day']}: {_usd(Decimal(worst['price_difference_usd']))} with the same"
                " tokens); check its price with `llmmeter prices lookup`, then `llmmeter prices reprice`"
            )
    else:
        sentence = (
            f"{name} billed nothing for these days"
            if provider in reports.NAMES
            else ("the FOCUS imports hold no AI spend for these days")
        )
    unpriced = sum(r["ledger_unpriced_calls"] for r in rows)
    if unpriced:
        sentence += f". {unpriced:,} ledger calls have no price (`llmmeter prices unpriced`)"
    return {
        "provider": provider,
        "from": start.isoformat(),
        "to": (end - timedelta(days=1)).isoformat(),
        "group_by": group_by or None,
        "provider_usd": _money(billed),
        "ledger_usd": _money(ledger),
        "difference_usd": _money(ledger - billed),
        "coverage": format(coverage.quantize(Decimal("0.0001")), "f") if coverage is not None else None,
        "uninstrumented_usd": _money(gap),
        "price_difference_usd": _money(price),
        "drift_ratio": format((abs(ledger - billed) / billed).quantize(Decimal("0.0001")), "f") if billed else None,
        "other_costs": other,
        "summary": sentence,
        "rows": rows,
        "groups": groups,
    }


def window(days: int, today: date | None = None) -> tuple[date, date]:
    """The last ``days`` complete UTC days: [start, end)."""
    end = today or datetime.now(timezone.utc).date()
    return end - timedelta(days=days), end


class ReconcileScheduler:
    """Reconciles every provider with an admin key every ``interval`` seconds over the last ``days`` complete days."""

    def __init__(
        self,
        pool: Callable[[], ConnectionPool],
        interval: float,
        days: int,
        on_result: Callable[[dict[str, Any]], None],
        on_error: Callable[[str, str], None],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._pool, self._interval, self._days = pool, interval, days
        self._on_result, self._on_error, self._env = on_result, on_error, env
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def run_once(self) -> None:
        start, end = window(self._days)
        for provider in reports.configured(self._env):
            try:
                result = reconcile(self._pool(), provider, start, end, env=self._env)
            except (reports.ReportError, ValueError) as exc:
                logger.warning("reconcile %s failed: %s", provider, exc)
                self._on_error(provider, str(exc))
                continue
            except Exception as exc:  # Postgres away: the next run tries again
                logger.warning("reconcile %s failed: %s", provider, str(exc).strip()[:200])
                self._on_error(provider, str(exc))
                continue
            logger.info("reconcile %s %s..%s: %s", provider, result["from"], result["to"], result["summary"])
            self._on_result(result)
        self.runs += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._interval)

    def start(self) -> None:
        if not reports.configured(self._env):
            logger.warning(
                "LLMMETER_RECONCILE_INTERVAL_SECONDS is set but no provider admin key is: nothing to reconcile"
            )
        self._thread = threading.Thread(target=self._loop, name="llmmeter-reconcile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
