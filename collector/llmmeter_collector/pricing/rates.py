"""What a price is: per-token rates of each token class, long-context tiers, and the instants they apply at.

Long-context tiers
------------------
genai-prices' ``TieredPrices`` is a cliff: when the *total* prompt (``input_tokens``, cached tokens included)
is strictly greater than a tier's ``start``, every token of the request, in every class that has a tier price,
is billed at the tier rate. That is how Google (Gemini 2.5 Pro "prompts > 200k tokens") and Anthropic
(Sonnet 4 / 4.5 "input > 200K tokens") define it, so tiers are taken from the catalog as they are. Classes that
fall back to a parent rate follow the parent's tier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)
RATE_FIELDS = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output", "input_audio", "output_audio")


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
        return TokenRates(**{name: getattr(self, name) for name in RATE_FIELDS})

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


def token_rates_from_mtok(per_mtok: Mapping[str, Decimal]) -> TokenRates:
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


def to_ns(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def normalize_model(name: str) -> str:
    """Lower-case, without a ``models/`` or Vertex ``publishers/.../models/`` resource prefix."""
    name = name.strip().lower()
    cut = name.rfind("models/")
    return name[cut + len("models/") :] if cut >= 0 else name
