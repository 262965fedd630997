"""Prices GenAI calls in exact USD: the bundled genai-prices catalog, built-in corrections and YAML overrides.

How a call is priced
--------------------
``PriceCatalog.price(call)`` resolves ``(provider, model, batch, service tier, UTC day)`` to a ``Rates`` once
(genai-prices' own ``calc_price`` is far too slow to run per call), caches it, and then prices the call with a
handful of ``Decimal`` multiplications. Each token class is priced exactly once:

* ``input``        = input_tokens - cache_read - cache_write - input_audio (uncached text/image input)
* ``cache_read``   = cache_read_tokens at the cache-read rate
* ``cache_write``  = (cache_write - cache_write_1h) at the 5-minute write rate + cache_write_1h at the 1-hour rate
* ``output``       = output_tokens - output_audio (reasoning tokens are billed as output by every provider)
* ``input_audio`` / ``output_audio`` at the audio rates
* ``request``      = the per-request price, plus ``per_hour`` x call duration for self-hosted overrides

A class the catalog does not price falls back to its parent rate, as genai-prices does: cache read and cache
write fall back to the input rate, a missing 1-hour write rate to the 5-minute one, audio to the text rate.
``Cost.parts`` holds only the non-zero classes; ``Cost.total`` is their exact sum. A call whose usage does not
add up (say cache_read > input_tokens) is priced for what it reports, the negative class counts as zero,
and a warning is logged once per (provider, model).

Long-context tiers
------------------
genai-prices' ``TieredPrices`` is a cliff: when the *total* prompt (``input_tokens``, cached tokens included)
is strictly greater than a tier's ``start``, every token of the request, in every class that has a tier price,
is billed at the tier rate. That is how Google (Gemini 2.5 Pro "prompts > 200k tokens") and Anthropic
(Sonnet 4 / 4.5 "input > 200K tokens") define it, so tiers are taken from the catalog as they are. Classes that
fall back to a parent rate follow the parent's tier.

Batch and service tiers
-----------------------
genai-prices models both as price variants selected by a price context: ``{"processing": "batch"}`` and
``{"service_tier": "flex" | "priority" | "fast" | "default"}``. They are used first. The catalog dates most
variants from the day its maintainers verified them (e.g. 2026-10-14 for batch), not from the day the provider
introduced them, so for an earlier call the earliest variant is used as long as the model's standard price has
not changed in between. When no variant applies, llmmeter's own rules do:

* batch, provider openai / azure / anthropic: 50 % of every token class (Anthropic: caching multipliers stack
  with the batch discount, so cache reads and writes are halved too).
* batch, provider google: 50 % of every token class except context-cache reads on Gemini models, which Google
  bills at the standard rate in batch (Claude on Vertex is halved throughout).
* batch elsewhere: standard price (only catalog variants apply; Mistral, Groq and xAI have some).
* service tier ``flex`` on openai / azure: 50 % (OpenAI bills Flex at Batch rates).
* service tier ``priority`` with no catalog variant: standard price, with a warning logged once.
* ``default``, ``auto``, ``scale``, ``""`` and anything else: standard price.

These rules also apply to override prices (a fine-tuned OpenAI model run through the Batch API is half price).

Provider names
--------------
``LlmCall.provider`` carries the GenAI ``gen_ai.provider.name`` value. It is mapped to a genai-prices provider
id (``_PROVIDER_IDS``; e.g. ``azure.ai.openai`` -> ``azure``, which falls back to OpenAI's models,
``gcp.gemini`` and ``gcp.vertex_ai`` -> ``google``). Any other value is looked up with genai-prices' own
provider matching; an empty provider is guessed from the model name; an unknown provider is unpriced.
Model names are lower-cased and lose any ``.../models/`` prefix (Gemini, Vertex resource names); dated
snapshots match through the catalog's own match rules. An unknown model is unpriced (``None``), never zero.
Known limits: the catalog has one ``google`` provider for the Gemini API and Vertex AI, so a model whose Vertex
list price differs from the Gemini API's is priced at the catalog's (Gemini API) price; a catalog entry priced
only in units llmmeter does not see (characters, audio seconds, image counts) is unpriced; cached audio input
tokens are counted once as cache reads and once as audio input (the usage record cannot tell them apart).

The catalog is genai-prices' bundled snapshot only: llmmeter builds its own ``DataSnapshot`` from
``genai_prices.data`` and never calls ``UpdatePrices`` or the process-wide snapshot, so nothing is ever fetched.

Overrides
---------
A YAML file (see ``prices.example.yaml``) prices custom, fine-tuned or self-hosted models, maps deployment
names to catalog models, and sets negotiated discounts, each with optional effective dates. Overrides win over
the catalog. The file is validated strictly; every problem names the file, line, and field path.
"""

from __future__ import annotations

import bisect
import contextlib
import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from llmmeter_collector.llmcall import Cost, LlmCall

__all__ = [
    "CATALOG_CORRECTIONS",
    "LongContextTier",
    "PriceCatalog",
    "PriceError",
    "Rates",
    "TokenRates",
    "check_price_file",
]

logger = logging.getLogger(__name__)

