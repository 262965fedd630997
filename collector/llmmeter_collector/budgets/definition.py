"""Budgets: what a budget is, how its definition is validated, and which time window it covers now.

A budget caps the spend of a scope (everything, or any combination of project, feature, provider, model,
user, environment and tags) over a period: ``daily``, ``weekly`` or ``monthly`` (reset day and time zone
configurable) or a ``fixed`` date range. Thresholds are ratios of the limit (default 0.8 and 1.0): the
first is the warning, the last is "exceeded".

Budgets come from a YAML file (``LLMMETER_BUDGETS_FILE``, read-only, wins on a name clash) and from the
REST API / CLI (stored in Postgres). The file looks like::

    budgets:
      - name: total
        limit: 500            # USD
        period: monthly
      - name: search-team
        limit: 200
        period: monthly
        scope: {feature: search, environment: production}
        thresholds: [0.5, 0.8, 1.0]
        reset_day: 15         # monthly: day of month 1..28; weekly: 1..7 or monday..sunday
        timezone: Europe/Berlin
      - name: launch-week
        limit: 1000
        period: fixed
        start: 2025-03-01     # dates, both inclusive, in the budget's time zone
        end: 2025-03-07
        scope: {tags: {campaign: launch}}

Spend is evaluated by ``budgets.status``; the REST routes are ``api/budgets.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from llmmeter_collector.control_chars import has_control_characters

PERIODS = ("daily", "weekly", "monthly", "fixed")
# scope key -> column of llm_calls (and of the rollups that have it)
SCOPE_COLUMNS: dict[str, str] = {
    "project": "project",
    "feature": "feature",
    "provider": "provider",
    "model": "model",
    "user": "user_id",
    "environment": "environment",
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_THRESHOLDS = (Decimal("0.8"), Decimal("1.0"))
RESERVED_NAMES = frozenset({"status", "reload"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_FIELDS = frozenset(
    {"name", "limit", "limit_usd", "period", "scope", "thresholds", "reset_day", "timezone", "start", "end"}
)
_IGNORED_FIELDS = frozenset({"source", "status"})  # present in API output, accepted back on input


class BudgetError(ValueError):
    """A budget definition is invalid; ``field`` names the offending field (``budgets[2].scope.feature``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BudgetFileError(BudgetError):
    """The budgets file cannot be read or is invalid; the message names the file and the field."""

    def __init__(self, path: str, field: str, message: str) -> None:
        ValueError.__init__(self, f"budgets file {path}: {field}: {message}" if field else f"{path}: {message}")
        self.field = field
        self.path = path


@dataclass(frozen=True)
class Scope:
    """Which calls count towards a budget. Every key present must match; several values of one key are OR."""

    project: tuple[str, ...] = ()
    feature: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def filters(self) -> dict[str, tuple[str, ...]]:
        """The non-empty dimension filters, by scope key (tags excluded)."""
        return {key: getattr(self, key) for key in SCOPE_COLUMNS if getattr(self, key)}

    def is_everything(self) -> bool:
        return not self.filters() and not self.tags

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v[0] if len(v) == 1 else list(v) for k, v in self.filters().items()}
        if self.tags:
            out["tags"] = dict(self.tags)
        return out

    def describe(self) -> str:
        """Short text for tables: ``feature=search, tag.team=growth`` or ``everything``."""
        parts = [f"{k}={'|'.join(v)}" for k, v in self.filters().items()]
        parts += [f"tag.{k}={v}" for k, v in self.tags]
        return ", ".join(parts) or "everything"


@dataclass(frozen=True)
class Budget:
    """One budget, validated. ``limit`` in USD (exact); thresholds are ratios of it, ascending."""

    name: str
    limit: Decimal
    period: str = "monthly"
    scope: Scope = field(default_factory=Scope)
    thresholds: tuple[Decimal, ...] = DEFAULT_THRESHOLDS
    reset_day: int = 1  # weekly: 1 = Monday .. 7 = Sunday; monthly: day of month 1..28
    timezone: str = "UTC"
    start: date | None = None  # fixed period: first day (inclusive)
    end: date | None = None  # fixed period: last day (inclusive)
    source: str = "api"  # "file" or "api"

    @property
    def warning(self) -> Decimal:
        return self.thresholds[0]

    @property
    def exceeded(self) -> Decimal:
        return self.thresholds[-1]

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The current period as UTC datetimes [start, end), computed in the budget's time zone."""
        first, last = self.local_days(now)
        return _utc_midnight(first, self.timezone), _utc_midnight(last, self.timezone)

    def local_days(self, now: datetime) -> tuple[date, date]:
        """The current period as local dates [first day, day after the last)."""
        today = now.astimezone(ZoneInfo(self.timezone)).date()
        if self.period == "daily":
            return today, today + timedelta(days=1)
        if self.period == "weekly":
            start = today - timedelta(days=(today.weekday() - (self.reset_day - 1)) % 7)
            return start, start + timedelta(days=7)
        if self.period == "monthly":
            start = today.replace(day=self.reset_day)
            if today.day < self.reset_day:
                start = _add_months(start, -1)
            return start, _add_months(start, 1)
        assert self.start is not None and self.end is not None
        return self.start, self.end + timedelta(days=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit_usd": format(self.limit, "f"),
            "period": self.period,
            "scope": self.scope.to_json(),
            "thresholds": [float(t) for t in self.thresholds],
            "reset_day": self.reset_day,
            "timezone": self.timezone,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "source": self.source,
        }


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


