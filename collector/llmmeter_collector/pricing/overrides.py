"""The price overrides file: custom, fine-tuned and self-hosted models, deployment names and negotiated discounts.

A YAML file (see ``prices.example.yaml``) prices custom, fine-tuned or self-hosted models, maps deployment
names to catalog models, and sets negotiated discounts, each with optional effective dates. Overrides win over
the catalog. The file is validated strictly; every problem names the file, line, and field path.
The file's JSON Schema (``prices.schema.json``) gives editors completion and checks; this module stays the
authority, with ``file:line: field: problem`` messages.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from llmmeter_collector.pricing.rates import (
    RATE_FIELDS,
    LongContextTier,
    Rates,
    normalize_model,
    to_ns,
    token_rates_from_mtok,
)

_ZERO = Decimal(0)


class PriceError(Exception):
    """A prices overrides file is invalid. ``problems`` lists each problem as ``file:line: path: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_MTOK_FIELDS = {
    "input_per_mtok": "input",
    "output_per_mtok": "output",
    "cache_read_per_mtok": "cache_read",
    "cache_write_per_mtok": "cache_write_5m",
    "cache_write_1h_per_mtok": "cache_write_1h",
    "input_audio_per_mtok": "input_audio",
    "output_audio_per_mtok": "output_audio",
}
_MODEL_KEYS = frozenset(
    {
        "model",
        "model_regex",
        "provider",
        "price_as",
        "price_as_provider",
        "per_request",
        "per_hour",
        "long_context",
        "effective_from",
        "effective_to",
        "note",
        *_MTOK_FIELDS,
    }
)
_LONG_CONTEXT_KEYS = frozenset({"threshold", *_MTOK_FIELDS})
_DISCOUNT_KEYS = frozenset({"provider", "model", "model_regex", "percent", "effective_from", "effective_to", "note"})
_TOP_KEYS = frozenset({"version", "models", "discounts"})
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ModelMatcher:
    """Which calls an override or discount applies to: a model name (exact, glob or regex) and providers."""

    kind: str  # "exact", "glob", "regex" or "any"
    pattern: str
    providers: frozenset[str]  # lower-cased GenAI names or catalog ids; empty = every provider
    regex: re.Pattern[str] | None = None

    def matches(self, provider: str, catalog_provider: str, model: str) -> bool:
        if self.providers and provider not in self.providers and catalog_provider not in self.providers:
            return False
        if self.kind == "exact":
            return model == self.pattern
        if self.kind == "glob":
            return fnmatch.fnmatchcase(model, self.pattern)
        if self.kind == "regex":
            assert self.regex is not None
            return self.regex.fullmatch(model) is not None
        return True

    @property
    def specificity(self) -> int:
        return (2 if self.kind != "any" else 0) + (1 if self.providers else 0)

    @property
    def identity(self) -> tuple[str, str, frozenset[str]]:
        return (self.kind, self.pattern, self.providers)


@dataclass(frozen=True)
class Window:
    """An effective period: from inclusive, to exclusive, as ns since the epoch (None = open)."""

    start_ns: int | None
    end_ns: int | None

    def contains(self, at_ns: int) -> bool:
        return (self.start_ns is None or at_ns >= self.start_ns) and (self.end_ns is None or at_ns < self.end_ns)

    def overlaps(self, other: Window) -> bool:
        never, forever = -(2**63), 2**63
        lo = max(never if self.start_ns is None else self.start_ns, never if other.start_ns is None else other.start_ns)
        hi = min(forever if self.end_ns is None else self.end_ns, forever if other.end_ns is None else other.end_ns)
        return lo < hi

    def instants(self) -> Iterable[int]:
        return (ns for ns in (self.start_ns, self.end_ns) if ns is not None)


