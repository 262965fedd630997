"""Expand a Grafana panel query the way Grafana does before it reaches Prometheus or Postgres.

Grafana cannot run in the tests, so they replay its query preparation and send the result to the real
Prometheus and Postgres. The supported subset (everything the llmmeter dashboards use, and no more):

* Time ranges: ``now``, ``now-<n><unit>``, ``now/<unit>`` (rounded down: d, w with weeks starting Monday,
  M, y) and a panel's relative time (``timeFrom``: ``now/d`` or ``30d`` meaning ``now-30d``); UTC, as the
  dashboards set ``timezone: utc``.
* Interval: ``(to - from) / max_data_points`` rounded with Grafana's ``roundInterval`` table, never below the
  datasource's minimum interval (its ``timeInterval``).
* Template variables: ``$var``, ``${var}``, ``${var:format}``, ``[[var]]``; "All" with a custom ``allValue``
  gives that value unformatted (as Grafana does); formats ``regex``, ``pipe``, ``csv``, ``singlequote``,
  ``doublequote``, ``sqlstring``, ``raw``/``text``; with no format, the Prometheus datasource's escaping
  (regex-escaped ``(a|b)`` for multi-value) or the SQL datasources' quoting (``'a','b'`` for multi-value,
  quote-doubled text for a single-value variable).
* Prometheus built-ins (seconds, as the Prometheus datasource writes them): ``$__interval``,
  ``$__interval_ms``, ``$__rate_interval`` = max(interval + scrape interval, 4 x scrape interval), ``$__range``,
  ``$__range_s``, ``$__range_ms``.
* Postgres macros exactly as ``pkg/tsdb/grafana-postgresql-datasource/macros.go`` writes them:
  ``$__time``, ``$__timeEpoch``, ``$__timeFilter`` (``col BETWEEN '<RFC3339Nano>' AND '<RFC3339Nano>'``),
  ``$__timeFrom()``, ``$__timeTo()``, ``$__timeGroup``/``$__timeGroupAlias`` (``floor(extract(epoch from
  col)/N)*N``, N formatted like Go's ``%v``), ``$__unixEpochFilter``, ``$__unixEpochFrom()``,
  ``$__unixEpochTo()``, ``$__unixEpochGroup``/``Alias``; ``$__interval`` and ``$__interval_ms`` first. An
  unknown macro is an error, as in Grafana. Fill modes of ``$__timeGroup`` are not supported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

ALL = "$__all"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}


class MacroError(ValueError):
    """A query uses a macro or variable Grafana would reject (or this expander does not support)."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def _round_down(moment: datetime, unit: str) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return day
    if unit == "w":
        return day - timedelta(days=day.weekday())
    if unit == "M":
        return day.replace(day=1)
    if unit == "y":
        return day.replace(month=1, day=1)
    if unit == "h":
        return moment.replace(minute=0, second=0, microsecond=0)
    if unit == "m":
        return moment.replace(second=0, microsecond=0)
    raise MacroError(f"unsupported rounding unit {unit!r}")


