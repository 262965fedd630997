"""The arithmetic of a cost: one call's usage times resolved rates, each token class priced once, exact USD.

Each token class is priced exactly once:

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
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from llmmeter_collector.llmcall import Cost, LlmCall
from llmmeter_collector.pricing.rates import Rates

_ZERO = Decimal(0)
_NS_PER_HOUR = Decimal(3_600 * 1_000_000_000)
# Time-based (per_hour) costs are a division, so they are rounded here: 1e-15 USD, far below any real price.
_TIME_COST_QUANTUM = Decimal("1e-15")


def cost(rates: Rates, call: LlmCall, on_inconsistent: Callable[[LlmCall], object]) -> Cost:
    """Price a call with resolved rates: each token class once, exact Decimal arithmetic.

    ``on_inconsistent(call)`` is told when the usage's parts exceed their totals (the negative class is priced as
    zero).
    """
    usage = call.usage
    write = usage.cache_write_tokens
    write_1h = usage.cache_write_1h_tokens
    write_5m = write - write_1h
    uncached = usage.input_tokens - usage.cache_read_tokens - write - usage.input_audio_tokens
    text_out = usage.output_tokens - usage.output_audio_tokens
    if uncached < 0 or text_out < 0 or write_5m < 0:
        on_inconsistent(call)
        uncached, text_out, write_5m = max(0, uncached), max(0, text_out), max(0, write_5m)
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
        amount = rates.per_request + _time_cost(rates.per_hour, call)
        if amount:
            parts["request"] = amount
    return Cost(total=sum(parts.values(), _ZERO), parts=parts, price_source=rates.source)


def _time_cost(per_hour: Decimal, call: LlmCall) -> Decimal:
    """per_hour x call duration, rounded to 1e-15 USD (a division cannot stay exact)."""
    if not per_hour:
        return _ZERO
    duration_ns = max(0, call.end_ns - call.start_ns)
    return (per_hour * duration_ns / _NS_PER_HOUR).quantize(_TIME_COST_QUANTUM)