@dataclass(frozen=True)
class ModelOverride:
    """One ``models:`` entry of an overrides file."""

    index: int
    where: str  # "file:line" for messages
    matcher: ModelMatcher
    window: Window
    rates: Rates | None  # None when the entry maps to a catalog model with price_as
    price_as: str = ""
    price_as_provider: str = ""


@dataclass(frozen=True)
class Discount:
    """One ``discounts:`` entry: a negotiated percentage off catalog or override prices."""

    index: int
    matcher: ModelMatcher
    window: Window
    percent: Decimal


@dataclass(frozen=True)
class Overrides:
    """A validated overrides file."""

    path: str
    models: tuple[ModelOverride, ...] = ()
    discounts: tuple[Discount, ...] = ()

    def instants(self) -> list[int]:
        """Every effective-date boundary, so the per-day cache can split a day where a price changes."""
        found: set[int] = set()
        for window in [m.window for m in self.models] + [d.window for d in self.discounts]:
            found.update(window.instants())
        return sorted(found)


class _Problems:
    """Collects validation problems with the file name and the YAML line of each field path."""

    def __init__(self, filename: str, lines: dict[str, int]) -> None:
        self.filename = filename
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = self._line(path)
        where = f"{self.filename}:{line}" if line else self.filename
        self.items.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")

    def _line(self, path: str) -> int | None:
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""