_NS_PER_DAY = 86_400 * 1_000_000_000
_NS_PER_HOUR = Decimal(3_600 * 1_000_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)
_HALF = Decimal("0.5")
# Time-based (per_hour) costs are a division, so they are rounded here: 1e-15 USD, far below any real price.
_TIME_COST_QUANTUM = Decimal("1e-15")
# A cache entry per (provider, model, batch, tier, day): bounded so hostile model names cannot grow it forever.
_MAX_CACHE_ENTRIES = 50_000

# GenAI `gen_ai.provider.name` (and older `gen_ai.system`) values -> genai-prices provider ids.
_PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure": "azure",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "google": "google",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "mistral_ai": "mistral",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "together_ai": "together",
    "together": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
}

# Batch is half price at these providers (catalog provider ids) when the catalog has no batch variant.
_BATCH_HALF_PRICE = frozenset({"openai", "azure", "anthropic", "google"})
# Flex is billed at Batch rates at these providers when the catalog has no flex variant.
_FLEX_HALF_PRICE = frozenset({"openai", "azure"})

# Catalog price keys llmmeter understands; a model priced by none of the token keys is unpriced.
_TOKEN_PRICE_KEYS = (
    "input_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_5m_mtok",
    "cache_write_1h_mtok",
    "output_mtok",
    "input_audio_mtok",
    "output_audio_mtok",
)
_RATE_FIELDS = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "input_audio", "output_audio")

PriceValue: TypeAlias = Any  # Decimal | genai_prices.types.TieredPrices
PriceDict: TypeAlias = dict[str, PriceValue]


class PriceError(Exception):
    """A prices overrides file is invalid. ``problems`` lists each problem as ``file:line: path: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class TokenRates:
    """USD per token for each token class (already divided by one million)."""

    input: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal
    input_audio: Decimal
    output_audio: Decimal

    def scaled(self, factors: Mapping[str, Decimal]) -> TokenRates:
        """These rates with some classes multiplied (a discount, a batch rule)."""
        return replace(self, **{name: getattr(self, name) * f for name, f in factors.items()})


@dataclass(frozen=True, slots=True)
class LongContextTier:
    """Rates for the whole request once the prompt (total input tokens) is strictly above ``threshold``."""

    threshold: int
    rates: TokenRates


@dataclass(frozen=True, slots=True)
class Rates:
    """Everything needed to price a call of one model at one time, resolved once and cached.

    Token rates are USD per token. ``per_request`` is USD per call; ``per_hour`` USD per hour of call duration
    (self-hosted overrides). ``long_context`` tiers are sorted by threshold. ``source`` is ``"catalog"`` or
    ``"override"``; ``model`` the catalog model id or override pattern matched; ``notes`` say which rules,
    variants, corrections and discounts shaped these rates.
    """

    input: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal
    input_audio: Decimal
    output_audio: Decimal
    per_request: Decimal = _ZERO
    per_hour: Decimal = _ZERO
    long_context: tuple[LongContextTier, ...] = ()
    source: str = "catalog"
    model: str = ""
    provider: str = ""
    notes: tuple[str, ...] = ()

    @property
    def base(self) -> TokenRates:
        """The token rates below every long-context threshold."""
        return TokenRates(**{name: getattr(self, name) for name in _RATE_FIELDS})

    def for_prompt(self, prompt_tokens: int) -> TokenRates | Rates:
        """The token rates that apply to a request with this many prompt tokens."""
        chosen: TokenRates | Rates = self
        for tier in self.long_context:
            if prompt_tokens > tier.threshold:
                chosen = tier.rates
        return chosen

    def scaled(self, factors: Mapping[str, Decimal], note: str, *, money: Decimal | None = None) -> Rates:
        """These rates with token classes multiplied by ``factors`` (and per-call money by ``money``)."""
        changes: dict[str, Any] = {name: getattr(self, name) * f for name, f in factors.items()}
        if money is not None:
            changes["per_request"] = self.per_request * money
            changes["per_hour"] = self.per_hour * money
        tiers = tuple(LongContextTier(t.threshold, t.rates.scaled(factors)) for t in self.long_context)
        return replace(self, **changes, long_context=tiers, notes=(*self.notes, note))


# --------------------------------------------------------------------------------------------------------------
# Built-in corrections to the bundled catalog
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Correction:
    """A fix to one catalog model's prices, applied after date constraints and variants are resolved."""

    provider: str  # the catalog provider that owns the model entry
    model_id: str  # the catalog model id
    why: str  # what is wrong in the catalog, and the published source of the fix
    apply: Callable[[PriceDict, str, datetime], PriceDict]  # (prices, requested model name, call time)


def _add_long_context_tier(threshold: int, multipliers: Mapping[str, Decimal]) -> Callable[..., PriceDict]:
    """A correction adding a cliff tier at ``threshold``: each listed class costs base x multiplier above it."""
    from genai_prices.types import Tier, TieredPrices

    def apply(prices: PriceDict, _name: str, _at: datetime) -> PriceDict:
        fixed = dict(prices)
        for key, factor in multipliers.items():
            value = prices.get(key)
            if isinstance(value, Decimal):
                fixed[key] = TieredPrices(base=value, tiers=[Tier(start=threshold, price=value * factor)])
        return fixed

    return apply


