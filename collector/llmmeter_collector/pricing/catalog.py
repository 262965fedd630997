"""Prices GenAI calls in exact USD: resolves a call to the rates of its model at its instant, from the bundled
genai-prices catalog, the built-in corrections and the overrides file, and caches them per day.

``PriceCatalog.price(call)`` resolves ``(provider, model, batch, service tier, UTC day)`` to a ``Rates`` once
(genai-prices' own ``calc_price`` is far too slow to run per call), caches it, and prices the call with
``cost.cost`` (a handful of ``Decimal`` multiplications).

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
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, TypeAlias

from llmmeter_collector.llmcall import Cost, LlmCall
from llmmeter_collector.pricing.corrections import CATALOG_CORRECTIONS, CORRECTION_INSTANTS, PriceDict, PriceValue
from llmmeter_collector.pricing.cost import cost
from llmmeter_collector.pricing.overrides import ModelOverride, Overrides, PriceError, parse_overrides
from llmmeter_collector.pricing.rates import (
    NS_PER_DAY,
    RATE_FIELDS,
    LongContextTier,
    Rates,
    from_ns,
    normalize_model,
    to_ns,
    token_rates_from_mtok,
)

logger = logging.getLogger(__name__)


_HALF = Decimal("0.5")
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


@dataclass(slots=True)
class _Schedule:
    """Rates that change inside one UTC day (off-peak windows, a price change at a given hour)."""

    offsets: list[int]  # ns since the day's start at which each segment begins; offsets[0] == 0
    rates: list[Rates | None]

    def at(self, start_ns: int) -> Rates | None:
        return self.rates[bisect.bisect_right(self.offsets, start_ns % NS_PER_DAY) - 1]


_CacheKey: TypeAlias = tuple[str, str, bool, str, int]
_MISSING: Any = object()


@dataclass
class _State:
    """What a reload replaces at once: the overrides and the cache built from them."""

    overrides: Overrides | None
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
        key = (call.provider, call.model, call.batch, call.service_tier, start_ns // NS_PER_DAY)
        try:
            entry = state.cache[key]
        except KeyError:
            entry = self._resolve_day(state, key)
        if entry is None:
            return None
        rates = entry.at(start_ns) if isinstance(entry, _Schedule) else entry
        if rates is None:
            return None
        return cost(rates, call, self._inconsistent)

    def rates(
        self, provider: str, model: str, at: datetime, *, batch: bool = False, service_tier: str = ""
    ) -> Rates | None:
        """The rates for a call to ``model`` at ``provider`` at time ``at`` (naive = UTC); None if unpriced."""
        state = self._state
        start_ns = to_ns(at)
        key = (provider, model, batch, service_tier, start_ns // NS_PER_DAY)
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
        overrides, problems = parse_overrides(self._overrides_path)
        if overrides is None:
            raise PriceError(problems)
        return _State(overrides, overrides.instants())

    # ---- resolution (cache misses) ---------------------------------------------------------------------------

    def _resolve_day(self, state: _State, key: _CacheKey) -> Rates | _Schedule | None:
        """Resolve the rates of one (provider, model, batch, tier, UTC day), splitting the day where they change."""
        provider, model, batch, tier, day = key
        day_start = day * NS_PER_DAY
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
        day_end = day_start + NS_PER_DAY
        found = {ns - day_start for ns in state.instants if day_start < ns < day_end}
        found.update(ns - day_start for ns in map(to_ns, CORRECTION_INSTANTS) if day_start < ns < day_end)
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
        name = normalize_model(model)
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
    ) -> ModelOverride | None:
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
        factors = dict.fromkeys(RATE_FIELDS, factor)
        return rates.scaled(factors, f"discount {chosen.percent}% (discounts[{chosen.index}])", money=factor)

    # ---- the catalog -----------------------------------------------------------------------------------------

    def _catalog_model(self, provider: str, model: str) -> tuple[Any, Any] | None:
        """The genai-prices (provider, model) for a GenAI provider name and model name, or None."""
        if self._snapshot is None:
            return None
        name = normalize_model(model)
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
        at = from_ns(at_ns)
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
        name = normalize_model(model)
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
            factors = dict.fromkeys(RATE_FIELDS, _HALF)
            if catalog_provider == "google" and model_id.startswith("gemini"):
                del factors["cache_read"]  # Gemini batch bills context-cache reads at the standard rate
            rates = rates.scaled(factors, f"batch: llmmeter rule, 50% off at {catalog_provider}")
        if tier == "flex" and catalog_provider in _FLEX_HALF_PRICE:
            rates = rates.scaled(dict.fromkeys(RATE_FIELDS, _HALF), "service tier flex: llmmeter rule, 50% off")
        elif tier == "priority":
            self._warn_once(
                ("priority", catalog_provider, model_id),
                "no priority-tier price known for %s/%s; priced at the standard rate",
                catalog_provider,
                model_key or model_id,
            )
        return rates

    def _inconsistent(self, call: LlmCall) -> None:
        """Usage whose parts exceed their totals: warned once per (provider, model); ``cost`` prices it as zero."""
        self._warn_once(
            ("usage", call.provider, call.model),
            "inconsistent usage for %s/%s (span %s): %s; the negative class is priced as zero",
            call.provider,
            call.model,
            call.span_id,
            call.usage,
        )

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
    base = token_rates_from_mtok(_class_prices(prices, None))
    tiers = tuple(LongContextTier(t, token_rates_from_mtok(_class_prices(prices, t))) for t in thresholds)
    per_request = prices.get("requests_kcount")
    return Rates(
        **{name: getattr(base, name) for name in RATE_FIELDS},
        per_request=_tier_price(per_request, None) / 1000 if per_request is not None else Decimal(0),
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