def _yaml_to_python(node: yaml.Node, path: str, lines: dict[str, int], problems: list[tuple[str, str]]) -> Any:
    """Build plain values from a YAML node tree, recording each path's line; numbers become int or Decimal."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
                problems.append((path, f"keys must be plain names, got {key!r}"))
                continue
            child = f"{path}.{key}" if path else key
            if key in result:
                lines[child] = key_node.start_mark.line + 1
                problems.append((child, "duplicate key"))
                continue
            result[key] = _yaml_to_python(value_node, child, lines, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_yaml_to_python(item, f"{path}[{i}]", lines, problems) for i, item in enumerate(node.value)]
    return _yaml_scalar(node)


def _yaml_scalar(node: yaml.Node) -> Any:
    """A scalar's value; floats are read from their source text into an exact Decimal."""
    if node.tag == "tag:yaml.org,2002:float":
        text = str(node.value).replace("_", "")
        try:
            value = Decimal(text)
        except InvalidOperation:
            return float("nan")
        return value if value.is_finite() else float("nan")
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _read_yaml(path: Path) -> tuple[Any, dict[str, int], list[str]]:
    """Parse a YAML file into plain values plus a path -> line map; problems are returned, not raised."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, {}, [f"{name}: cannot read: {exc.strerror or exc}"]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        return None, {}, [f"{name}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]
    if node is None:
        return {}, {}, []
    lines: dict[str, int] = {}
    structural: list[tuple[str, str]] = []
    data = _yaml_to_python(node, "", lines, structural)
    problems = _Problems(name, lines)
    for where, message in structural:
        problems.add(where, message)
    return data, lines, problems.items


def parse_overrides(path: Path) -> tuple[Overrides | None, list[str]]:
    """Read and validate an overrides file; returns the overrides (None if any problem) and the problems."""
    data, lines, early = _read_yaml(path)
    if data is None:
        return None, early
    problems = _Problems(str(path), lines)
    problems.items.extend(early)
    if not isinstance(data, dict):
        problems.add("", "the file must be a mapping with `models:` and/or `discounts:`")
        return None, problems.items
    _unknown_keys(data, _TOP_KEYS, "", problems)
    if "version" in data and data["version"] != 1:
        problems.add("version", f"only version 1 is supported, got {data['version']!r}")
    models = [
        entry
        for i, raw in enumerate(_list_field(data, "models", problems))
        if (entry := _parse_model(raw, i, f"models[{i}]", problems)) is not None
    ]
    discounts = [
        discount
        for i, raw in enumerate(_list_field(data, "discounts", problems))
        if (discount := _parse_discount(raw, i, f"discounts[{i}]", problems)) is not None
    ]
    _check_overlaps([(m.index, m.matcher, m.window) for m in models], "models", problems)
    _check_overlaps([(d.index, d.matcher, d.window) for d in discounts], "discounts", problems)
    if problems.items:
        return None, problems.items
    return Overrides(str(path), tuple(models), tuple(discounts)), []


def _list_field(data: dict[str, Any], key: str, problems: _Problems) -> list[Any]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(key, f"must be a list of entries, got {_type_name(value)}")
        return []
    return value


def _unknown_keys(entry: dict[str, Any], allowed: frozenset[str], path: str, problems: _Problems) -> None:
    for key in entry:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            problems.add(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _parse_model(raw: Any, index: int, path: str, problems: _Problems) -> ModelOverride | None:
    """Validate one ``models:`` entry."""
    if not isinstance(raw, dict):
        problems.add(path, f"must be a mapping, got {_type_name(raw)}")
        return None
    before = len(problems.items)
    _unknown_keys(raw, _MODEL_KEYS, path, problems)
    matcher = _parse_matcher(raw, path, problems, require_model=True)
    window = _parse_window(raw, path, problems)
    prices = {key: _money(raw, key, path, problems) for key in _MTOK_FIELDS if key in raw}
    per_request = _money(raw, "per_request", path, problems) if "per_request" in raw else None
    per_hour = _money(raw, "per_hour", path, problems) if "per_hour" in raw else None
    price_as = _text(raw, "price_as", path, problems)
    price_as_provider = _text(raw, "price_as_provider", path, problems)
    _text(raw, "note", path, problems)
    priced_here = bool(prices) or per_request is not None or per_hour is not None
    if price_as and (priced_here or "long_context" in raw):
        problems.add(f"{path}.price_as", "cannot be combined with prices of its own")
    elif price_as_provider and not price_as:
        problems.add(f"{path}.price_as_provider", "only makes sense with price_as")
    elif not price_as and not priced_here:
        problems.add(
            path, "needs a price: input_per_mtok + output_per_mtok, per_request, per_hour, or price_as a catalog model"
        )
    elif prices and ("input_per_mtok" not in prices or "output_per_mtok" not in prices):
        missing = "input_per_mtok" if "input_per_mtok" not in prices else "output_per_mtok"
        problems.add(f"{path}.{missing}", "required with per-token prices (write 0 if that class is free)")
    tiers = (
        _parse_long_context(raw.get("long_context"), f"{path}.long_context", problems) if "long_context" in raw else ()
    )
    if len(problems.items) > before or matcher is None or window is None:
        return None
    rates = None
    if not price_as:
        rates = _override_rates(prices, per_request, per_hour, tiers, matcher.pattern)
    where = f"{problems.filename}:{problems._line(path) or '?'}"
    return ModelOverride(index, where, matcher, window, rates, price_as.lower(), price_as_provider.lower())


def _parse_long_context(raw: Any, path: str, problems: _Problems) -> tuple[tuple[int, dict[str, Decimal]], ...]:
    """Validate a ``long_context:`` mapping (one tier) or list of them."""
    items = raw if isinstance(raw, list) else [raw]
    tiers: list[tuple[int, dict[str, Decimal]]] = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]" if isinstance(raw, list) else path
        if not isinstance(item, dict):
            problems.add(where, f"must be a mapping with threshold and *_per_mtok prices, got {_type_name(item)}")
            continue
        _unknown_keys(item, _LONG_CONTEXT_KEYS, where, problems)
        threshold = item.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
            problems.add(f"{where}.threshold", f"must be a positive whole number of tokens, got {threshold!r}")
            continue
        prices = {key: _money(item, key, where, problems) for key in _MTOK_FIELDS if key in item}
        if not prices:
            problems.add(where, "needs at least one *_per_mtok price")
        tiers.append((threshold, {k: v for k, v in prices.items() if v is not None}))
    return tuple(sorted(tiers, key=lambda t: t[0]))


def _parse_discount(raw: Any, index: int, path: str, problems: _Problems) -> Discount | None:
    """Validate one ``discounts:`` entry."""
    if not isinstance(raw, dict):
        problems.add(path, f"must be a mapping, got {_type_name(raw)}")
        return None
    before = len(problems.items)
    _unknown_keys(raw, _DISCOUNT_KEYS, path, problems)
    matcher = _parse_matcher(raw, path, problems, require_model=False)
    window = _parse_window(raw, path, problems)
    _text(raw, "note", path, problems)
    percent = _money(raw, "percent", path, problems) if "percent" in raw else None
    if "percent" not in raw:
        problems.add(f"{path}.percent", "required (the discount in percent, e.g. 15 for 15 %)")
    elif percent is not None and not (0 < percent <= 100):
        problems.add(f"{path}.percent", f"must be more than 0 and at most 100, got {percent}")
    if len(problems.items) > before or matcher is None or window is None or percent is None:
        return None
    return Discount(index, matcher, window, percent)


def _parse_matcher(raw: dict[str, Any], path: str, problems: _Problems, *, require_model: bool) -> ModelMatcher | None:
    """The model (exact / glob / regex) and provider scope of an entry."""
    providers = _parse_providers(raw, path, problems)
    has_model, has_regex = "model" in raw, "model_regex" in raw
    if has_model and has_regex:
        problems.add(f"{path}.model_regex", "give either model or model_regex, not both")
        return None
    if has_regex:
        pattern = raw["model_regex"]
        if not isinstance(pattern, str) or not pattern:
            problems.add(f"{path}.model_regex", f"must be a non-empty regular expression, got {pattern!r}")
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            problems.add(f"{path}.model_regex", f"bad regular expression: {exc}")
            return None
        return None if providers is None else ModelMatcher("regex", pattern, providers, compiled)
    if has_model:
        name = raw["model"]
        if not isinstance(name, str) or not name.strip():
            problems.add(f"{path}.model", f"must be a non-empty model name or glob, got {name!r}")
            return None
        name = normalize_model(name)
        kind = "glob" if _GLOB_CHARS & set(name) else "exact"
        return None if providers is None else ModelMatcher(kind, name, providers)
    if require_model:
        problems.add(path, "needs `model` (exact name or glob) or `model_regex`")
        return None
    return None if providers is None else ModelMatcher("any", "", providers)


def _parse_providers(raw: dict[str, Any], path: str, problems: _Problems) -> frozenset[str] | None:
    value = raw.get("provider")
    if value is None:
        return frozenset()
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        problems.add(f"{path}.provider", f"must be a provider name or a list of them, got {value!r}")
        return None
    return frozenset(item.strip().lower() for item in items)


def _parse_window(raw: dict[str, Any], path: str, problems: _Problems) -> Window | None:
    start = _instant(raw, "effective_from", path, problems)
    end = _instant(raw, "effective_to", path, problems)
    if start is False or end is False:
        return None
    assert not isinstance(start, bool) and not isinstance(end, bool)
    if start is not None and end is not None and start >= end:
        problems.add(f"{path}.effective_to", "must be after effective_from")
        return None
    return Window(start, end)


def _instant(raw: dict[str, Any], key: str, path: str, problems: _Problems) -> int | bool | None:
    """An effective date as ns since the epoch: a date means 00:00 UTC; a naive datetime is UTC. False = bad."""
    if key not in raw:
        return None
    value = raw[key]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not ISO: reported below as a bad date
            value = datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), UTC)
    else:
        problems.add(f"{path}.{key}", f"must be a date (2026-01-31) or an ISO datetime, got {value!r}")
        return False
    return to_ns(moment)


def _money(raw: dict[str, Any], key: str, path: str, problems: _Problems) -> Decimal | None:
    """A non-negative finite number, exactly as written in the file."""
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        problems.add(f"{path}.{key}", f"must be a number, got {_type_name(value)} {value!r}")
        return None
    if isinstance(value, float):  # only nan/inf reach here: finite floats were read as Decimal
        problems.add(f"{path}.{key}", "must be a finite number")
        return None
    number = Decimal(value)
    if number < 0:
        problems.add(f"{path}.{key}", f"must not be negative, got {number}")
        return None
    return number


def _text(raw: dict[str, Any], key: str, path: str, problems: _Problems) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        problems.add(f"{path}.{key}", f"must be text, got {_type_name(value)}")
        return ""
    return value.strip()


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _check_overlaps(entries: list[tuple[int, ModelMatcher, Window]], section: str, problems: _Problems) -> None:
    """Two entries for the same model and providers must not be effective at the same time."""
    for i, (index_a, matcher_a, window_a) in enumerate(entries):
        for index_b, matcher_b, window_b in entries[i + 1 :]:
            if matcher_a.identity == matcher_b.identity and window_a.overlaps(window_b):
                problems.add(
                    f"{section}[{index_b}].effective_from",
                    f"overlaps {section}[{index_a}] for the same model and provider; "
                    "give them effective_from / effective_to ranges that do not overlap",
                )


def _override_rates(
    prices: dict[str, Decimal | None],
    per_request: Decimal | None,
    per_hour: Decimal | None,
    tiers: tuple[tuple[int, dict[str, Decimal]], ...],
    pattern: str,
) -> Rates:
    """Rates of an override entry, with the same fall-back rules as catalog prices."""
    raw = {_MTOK_FIELDS[key]: value for key, value in prices.items() if value is not None}
    base = token_rates_from_mtok(raw)
    long_context: list[LongContextTier] = []
    merged = dict(raw)
    for threshold, tier_prices in tiers:
        merged = {**merged, **{_MTOK_FIELDS[key]: value for key, value in tier_prices.items()}}
        long_context.append(LongContextTier(threshold, token_rates_from_mtok(merged)))
    return Rates(
        **{name: getattr(base, name) for name in RATE_FIELDS},
        per_request=per_request or _ZERO,
        per_hour=per_hour or _ZERO,
        long_context=tuple(long_context),
        source="override",
        model=pattern,
        provider="override",
    )


def check_price_file(path: str | Path) -> list[str]:
    """Validate a prices overrides file; returns its problems (an empty list means valid).

    Used by ``llmmeter prices check FILE``. Each problem reads ``file:line: path.in.file: what is wrong``.
    """
    _, problems = parse_overrides(Path(path))
    return problems


# --------------------------------------------------------------------------------------------------------------
# JSON Schema of the file, for editors (completion, inline errors); built from the same key sets as the parser
# --------------------------------------------------------------------------------------------------------------

SCHEMA_FILE = Path(__file__).with_name("prices.schema.json")
_USD_PER_MTOK = "USD per 1M tokens"
_MTOK_DESCRIPTIONS = {
    "input_per_mtok": f"{_USD_PER_MTOK} of uncached input (required with per-token prices; 0 if free)",
    "output_per_mtok": f"{_USD_PER_MTOK} of output, reasoning included (required with per-token prices; 0 if free)",
    "cache_read_per_mtok": f"{_USD_PER_MTOK} read from the prompt cache (default: input_per_mtok)",
    "cache_write_per_mtok": f"{_USD_PER_MTOK} written to a 5-minute cache (default: input_per_mtok)",
    "cache_write_1h_per_mtok": f"{_USD_PER_MTOK} written to a 1-hour cache (default: cache_write_per_mtok)",
    "input_audio_per_mtok": f"{_USD_PER_MTOK} of audio input (default: input_per_mtok)",
    "output_audio_per_mtok": f"{_USD_PER_MTOK} of audio output (default: output_per_mtok)",
}
_MATCH_DESCRIPTIONS = {
    "model": "exact model name, or a glob with * ? [..] (case-insensitive, without a models/ prefix)",
    "model_regex": "a Python regular expression matching the whole lower-cased model name (not with model)",
    "provider": "a gen_ai.provider.name value or catalog provider id, or a list of them (default: every provider)",
    "effective_from": "date (2026-01-31 = 00:00 UTC) or ISO datetime, inclusive (default: always)",
    "effective_to": "date or ISO datetime, exclusive (default: always)",
    "note": "free text",
}


def json_schema() -> dict[str, Any]:
    """The overrides file as a JSON Schema (draft 2020-12). The parser stays the authority: the schema cannot say
    that two entries for one model overlap in time, or that a regular expression compiles."""
    number = {"type": "number", "minimum": 0}
    text = {"type": "string"}
    matching: dict[str, Any] = {
        "model": {"type": "string", "minLength": 1},
        "model_regex": {"type": "string", "minLength": 1},
        "provider": {"$ref": "#/$defs/provider"},
        "effective_from": {"$ref": "#/$defs/instant"},
        "effective_to": {"$ref": "#/$defs/instant"},
        "note": text,
    }
    for key, description in _MATCH_DESCRIPTIONS.items():
        matching[key] = {**matching[key], "description": description}
    prices = {key: {**number, "description": _MTOK_DESCRIPTIONS[key]} for key in _MTOK_FIELDS}
    model = {
        **{k: v for k, v in matching.items() if k in _MODEL_KEYS},
        **prices,
        "per_request": {**number, "description": "USD per call, on top of token prices"},
        "per_hour": {**number, "description": "USD per hour of call duration (self-hosted models)"},
        "long_context": {
            "description": "a tier (or a list): above `threshold` prompt tokens the whole request uses these prices",
            "oneOf": [
                {"$ref": "#/$defs/long_context_tier"},
                {"type": "array", "items": {"$ref": "#/$defs/long_context_tier"}},
            ],
        },
        "price_as": {"type": "string", "description": "price exactly like this catalog model (no prices of its own)"},
        "price_as_provider": {"type": "string", "description": "the catalog provider of price_as"},
    }
    tier = {"threshold": {"type": "integer", "minimum": 1, "description": "prompt tokens"}, **prices}
    discount = {
        **{k: v for k, v in matching.items() if k in _DISCOUNT_KEYS},
        "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "description": "e.g. 15 for 15 %"},
    }
    assert set(model) == _MODEL_KEYS and set(tier) == _LONG_CONTEXT_KEYS and set(discount) == _DISCOUNT_KEYS
    one_matcher = {"not": {"required": ["model", "model_regex"]}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "llmmeter price overrides",
        "description": "Checked strictly by the collector and `llmmeter prices check FILE` (file:line: field: what).",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": {"const": 1},
            "models": {"type": ["array", "null"], "items": {"$ref": "#/$defs/model"}},
            "discounts": {"type": ["array", "null"], "items": {"$ref": "#/$defs/discount"}},
        },
        "$defs": {
            "provider": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                ]
            },
            "instant": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}([T ]\S+)?$"},
            "model": {
                "type": "object",
                "additionalProperties": False,
                "properties": model,
                "anyOf": [{"required": ["model"]}, {"required": ["model_regex"]}],
                **one_matcher,
                "dependentRequired": {"price_as_provider": ["price_as"]},
            },
            "long_context_tier": {
                "type": "object",
                "additionalProperties": False,
                "properties": tier,
                "required": ["threshold"],
                "minProperties": 2,
            },
            "discount": {
                "type": "object",
                "additionalProperties": False,
                "properties": discount,
                "required": ["percent"],
                **one_matcher,
            },
        },
    }


def schema_text() -> str:
    """``json_schema()`` as the committed ``prices.schema.json`` holds it."""
    return json.dumps(json_schema(), indent=2) + "\n"
