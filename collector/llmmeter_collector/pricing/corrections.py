"""Built-in corrections to the bundled catalog: prices genai-prices has wrong or lacks, each with its source."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeAlias

PriceValue: TypeAlias = Any  # Decimal | genai_prices.types.TieredPrices
PriceDict: TypeAlias = dict[str, PriceValue]


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
CORRECTION_INSTANTS: tuple[datetime, ...] = tuple(start for start, _ in _DEEPSEEK_V3_PERIODS)