def _set_prices(
    prices_for: Callable[[str], Mapping[str, Decimal]],
) -> Callable[[PriceDict, str, datetime], PriceDict]:
    """A correction setting some price keys, chosen by the requested model name."""

    def apply(prices: PriceDict, name: str, _at: datetime) -> PriceDict:
        return {**prices, **prices_for(name)}

    return apply


def _replace_from(periods: list[tuple[datetime, Mapping[str, Decimal]]]) -> Callable[..., PriceDict]:
    """A correction replacing the whole price from each start instant on (the last started period wins)."""

    def apply(prices: PriceDict, _name: str, at: datetime) -> PriceDict:
        chosen: PriceDict = prices
        for start, replacement in periods:
            if at >= start:
                chosen = dict(replacement)
        return chosen

    return apply


def _d(value: str) -> Decimal:
    return Decimal(value)


_SONNET_4_LONG_CONTEXT = _add_long_context_tier(
    200_000,
    {
        "input_mtok": _d("2"),
        "cache_read_mtok": _d("2"),
        "cache_write_mtok": _d("2"),
        "cache_write_1h_mtok": _d("2"),
        "output_mtok": _d("1.5"),
    },
)
_SONNET_4_WHY = (
    "Claude Sonnet 4 with the 1M-token context: prompts over 200K input tokens bill the whole request at "
    "$6 input / $22.50 output (cache writes $7.50 5m / $12 1h, cache reads $0.60) per MTok; the catalog "
    "has only the base rates. Source: https://docs.anthropic.com/en/docs/about-claude/pricing#long-context-pricing"
)


def _gpt_4o_audio_prices(name: str) -> Mapping[str, Decimal]:
    if name.startswith("gpt-4o-audio-preview-2024-10-01"):
        return {"input_audio_mtok": _d("100"), "output_audio_mtok": _d("200")}
    return {"input_audio_mtok": _d("40"), "output_audio_mtok": _d("80")}


_DEEPSEEK_V3_PERIODS: list[tuple[datetime, Mapping[str, Decimal]]] = [
    # DeepSeek-V3.1 pricing from 2025-09-05 16:00 UTC: one price for chat and reasoner, off-peak discounts ended.
    (
        datetime(2025, 9, 5, 16, tzinfo=UTC),
        {"input_mtok": _d("0.56"), "cache_read_mtok": _d("0.07"), "output_mtok": _d("1.68")},
    ),
    # DeepSeek-V3.2-Exp price cut, 2025-09-29 (applied from the start of that UTC day).
    (
        datetime(2025, 9, 29, tzinfo=UTC),
        {"input_mtok": _d("0.28"), "cache_read_mtok": _d("0.028"), "output_mtok": _d("0.42")},
    ),
]
_DEEPSEEK_WHY = (
    "deepseek-chat / deepseek-reasoner keep the 2025 V3/R1 prices and off-peak windows forever in the catalog; "
    "DeepSeek moved both to $0.56 in / $0.07 cache hit / $1.68 out on 2025-09-05 16:00 UTC (no off-peak) and to "
    "$0.28 / $0.028 / $0.42 on 2025-09-29. Source: https://api-docs.deepseek.com/quick_start/pricing and "
    "https://api-docs.deepseek.com/news/news250929"
)

CATALOG_CORRECTIONS: tuple[_Correction, ...] = (
    _Correction("anthropic", "claude-sonnet-4-0", _SONNET_4_WHY, _SONNET_4_LONG_CONTEXT),
    _Correction("google", "claude-4-sonnet", _SONNET_4_WHY + " (same on Vertex AI)", _SONNET_4_LONG_CONTEXT),
    _Correction(
        "aws", "regional.anthropic.claude-sonnet-4-20250514-v1:0", _SONNET_4_WHY + " (Bedrock)", _SONNET_4_LONG_CONTEXT
    ),
    _Correction(
        "aws", "global.anthropic.claude-sonnet-4-20250514-v1:0", _SONNET_4_WHY + " (Bedrock)", _SONNET_4_LONG_CONTEXT
    ),
    _Correction(
        "openai",
        "gpt-4o-audio-preview",
        "The catalog prices gpt-4o-audio-preview audio tokens as text. OpenAI: audio $40 in / $80 out per MTok "
        "($100 / $200 for the 2024-10-01 snapshot). Source: https://platform.openai.com/docs/pricing (Audio tokens)",
        _set_prices(_gpt_4o_audio_prices),
    ),
    _Correction(
        "openai",
        "gpt-4o-mini-audio-preview",
        "The catalog prices gpt-4o-mini-audio-preview audio tokens as text. OpenAI: audio $10 in / $20 out per "
        "MTok. Source: https://platform.openai.com/docs/pricing (Audio tokens)",
        _set_prices(lambda _name: {"input_audio_mtok": _d("10"), "output_audio_mtok": _d("20")}),
    ),
    _Correction("deepseek", "deepseek-chat", _DEEPSEEK_WHY, _replace_from(_DEEPSEEK_V3_PERIODS)),
    _Correction("deepseek", "deepseek-reasoner", _DEEPSEEK_WHY, _replace_from(_DEEPSEEK_V3_PERIODS)),
)
# Instants inside a day at which a correction changes the price (the per-day cache splits the day there).
_CORRECTION_INSTANTS: tuple[datetime, ...] = tuple(start for start, _ in _DEEPSEEK_V3_PERIODS)


