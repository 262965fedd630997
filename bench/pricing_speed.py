"""How fast the collector prices calls: cold lookups, warm (cached) pricing, and genai-prices' calc_price for scale.

Run: ``.venv/bin/python bench/pricing_speed.py``. Prints a table; writes nothing.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime

from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.pricing import PriceCatalog

AT = datetime(2025, 9, 1, 12, tzinfo=UTC)
MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4.1"),
    ("openai", "o3"),
    ("openai", "o4-mini"),
    ("openai", "gpt-5"),
    ("openai", "gpt-5-mini"),
    ("openai", "text-embedding-3-small"),
    ("azure.ai.openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-opus-4-1-20250805"),
    ("anthropic", "claude-haiku-4-5-20251001"),
    ("gcp.gemini", "models/gemini-2.5-pro"),
    ("gcp.gemini", "gemini-2.5-flash"),
    ("gcp.vertex_ai", "gemini-2.0-flash-001"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("mistral_ai", "mistral-large-2411"),
    ("groq", "llama-3.3-70b-versatile"),
    ("deepseek", "deepseek-chat"),
]


def make_call(provider: str, model: str, day_offset: int = 0) -> LlmCall:
    start = int(AT.timestamp()) * 1_000_000_000 + day_offset * 86_400 * 1_000_000_000
    usage = Usage(input_tokens=12_000, cache_read_tokens=4_000, output_tokens=800, reasoning_tokens=300)
    return LlmCall("0" * 32, "1" * 16, start, start + 10**9, provider, "chat", model, usage=usage)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Per-call durations in microseconds."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1_000)
    return samples


def main() -> None:
    t0 = time.perf_counter()
    catalog = PriceCatalog()
    startup_ms = (time.perf_counter() - t0) * 1_000

    # cold: first lookup of each model on a fresh day (resolution + pricing)
    cold = []
    for i, (provider, model) in enumerate(MODELS):
        call = make_call(provider, model, day_offset=1 + i)
        cold.extend(timed(lambda call=call: catalog.price(call), 1))

    # warm: cache hits only
    calls = [make_call(p, m) for p, m in MODELS]
    for call in calls:
        catalog.price(call)
    warm: list[float] = []
    for call in calls:
        warm.extend(timed(lambda call=call: catalog.price(call), 5_000))

    n = 200_000
    batch = (calls * (n // len(calls) + 1))[:n]
    t0 = time.perf_counter()
    for call in batch:
        catalog.price(call)
    per_second = n / (time.perf_counter() - t0)

    # genai-prices' own calc_price for the same calls, for scale
    from genai_prices import Usage as GpUsage
    from genai_prices import calc_price

    gp_usage = GpUsage(input_tokens=12_000, cache_read_tokens=4_000, output_tokens=800)
    gp: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in ("gpt-4o-mini", "gpt-5", "o3"):

            def one(m: str = model) -> object:
                return calc_price(gp_usage, m, provider_id="openai", genai_request_timestamp=AT)

            gp.extend(timed(one, 500))

    print(f"pricing benchmark — {catalog.catalog_version}")
    print(f"{'measure':<44} {'median':>12} {'p99':>12}")
    print("-" * 70)
    print(f"{'PriceCatalog() startup (catalog load)':<44} {startup_ms:>9.1f} ms {'':>12}")
    print(f"{'cold lookup: first call of a model + day':<44} {_med(cold):>9.1f} µs {_p99(cold):>9.1f} µs")
    print(f"{'warm price(): cache hit':<44} {_med(warm):>9.2f} µs {_p99(warm):>9.2f} µs")
    print(f"{'genai-prices calc_price() per call':<44} {_med(gp):>9.1f} µs {_p99(gp):>9.1f} µs")
    print(f"{'warm throughput, one thread':<44} {per_second:>9,.0f} calls/s")
    print(f"{'speed-up of warm price() over calc_price()':<44} {_med(gp) / _med(warm):>9.0f} x")


def _med(samples: list[float]) -> float:
    return statistics.median(samples)


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


if __name__ == "__main__":
    main()