def _shift(moment: datetime, amount: int, unit: str) -> datetime:
    if unit == "M":
        month = moment.month - 1 + amount
        return moment.replace(year=moment.year + month // 12, month=month % 12 + 1)
    if unit == "y":
        return moment.replace(year=moment.year + amount)
    return moment + timedelta(seconds=amount * _UNITS[unit])


def parse_time(spec: str, now: datetime) -> datetime:
    """Grafana's relative time syntax: now, now-7d, now/d, now-1d/d."""
    match = re.fullmatch(r"now(?:([+-])(\d+)([smhdwMy]))?(?:/([smhdwMy]))?", spec)
    if not match:
        raise MacroError(f"unsupported time {spec!r}")
    sign, amount, unit, round_unit = match.groups()
    moment = now
    if amount:
        moment = _shift(moment, int(amount) * (-1 if sign == "-" else 1), unit)
    if round_unit:
        moment = _round_down(moment, round_unit)
    return moment


def panel_range(dashboard_from: str, now: datetime, time_from: str | None = None) -> TimeRange:
    """The range a panel queries: the dashboard's, or the panel's relative time override."""
    spec = dashboard_from
    if time_from:
        spec = time_from if time_from.startswith("now") else f"now-{time_from}"
    return TimeRange(parse_time(spec, now), now)


_ROUND_TABLE = [  # Grafana's rangeutil.roundInterval: (upper bound ms, rounded ms)
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
    (24300000, 21600000), (64800000, 43200000), (129600000, 86400000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
]  # fmt: skip


def interval_seconds(time_range: TimeRange, min_interval_s: float, max_data_points: int = 1000) -> float:
    """Grafana's $__interval for a panel ``max_data_points`` wide, in seconds."""
    raw_ms = time_range.seconds * 1000 / max_data_points
    rounded = next((r for bound, r in _ROUND_TABLE if raw_ms <= bound), 31536000000)
    return max(rounded / 1000, min_interval_s)


def format_duration(seconds: float) -> str:
    """Grafana's interval text (gtime.FormatInterval): the largest whole unit, e.g. 1d, 5m, 15s, 500ms."""
    ms = round(seconds * 1000)
    for unit, size in (("y", 31536000000), ("w", 604800000), ("d", 86400000), ("h", 3600000), ("m", 60000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def parse_duration(text: str) -> float:
    """gtime.ParseInterval for the units the dashboards use (ms, s, m, h, d, w, M, y)."""
    match = re.fullmatch(r"(\d+)(ms|[smhdwMy])", text.strip())
    if not match:
        raise MacroError(f"error parsing interval {text}")
    amount, unit = int(match.group(1)), match.group(2)
    return amount / 1000 if unit == "ms" else float(amount * _UNITS[unit])


# --- template variables ------------------------------------------------------------------------------------


@dataclass
class Variable:
    """A dashboard variable and what is selected: ``ALL`` or a list of values (a string for a text box)."""

    name: str
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    options: list[str] = field(default_factory=list)
    selected: Any = ALL

    @classmethod
    def from_dashboard(cls, definition: dict[str, Any]) -> Variable:
        var = cls(
            name=definition["name"],
            multi=bool(definition.get("multi")),
            include_all=bool(definition.get("includeAll")),
            all_value=definition.get("allValue") or None,
        )
        if definition.get("type") == "textbox":
            var.selected = definition.get("query", "")
        return var


def _regex_escape(value: str) -> str:  # kbn.regexEscape
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


def _prom_regular_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def _prom_special_regex_escape(value: str) -> str:  # the "classic behavior" of the Prometheus datasource
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"([$^*{}\[\]+?.()|])", r"\\\\\1", value)


def _format(var: Variable, values: list[str] | str, fmt: str | None, datasource: str) -> str:
    if fmt in ("raw", "text"):
        return values if isinstance(values, str) else ",".join(values)
    if fmt == "regex":
        if isinstance(values, str):
            return _regex_escape(values)
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "pipe":
        return values if isinstance(values, str) else "|".join(values)
    if fmt == "csv":
        return values if isinstance(values, str) else ",".join(values)
    if fmt in ("singlequote", "doublequote"):
        quote = "'" if fmt == "singlequote" else '"'
        items = [values] if isinstance(values, str) else values
        return ",".join(quote + v.replace(quote, "\\" + quote) + quote for v in items)
    if fmt == "sqlstring":
        items = [values] if isinstance(values, str) else values
        return ",".join("'" + v.replace("'", "''") + "'" for v in items)
    if fmt is not None:
        raise MacroError(f"unsupported variable format {fmt!r}")
    if datasource == "prometheus":
        if not var.multi and not var.include_all:
            return _prom_regular_escape(values if isinstance(values, str) else ",".join(values))
        if isinstance(values, str):
            return _prom_special_regex_escape(values)
        escaped = [_prom_special_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    # SQL datasources (SqlDatasource.interpolateVariable)
    if isinstance(values, str):
        if var.multi or var.include_all:
            return "'" + values.replace("'", "''") + "'"
        return values.replace("'", "''")
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


_VARIABLE_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")


def replace_variables(text: str, variables: dict[str, Variable], datasource: str, builtins: dict[str, str]) -> str:
    """templateSrv.replace: variables and built-ins; unknown ``$__name`` (SQL macros) are left alone."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if name in builtins:
            return builtins[name]
        if name.startswith("__"):
            return match.group(0)
        if name not in variables:
            raise MacroError(f"variable ${name} is not defined")
        var = variables[name]
        if var.selected == ALL or var.selected == [ALL]:
            if var.all_value and fmt not in ("text", "percentencode"):
                return var.all_value
            return _format(var, var.options, fmt, datasource)
        return _format(var, var.selected, fmt, datasource)

    return _VARIABLE_RE.sub(substitute, text)


# --- datasource-specific expansion -------------------------------------------------------------------------


def _go_float(value: float) -> str:
    """Go's %v of a float64 (shortest digits; exponent form from 1e+06 up or below 1e-04)."""
    if value == 0:
        return "0"
    digits = Decimal(repr(value)).normalize()
    exponent = digits.adjusted()
    if exponent < -4 or exponent >= 6:
        mantissa = digits.scaleb(-exponent).normalize()
        text = f"{mantissa:f}"
        return f"{text}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
    return f"{digits:f}"


def _rfc3339nano(moment: datetime) -> str:
    text = moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += ("." + f"{moment.microsecond:06d}").rstrip("0")
    return text + "Z"


_MACRO_RE = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def expand_sql(
    raw_sql: str,
    variables: dict[str, Variable],
    time_range: TimeRange,
    *,
    min_interval_s: float = 60,
    max_data_points: int = 1000,
) -> str:
    """A Postgres panel's rawSql as Grafana sends it to the database."""
    interval = interval_seconds(time_range, min_interval_s, max_data_points)
    builtins = {
        "__interval": format_duration(interval),
        "__interval_ms": str(round(interval * 1000)),
        "__from": str(int(time_range.start.timestamp() * 1000)),
        "__to": str(int(time_range.end.timestamp() * 1000)),
    }
    text = replace_variables(raw_sql, variables, "sql", builtins)
    text = text.replace("$__unixEpochFrom()", str(int(time_range.start.timestamp())))
    text = text.replace("$__unixEpochTo()", str(int(time_range.end.timestamp())))
    start, end = _rfc3339nano(time_range.start), _rfc3339nano(time_range.end)

    def group(args: list[str]) -> str:
        if len(args) < 2:
            raise MacroError("macro $__timeGroup needs time column and interval")
        if len(args) > 2:
            raise MacroError("fill modes of $__timeGroup are not supported by this expander")
        return _go_float(parse_duration(args[1].strip("'")))

    def macro(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")]
        col = args[0]
        if name == "__time":
            return f'{col} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {col}) as "time"'
        if name == "__timeFilter":
            return f"{col} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            seconds = group(args)
            expr = f"floor(extract(epoch from {col})/{seconds})*{seconds}"
            return expr + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            return f"{col} >= {int(time_range.start.timestamp())} AND {col} <= {int(time_range.end.timestamp())}"
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            seconds = group(args)
            expr = f"floor(({col})/{seconds})*{seconds}"
            return expr + (' AS "time"' if name == "__unixEpochGroupAlias" else "")
        raise MacroError(f"unknown macro {name!r}")

    def macro_with_compat(match: re.Match[str]) -> str:
        # Grafana: "$__timeGroup(...)," (a comma right after) means the pre-5.3 form that adds AS "time"
        if match.group(1) == "__timeGroup" and text[match.end() : match.end() + 1] == ",":
            return macro(re.match(_MACRO_RE, "$__timeGroupAlias(" + match.group(2) + ")"))  # type: ignore[arg-type]
        return macro(match)

    return _MACRO_RE.sub(macro_with_compat, text)


@dataclass(frozen=True)
class PromQuery:
    expr: str
    instant: bool
    start: float
    end: float
    step: float


def expand_promql(
    expr: str,
    variables: dict[str, Variable],
    time_range: TimeRange,
    *,
    instant: bool,
    scrape_interval_s: float,
    max_data_points: int = 1000,
) -> PromQuery:
    """A Prometheus panel's expression with variables substituted, and the query Grafana would send."""
    interval = interval_seconds(time_range, scrape_interval_s, max_data_points)
    range_s = round(time_range.seconds)
    step = interval
    builtins = {
        "__interval": f"{_go_float(interval)}s",
        "__interval_ms": str(round(interval * 1000)),
        "__rate_interval": f"{_go_float(max(interval + scrape_interval_s, 4 * scrape_interval_s))}s",
        "__range": f"{range_s}s",
        "__range_s": str(range_s),
        "__range_ms": str(range_s * 1000),
    }
    text = replace_variables(expr, variables, "prometheus", builtins)
    if "$" in text:
        raise MacroError(f"unexpanded $ left in {text!r}")
    start, end = time_range.start.timestamp(), time_range.end.timestamp()
    # the Prometheus datasource aligns the range to the step
    aligned_start = math.floor(start / step) * step
    aligned_end = math.floor(end / step) * step
    return PromQuery(text, instant, aligned_start, aligned_end if not instant else end, step)