# --------------------------------------------------------------------------------------------------------------
# Overrides file: parsing with line numbers, strict validation
# --------------------------------------------------------------------------------------------------------------

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
class _ModelMatcher:
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
class _Window:
    """An effective period: from inclusive, to exclusive, as ns since the epoch (None = open)."""

    start_ns: int | None
    end_ns: int | None

    def contains(self, at_ns: int) -> bool:
        return (self.start_ns is None or at_ns >= self.start_ns) and (self.end_ns is None or at_ns < self.end_ns)

    def overlaps(self, other: _Window) -> bool:
        never, forever = -(2**63), 2**63
        lo = max(never if self.start_ns is None else self.start_ns, never if other.start_ns is None else other.start_ns)
        hi = min(forever if self.end_ns is None else self.end_ns, forever if other.end_ns is None else other.end_ns)
        return lo < hi

    def instants(self) -> Iterable[int]:
        return (ns for ns in (self.start_ns, self.end_ns) if ns is not None)


@dataclass(frozen=True)
class _ModelOverride:
    """One ``models:`` entry of an overrides file."""

    index: int
    where: str  # "file:line" for messages
    matcher: _ModelMatcher
    window: _Window
    rates: Rates | None  # None when the entry maps to a catalog model with price_as
    price_as: str = ""
    price_as_provider: str = ""


@dataclass(frozen=True)
class _Discount:
    """One ``discounts:`` entry: a negotiated percentage off catalog or override prices."""

    index: int
    matcher: _ModelMatcher
    window: _Window
    percent: Decimal


@dataclass(frozen=True)
class _Overrides:
    """A validated overrides file."""

    path: str
    models: tuple[_ModelOverride, ...] = ()
    discounts: tuple[_Discount, ...] = ()

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


def _parse_overrides(path: Path) -> tuple[_Overrides | None, list[str]]:
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
    return _Overrides(str(path), tuple(models), tuple(discounts)), []


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


def _parse_model(raw: Any, index: int, path: str, problems: _Problems) -> _ModelOverride | None:
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
    return _ModelOverride(index, where, matcher, window, rates, price_as.lower(), price_as_provider.lower())


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


def _parse_discount(raw: Any, index: int, path: str, problems: _Problems) -> _Discount | None:
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
    return _Discount(index, matcher, window, percent)


def _parse_matcher(raw: dict[str, Any], path: str, problems: _Problems, *, require_model: bool) -> _ModelMatcher | None:
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
        return None if providers is None else _ModelMatcher("regex", pattern, providers, compiled)
    if has_model:
        name = raw["model"]
        if not isinstance(name, str) or not name.strip():
            problems.add(f"{path}.model", f"must be a non-empty model name or glob, got {name!r}")
            return None
        name = _normalize_model(name)
        kind = "glob" if _GLOB_CHARS & set(name) else "exact"
        return None if providers is None else _ModelMatcher(kind, name, providers)
    if require_model:
        problems.add(path, "needs `model` (exact name or glob) or `model_regex`")
        return None
    return None if providers is None else _ModelMatcher("any", "", providers)


def _parse_providers(raw: dict[str, Any], path: str, problems: _Problems) -> frozenset[str] | None:
    value = raw.get("provider")
    if value is None:
        return frozenset()
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        problems.add(f"{path}.provider", f"must be a provider name or a list of them, got {value!r}")
        return None
    return frozenset(item.strip().lower() for item in items)


def _parse_window(raw: dict[str, Any], path: str, problems: _Problems) -> _Window | None:
    start = _instant(raw, "effective_from", path, problems)
    end = _instant(raw, "effective_to", path, problems)
    if start is False or end is False:
        return None
    assert not isinstance(start, bool) and not isinstance(end, bool)
    if start is not None and end is not None and start >= end:
        problems.add(f"{path}.effective_to", "must be after effective_from")
        return None
    return _Window(start, end)


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
    return _to_ns(moment)


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


def _check_overlaps(entries: list[tuple[int, _ModelMatcher, _Window]], section: str, problems: _Problems) -> None:
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
    base = _token_rates_from_mtok(raw)
    long_context: list[LongContextTier] = []
    merged = dict(raw)
    for threshold, tier_prices in tiers:
        merged = {**merged, **{_MTOK_FIELDS[key]: value for key, value in tier_prices.items()}}
        long_context.append(LongContextTier(threshold, _token_rates_from_mtok(merged)))
    return Rates(
        **{name: getattr(base, name) for name in _RATE_FIELDS},
        per_request=per_request or _ZERO,
        per_hour=per_hour or _ZERO,
        long_context=tuple(long_context),
        source="override",
        model=pattern,
        provider="override",
    )