def _utc_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


# --- validation ------------------------------------------------------------------------------------------


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise BudgetError(where, "must not be an empty list")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int) or str(item) == "":
            raise BudgetError(where, f"must be a non-empty string or a list of them, got {item!r}")
        if has_control_characters(str(item)):  # NUL cannot be stored, and no scope value has a reason to hold one
            raise BudgetError(where, f"must not contain control characters, got {item!r}")
        out.append(str(item))
    return tuple(dict.fromkeys(out))


def parse_scope(value: Any, where: str = "scope") -> Scope:
    """A scope mapping: ``{feature: search, model: [gpt-4o, o3], tags: {team: growth}}`` (``tag.team`` too)."""
    if value is None:
        return Scope()
    if not isinstance(value, Mapping):
        raise BudgetError(where, f"must be a mapping of dimension to value, got {type(value).__name__}")
    dims: dict[str, tuple[str, ...]] = {}
    tags: dict[str, str] = {}
    for key, raw in value.items():
        key = str(key)
        if key in SCOPE_COLUMNS:
            dims[key] = _strings(raw, f"{where}.{key}")
        elif key == "user_id":
            dims["user"] = _strings(raw, f"{where}.{key}")
        elif key == "tags":
            if not isinstance(raw, Mapping) or not raw:
                raise BudgetError(f"{where}.tags", "must be a non-empty mapping of tag name to value")
            for tag, tag_value in raw.items():
                tags[str(tag)] = _strings(tag_value, f"{where}.tags.{tag}")[0]
        elif key.startswith("tag.") and len(key) > 4:
            tags[key[4:]] = _strings(raw, f"{where}.{key}")[0]
        else:
            allowed = ", ".join([*SCOPE_COLUMNS, "tags", "tag.<name>"])
            raise BudgetError(f"{where}.{key}", f"unknown scope dimension (allowed: {allowed})")
    return Scope(**dims, tags=tuple(sorted(tags.items())))


MAX_LIMIT_USD = Decimal("1000000000")  # one billion dollars a period: larger is a typo (1e400 would be +Inf)


def _money(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise BudgetError(where, f"must be an amount in USD, got {value!r}")
    try:
        amount = Decimal(str(value).strip().lstrip("$").replace(",", "") if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise BudgetError(where, f"must be an amount in USD, got {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise BudgetError(where, f"must be a positive amount in USD, got {value!r}")
    if amount > MAX_LIMIT_USD:
        raise BudgetError(where, f"must be at most {MAX_LIMIT_USD:,} USD a period, got {value!r}")
    return amount


def _ratio(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise BudgetError(where, f"must be a ratio (0.8) or a percentage ('80%'), got {value!r}")
    text = str(value).strip()
    try:
        ratio = Decimal(text[:-1]) / 100 if text.endswith("%") else Decimal(text)
    except InvalidOperation:
        raise BudgetError(where, f"must be a ratio (0.8) or a percentage ('80%'), got {value!r}") from None
    if not ratio.is_finite() or not 0 < ratio <= 10:
        raise BudgetError(where, f"must be above 0 and at most 10 (1000 %), got {value!r}")
    return ratio.normalize() if ratio != ratio.to_integral() else ratio.quantize(Decimal("0.1"))


def parse_thresholds(value: Any, where: str = "thresholds") -> tuple[Decimal, ...]:
    if value is None:
        return DEFAULT_THRESHOLDS
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise BudgetError(where, f"must be a non-empty list of ratios like [0.8, 1.0], got {value!r}")
    ratios = tuple(_ratio(v, f"{where}[{i}]") for i, v in enumerate(value))
    if list(ratios) != sorted(set(ratios)):
        raise BudgetError(where, "must be strictly ascending (first = warning, last = exceeded)")
    return ratios


def _date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise BudgetError(where, f"must be a date YYYY-MM-DD, got {value!r}") from None


def _reset_day(value: Any, period: str, where: str) -> int:
    if value is None:
        return 1
    if period in ("daily", "fixed"):
        raise BudgetError(where, f"applies only to weekly and monthly budgets, not {period}")
    if period == "weekly" and isinstance(value, str) and value.strip().lower() in WEEKDAYS:
        return WEEKDAYS.index(value.strip().lower()) + 1
    try:
        day = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        day = -1
    top = 7 if period == "weekly" else 28
    if not 1 <= day <= top:
        hint = "1..7 (1 = Monday) or a weekday name" if period == "weekly" else "a day of the month 1..28"
        raise BudgetError(where, f"must be {hint}, got {value!r}")
    return day


def _timezone(value: Any, where: str) -> str:
    if value is None:
        return "UTC"
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise BudgetError(where, f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from None
    return str(value)


def parse_budget(data: Any, *, source: str = "api", where: str = "") -> Budget:
    """Validate one budget definition (a mapping from YAML or JSON). Errors name the field."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, Mapping):
        raise BudgetError(where or "budget", f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - _FIELDS - _IGNORED_FIELDS)
    if unknown:
        raise BudgetError(prefix + unknown[0], f"unknown field (allowed: {', '.join(sorted(_FIELDS))})")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BudgetError(
            prefix + "name",
            f"must be 1-63 letters, digits, '_', '.', '-', starting alphanumeric, got {name!r}",
        )
    if name in RESERVED_NAMES:
        raise BudgetError(prefix + "name", f"{name!r} is reserved")
    if "limit" in data and "limit_usd" in data:
        raise BudgetError(prefix + "limit", "give either limit or limit_usd, not both")
    limit_key = "limit_usd" if "limit_usd" in data else "limit"
    if data.get(limit_key) is None:
        raise BudgetError(prefix + "limit", "is required (USD)")
    limit = _money(data[limit_key], prefix + limit_key)
    period = data.get("period", "monthly")
    if period not in PERIODS:
        raise BudgetError(prefix + "period", f"must be one of {', '.join(PERIODS)}, got {period!r}")
    start = end = None
    if period == "fixed":
        for key in ("start", "end"):
            if data.get(key) is None:
                raise BudgetError(prefix + key, "is required for a fixed period")
        start, end = _date(data["start"], prefix + "start"), _date(data["end"], prefix + "end")
        if end < start:
            raise BudgetError(prefix + "end", f"must not be before start ({start.isoformat()})")
    else:
        for key in ("start", "end"):
            if data.get(key) is not None:
                raise BudgetError(prefix + key, "applies only to period: fixed")
    return Budget(
        name=name,
        limit=limit,
        period=period,
        scope=parse_scope(data.get("scope"), prefix + "scope"),
        thresholds=parse_thresholds(data.get("thresholds"), prefix + "thresholds"),
        reset_day=_reset_day(data.get("reset_day"), period, prefix + "reset_day"),
        timezone=_timezone(data.get("timezone"), prefix + "timezone"),
        start=start,
        end=end,
        source=source,
    )


def parse_budgets(data: Any, where: str = "budgets") -> list[Budget]:
    """The ``budgets:`` list of a file: every entry valid and names unique."""
    if not isinstance(data, list):
        raise BudgetError(where, "must be a list of budgets")
    budgets: list[Budget] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        budget = parse_budget(entry, source="file", where=f"{where}[{i}]")
        if budget.name in seen:
            raise BudgetError(f"{where}[{i}].name", f"duplicate budget name {budget.name!r}")
        seen.add(budget.name)
        budgets.append(budget)
    return budgets


def load_file(path: str | Path) -> list[Budget]:
    """Read and validate a budgets YAML file; raises BudgetFileError naming the file and field."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BudgetFileError(path, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BudgetFileError(path, "", f"not valid YAML: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, Mapping) or set(doc) - {"budgets"}:
        raise BudgetFileError(path, "", "must be a mapping with one key, budgets: [...]")
    try:
        return parse_budgets(doc.get("budgets") or [])
    except BudgetError as exc:
        raise BudgetFileError(path, exc.field, str(exc).split(": ", 1)[1]) from None


def merge(file_budgets: Sequence[Budget], api_budgets: Sequence[Budget]) -> list[Budget]:
    """File budgets win over API budgets of the same name (the file is the operator's source of truth)."""
    names = {b.name for b in file_budgets}
    return sorted([*file_budgets, *(b for b in api_budgets if b.name not in names)], key=lambda b: b.name)