def _token_rates_from_mtok(per_mtok: Mapping[str, Decimal]) -> TokenRates:
    """Per-token rates from per-MTok prices keyed by class name, filling missing classes from their parent."""
    input_rate = per_mtok.get("input", _ZERO)
    output_rate = per_mtok.get("output", _ZERO)
    write_5m = per_mtok.get("cache_write_5m", input_rate)
    return TokenRates(
        input=input_rate.scaleb(-6),
        cache_read=per_mtok.get("cache_read", input_rate).scaleb(-6),
        cache_write_5m=write_5m.scaleb(-6),
        cache_write_1h=per_mtok.get("cache_write_1h", write_5m).scaleb(-6),
        output=output_rate.scaleb(-6),
        input_audio=per_mtok.get("input_audio", input_rate).scaleb(-6),
        output_audio=per_mtok.get("output_audio", output_rate).scaleb(-6),
    )


def check_price_file(path: str | Path) -> list[str]:
    """Validate a prices overrides file; returns its problems (an empty list means valid).

    Used by ``llmmeter prices check FILE``. Each problem reads ``file:line: path.in.file: what is wrong``.
    """
    _, problems = _parse_overrides(Path(path))
    return problems


# --------------------------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------------------------


def _to_ns(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def _normalize_model(name: str) -> str:
    """Lower-case, without a ``models/`` or Vertex ``publishers/.../models/`` resource prefix."""
    name = name.strip().lower()
    cut = name.rfind("models/")
    return name[cut + len("models/") :] if cut >= 0 else name


@dataclass(slots=True)
class _Schedule:
    """Rates that change inside one UTC day (off-peak windows, a price change at a given hour)."""

    offsets: list[int]  # ns since the day's start at which each segment begins; offsets[0] == 0
    rates: list[Rates | None]

    def at(self, start_ns: int) -> Rates | None:
        return self.rates[bisect.bisect_right(self.offsets, start_ns % _NS_PER_DAY) - 1]


_CacheKey: TypeAlias = tuple[str, str, bool, str, int]
_MISSING: Any = object()


@dataclass
class _State:
    """What a reload replaces at once: the overrides and the cache built from them."""

    overrides: _Overrides | None
    instants: list[int]
    cache: dict[_CacheKey, Rates | _Schedule | None] = field(default_factory=dict)


class PriceCatalog:
    """Prices ``LlmCall``s from the bundled genai-prices catalog and an optional YAML overrides file.

    ``price()`` is safe to call from several threads; ``reload()`` swaps the overrides atomically.
    """

    def __init__(self, overrides: str | Path | None = None, *, use_catalog: bool = True) -> None:
        self._overrides_path = Path(overrides) if overrides is not None else None
        self._use_catalog = use_catalog
        self._snapshot: Any = None
        self._owners: dict[int, str] = {}
        self._warned: set[tuple[str, ...]] = set()
        self._version: str | None = None
        self._state = self._load_state()
        if use_catalog:
            self._snapshot = _bundled_snapshot()
            self._owners = {
                id(model): provider.id for provider in self._snapshot.providers for model in provider.models
            }

    # ---- public API ------------------------------------------------------------------------------------------

    def price(self, call: LlmCall) -> Cost | None:
        """The exact USD cost of one call, or None when its model has no known price (never a silent zero)."""
        state = self._state
        start_ns = call.start_ns
        key = (call.provider, call.model, call.batch, call.service_tier, start_ns // _NS_PER_DAY)
        try:
            entry = state.cache[key]
        except KeyError:
            entry = self._resolve_day(state, key)
        if entry is None:
            return None
        rates = entry.at(start_ns) if isinstance(entry, _Schedule) else entry
        if rates is None:
            return None
        return self._cost(rates, call)

    def rates(
        self, provider: str, model: str, at: datetime, *, batch: bool = False, service_tier: str = ""
    ) -> Rates | None:
        """The rates for a call to ``model`` at ``provider`` at time ``at`` (naive = UTC); None if unpriced."""
        state = self._state
        start_ns = _to_ns(at)
        key = (provider, model, batch, service_tier, start_ns // _NS_PER_DAY)
        entry = state.cache.get(key, _MISSING)
        if entry is _MISSING:
            entry = self._resolve_day(state, key)
        return entry.at(start_ns) if isinstance(entry, _Schedule) else entry

    def reload(self) -> None:
        """Re-read the overrides file. On error raise PriceError and keep pricing with the previous good set."""
        self._state = self._load_state()

    @property
    def catalog_version(self) -> str:
        """The bundled catalog in use, e.g. ``genai-prices 0.2.3 (snapshot 2026-11-03)``."""
        if self._version is None:
            self._version = _catalog_version() if self._use_catalog else "none (overrides only)"
        return self._version

    @property
    def overrides_path(self) -> Path | None:
        return self._overrides_path

    # ---- loading ---------------------------------------------------------------------------------------------

    def _load_state(self) -> _State:
        if self._overrides_path is None:
            return _State(None, [])
        overrides, problems = _parse_overrides(self._overrides_path)
        if overrides is None:
            raise PriceError(problems)
        return _State(overrides, overrides.instants())

    # ---- resolution (cache misses) ---------------------------------------------------------------------------

    def _resolve_day(self, state: _State, key: _CacheKey) -> Rates | _Schedule | None:
        """Resolve the rates of one (provider, model, batch, tier, UTC day), splitting the day where they change."""
        provider, model, batch, tier, day = key
        day_start = day * _NS_PER_DAY
        offsets = [0, *self._changes_within_day(state, provider, model, day_start)]
        segments = [self._resolve_at(state, provider, model, batch, tier, day_start + off) for off in offsets]
        kept_offsets, kept = [offsets[0]], [segments[0]]
        for offset, rates in zip(offsets[1:], segments[1:], strict=True):
            if rates != kept[-1]:
                kept_offsets.append(offset)
                kept.append(rates)
        entry: Rates | _Schedule | None = kept[0] if len(kept) == 1 else _Schedule(kept_offsets, kept)
        if len(state.cache) >= _MAX_CACHE_ENTRIES:
            state.cache.clear()
        state.cache[key] = entry
        return entry

    def _changes_within_day(self, state: _State, provider: str, model: str, day_start: int) -> list[int]:
        """Offsets (ns after midnight UTC) at which a price may change during this day."""
        day_end = day_start + _NS_PER_DAY
        found = {ns - day_start for ns in state.instants if day_start < ns < day_end}
        found.update(ns - day_start for ns in map(_to_ns, _CORRECTION_INSTANTS) if day_start < ns < day_end)
        found.update(self._time_of_day_boundaries(provider, model))
        found.discard(0)
        return sorted(found)

    def _time_of_day_boundaries(self, provider: str, model: str) -> set[int]:
        """Offsets of the catalog's time-of-day price windows (e.g. DeepSeek off-peak) for this model."""
        from genai_prices.types import TimeOfDateConstraint

        found = self._catalog_model(provider, model)
        if found is None or not isinstance(found[1].prices, list):
            return set()
        offsets: set[int] = set()
        for conditional in found[1].prices:
            constraint = conditional.constraint
            if isinstance(constraint, TimeOfDateConstraint):
                for moment in (constraint.start_time, constraint.end_time):
                    utc = datetime.combine(date(2000, 1, 1), moment, moment.tzinfo or UTC).astimezone(UTC)
                    offsets.add(((utc.hour * 60 + utc.minute) * 60 + utc.second) * 1_000_000_000)
        return offsets

    def _resolve_at(self, state: _State, provider: str, model: str, batch: bool, tier: str, at_ns: int) -> Rates | None:
        """The rates at one instant: an override if one matches, else the catalog; then discounts."""
        name = _normalize_model(model)
        provider_name = provider.strip().lower()
        catalog_provider = _PROVIDER_IDS.get(provider_name, provider_name)
        tier = tier.strip().lower()
        rates: Rates | None = None
        override = self._matching_override(state, provider_name, catalog_provider, name, at_ns)
        if override is not None and override.rates is not None:
            rates = self._apply_mode_rules(override.rates, catalog_provider, name, batch, tier)
        elif override is not None:
            target_provider = override.price_as_provider or provider_name
            rates = self._catalog_rates(target_provider, override.price_as, batch, tier, at_ns)
            if rates is not None:
                rates = replace(
                    rates,
                    source="override",
                    notes=(*rates.notes, f"{override.where}: priced as {rates.provider}/{rates.model}"),
                )
        elif self._use_catalog:
            rates = self._catalog_rates(provider_name, model, batch, tier, at_ns)
        if rates is None:
            return None
        return self._apply_discount(state, rates, provider_name, catalog_provider, name, at_ns)

    def _matching_override(
        self, state: _State, provider: str, catalog_provider: str, name: str, at_ns: int
    ) -> _ModelOverride | None:
        """The override for this call: exact names beat globs and regexes; then the first in the file."""
        if state.overrides is None:
            return None
        candidates = [
            entry
            for entry in state.overrides.models
            if entry.window.contains(at_ns) and entry.matcher.matches(provider, catalog_provider, name)
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda e: (e.matcher.kind != "exact", not e.matcher.providers, e.index))

    def _apply_discount(
        self, state: _State, rates: Rates, provider: str, catalog_provider: str, name: str, at_ns: int
    ) -> Rates:
        """Apply the most specific negotiated discount in effect (model+provider > model > provider > all)."""
        if state.overrides is None:
            return rates
        candidates = [
            d
            for d in state.overrides.discounts
            if d.window.contains(at_ns) and d.matcher.matches(provider, catalog_provider, name)
        ]
        if not candidates:
            return rates
        chosen = min(candidates, key=lambda d: (-d.matcher.specificity, d.index))
        factor = (100 - chosen.percent) / 100
        factors = dict.fromkeys(_RATE_FIELDS, factor)
        return rates.scaled(factors, f"discount {chosen.percent}% (discounts[{chosen.index}])", money=factor)

    # ---- the catalog -----------------------------------------------------------------------------------------

    def _catalog_model(self, provider: str, model: str) -> tuple[Any, Any] | None:
        """The genai-prices (provider, model) for a GenAI provider name and model name, or None."""
        if self._snapshot is None:
            return None
        name = _normalize_model(model)
        provider_name = provider.strip().lower()
        provider_id: str | None = _PROVIDER_IDS.get(provider_name, provider_name)
        if not provider_id:
            provider_id = None  # no provider reported: let genai-prices guess it from the model name
        try:
            return self._snapshot.find_provider_model(name, None, provider_id, None)
        except LookupError:
            return None

    def _catalog_rates(self, provider: str, model: str, batch: bool, tier: str, at_ns: int) -> Rates | None:
        """Resolve catalog rates: date constraints, batch / service-tier variants, corrections, own rules."""
        found = self._catalog_model(provider, model)
        if found is None:
            return None
        catalog_provider, info = found
        at = _from_ns(at_ns)
        owner = self._owners.get(id(info), catalog_provider.id)
        own_model = any(info is m for m in catalog_provider.models)  # variants only for the provider's own models
        standard = info.get_prices(at)
        prices = _price_dict(standard)
        notes: list[str] = []
        wants: list[tuple[str, str]] = []
        if batch:
            wants.append(("processing", "batch"))
        if tier:
            wants.append(("service_tier", tier))
        covered: set[str] = set()
        for context_key, context_value in wants:
            variant = _variant_prices(info, context_key, context_value, at, standard) if own_model else None
            if variant is not None:
                prices = {**prices, **variant[0]}
                notes.append(variant[1])
                covered.add(context_key)
        name = _normalize_model(model)
        for correction in CATALOG_CORRECTIONS:
            if correction.provider == owner and correction.model_id == info.id:
                prices = correction.apply(prices, name, at)
                notes.append(f"correction: {correction.why}")
        if not any(prices.get(key) is not None for key in _TOKEN_PRICE_KEYS):
            return None  # priced by units llmmeter cannot see (characters, audio seconds) or not at all
        rates = _rates_from_prices(prices, source="catalog", model=info.id, provider=catalog_provider.id)
        rates = replace(rates, notes=tuple(notes))
        batch_rule = batch and "processing" not in covered
        tier_rule = bool(tier) and "service_tier" not in covered
        return self._apply_mode_rules(
            rates, catalog_provider.id, info.id, batch_rule, tier if tier_rule else "", model_key=model
        )

    def _apply_mode_rules(
        self, rates: Rates, catalog_provider: str, model_id: str, batch: bool, tier: str, *, model_key: str = ""
    ) -> Rates:
        """llmmeter's own batch and service-tier rules, for what no catalog variant covered."""
        if batch and catalog_provider in _BATCH_HALF_PRICE:
            factors = dict.fromkeys(_RATE_FIELDS, _HALF)
            if catalog_provider == "google" and model_id.startswith("gemini"):
                del factors["cache_read"]  # Gemini batch bills context-cache reads at the standard rate
            rates = rates.scaled(factors, f"batch: llmmeter rule, 50% off at {catalog_provider}")
        if tier == "flex" and catalog_provider in _FLEX_HALF_PRICE:
            rates = rates.scaled(dict.fromkeys(_RATE_FIELDS, _HALF), "service tier flex: llmmeter rule, 50% off")
        elif tier == "priority":
            self._warn_once(
                ("priority", catalog_provider, model_id),
                "no priority-tier price known for %s/%s; priced at the standard rate",
                catalog_provider,
                model_key or model_id,
            )
        return rates

    # ---- pricing (the hot path) ------------------------------------------------------------------------------

    def _cost(self, rates: Rates, call: LlmCall) -> Cost:
        """Price a call with resolved rates: each token class once, exact Decimal arithmetic."""
        usage = call.usage
        write = usage.cache_write_tokens
        write_1h = usage.cache_write_1h_tokens
        write_5m = write - write_1h
        uncached = usage.input_tokens - usage.cache_read_tokens - write - usage.input_audio_tokens
        text_out = usage.output_tokens - usage.output_audio_tokens
        if uncached < 0 or text_out < 0 or write_5m < 0:
            uncached, text_out, write_5m = self._inconsistent(call, uncached, text_out, write_5m)
        token_rates = rates.for_prompt(usage.input_tokens) if rates.long_context else rates
        # A class is a part only when it costs something (tokens and a non-zero rate).
        parts: dict[str, Decimal] = {}
        if uncached and token_rates.input:
            parts["input"] = uncached * token_rates.input
        if usage.cache_read_tokens and token_rates.cache_read:
            parts["cache_read"] = usage.cache_read_tokens * token_rates.cache_read
        if write_5m or write_1h:
            amount = write_5m * token_rates.cache_write_5m + write_1h * token_rates.cache_write_1h
            if amount:
                parts["cache_write"] = amount
        if text_out and token_rates.output:
            parts["output"] = text_out * token_rates.output
        if usage.input_audio_tokens and token_rates.input_audio:
            parts["input_audio"] = usage.input_audio_tokens * token_rates.input_audio
        if usage.output_audio_tokens and token_rates.output_audio:
            parts["output_audio"] = usage.output_audio_tokens * token_rates.output_audio
        if rates.per_request or rates.per_hour:
            amount = rates.per_request + self._time_cost(rates.per_hour, call)
            if amount:
                parts["request"] = amount
        return Cost(total=sum(parts.values(), _ZERO), parts=parts, price_source=rates.source)

    @staticmethod
    def _time_cost(per_hour: Decimal, call: LlmCall) -> Decimal:
        """per_hour x call duration, rounded to 1e-15 USD (a division cannot stay exact)."""
        if not per_hour:
            return _ZERO
        duration_ns = max(0, call.end_ns - call.start_ns)
        return (per_hour * duration_ns / _NS_PER_HOUR).quantize(_TIME_COST_QUANTUM)

    def _inconsistent(self, call: LlmCall, uncached: int, text_out: int, write_5m: int) -> tuple[int, int, int]:
        """Usage whose parts exceed their totals: price what is reported, count the negative class as zero."""
        self._warn_once(
            ("usage", call.provider, call.model),
            "inconsistent usage for %s/%s (span %s): %s; the negative class is priced as zero",
            call.provider,
            call.model,
            call.span_id,
            call.usage,
        )
        return max(0, uncached), max(0, text_out), max(0, write_5m)

    def _warn_once(self, key: tuple[str, ...], message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)


# --------------------------------------------------------------------------------------------------------------
# genai-prices helpers
# --------------------------------------------------------------------------------------------------------------


def _bundled_snapshot() -> Any:
    """A private snapshot of the prices bundled with genai-prices: never the auto-updated global one."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)


def _catalog_version() -> str:
    """``genai-prices X.Y.Z (snapshot DATE)``: DATE is the latest price verification the bundled data mentions."""
    from genai_prices.data import providers

    try:
        version = package_version("genai-prices")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "unknown"
    pattern = re.compile(r"(?:verified|checked)(?: on)? (\d{4}-\d{2}-\d{2})", re.IGNORECASE)
    dates = {
        found
        for provider in providers
        for model in provider.models
        for found in pattern.findall(model.price_comments or "")
    }
    return f"genai-prices {version} (snapshot {max(dates)})" if dates else f"genai-prices {version}"


def _price_dict(model_price: Any) -> PriceDict:
    """The price keys llmmeter uses from a genai-prices ModelPrice (None when unpriced)."""
    values = model_price.__dict__
    return {key: values.get(key) for key in (*_TOKEN_PRICE_KEYS, "requests_kcount")}


def _variant_prices(info: Any, key: str, value: str, at: datetime, standard: Any) -> tuple[PriceDict, str] | None:
    """The catalog's price variant for ``{key: value}`` at ``at``, or None if the catalog has none for it.

    The first variant in effect wins, as in genai-prices. If none is in effect yet (the catalog dates variants
    from when they were verified), the earliest one is used provided the standard price was the same then.
    """
    from genai_prices.types import StartDateConstraint

    variants = [v for v in info.price_variants or () if v.when == {key: value}]
    if not variants:
        return None
    for variant in variants:
        if variant.constraint is None or variant.constraint.active(at):
            return _set_keys(variant.prices), f"{key}={value}: catalog variant"
    dated = [v for v in variants if isinstance(v.constraint, StartDateConstraint)]
    if not dated:
        return None
    earliest = min(dated, key=lambda v: v.constraint.start_date)
    since = datetime.combine(earliest.constraint.start_date, time(), UTC)
    if info.get_prices(since) != standard:
        return None
    note = f"{key}={value}: catalog variant of {earliest.constraint.start_date} (standard price unchanged since)"
    return _set_keys(earliest.prices), note


def _set_keys(model_price: Any) -> PriceDict:
    return {k: v for k, v in model_price.__dict__.items() if v is not None and not k.startswith("_")}


def _rates_from_prices(prices: PriceDict, *, source: str, model: str, provider: str) -> Rates:
    """Convert catalog per-MTok prices (plain or tiered) into per-token Rates with long-context tiers."""
    thresholds = sorted({tier.start for value in prices.values() if _is_tiered(value) for tier in value.tiers})
    base = _token_rates_from_mtok(_class_prices(prices, None))
    tiers = tuple(LongContextTier(t, _token_rates_from_mtok(_class_prices(prices, t))) for t in thresholds)
    per_request = prices.get("requests_kcount")
    return Rates(
        **{name: getattr(base, name) for name in _RATE_FIELDS},
        per_request=_tier_price(per_request, None) / 1000 if per_request is not None else _ZERO,
        long_context=tiers,
        source=source,
        model=model,
        provider=provider,
    )


def _class_prices(prices: PriceDict, threshold: int | None) -> dict[str, Decimal]:
    """Per-MTok price of each token class for prompts just above ``threshold`` (None = base)."""
    keys = {
        "input": "input_mtok",
        "cache_read": "cache_read_mtok",
        "cache_write_5m": "cache_write_5m_mtok",
        "cache_write_1h": "cache_write_1h_mtok",
        "output": "output_mtok",
        "input_audio": "input_audio_mtok",
        "output_audio": "output_audio_mtok",
    }
    result = {name: _tier_price(prices[key], threshold) for name, key in keys.items() if prices.get(key) is not None}
    if "cache_write_5m" not in result and prices.get("cache_write_mtok") is not None:
        result["cache_write_5m"] = _tier_price(prices["cache_write_mtok"], threshold)
    return result


def _tier_price(value: PriceValue, threshold: int | None) -> Decimal:
    """A plain price, or a tiered price's rate for prompts just above ``threshold`` (cliff semantics)."""
    if not _is_tiered(value):
        return Decimal(value)
    chosen = value.base
    if threshold is not None:
        for tier in value.tiers:
            if tier.start <= threshold:
                chosen = tier.price
    return Decimal(chosen)


def _is_tiered(value: PriceValue) -> bool:
    return hasattr(value, "tiers") and hasattr(value, "base")
