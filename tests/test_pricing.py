"""Pricing: accuracy against published provider prices, the rules, overrides and their validation."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from llmmeter_collector.llmcall import COST_CLASSES, LlmCall, Usage
from llmmeter_collector.pricing import PriceCatalog, PriceError, Rates, check_price_file

EXAMPLE_FILE = Path(__file__).parent.parent / "collector" / "llmmeter_collector" / "pricing" / "prices.example.yaml"
DAY = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)


def make_call(
    provider: str,
    model: str,
    at: datetime = DAY,
    *,
    duration_s: float = 1.0,
    batch: bool = False,
    service_tier: str = "",
    streaming: bool = False,
    operation: str = "chat",
    **usage: int,
) -> LlmCall:
    start = int(at.timestamp()) * 1_000_000_000
    return LlmCall(
        trace_id="0" * 32,
        span_id="1" * 16,
        start_ns=start,
        end_ns=start + int(duration_s * 1_000_000_000),
        provider=provider,
        operation=operation,
        request_model=model,
        usage=Usage(**usage),
        batch=batch,
        service_tier=service_tier,
        streaming=streaming,
    )


def total_of(catalog: PriceCatalog, call: LlmCall) -> Decimal:
    cost = catalog.price(call)
    assert cost is not None, f"unpriced: {call.provider}/{call.model}"
    return cost.total


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


# ---------------------------------------------------------------------------------------------------------------
# Accuracy: expected USD computed by hand from each provider's published price per 1M tokens.
# ---------------------------------------------------------------------------------------------------------------

OPENAI = "openai.com/api/pricing (platform.openai.com/docs/pricing)"
ANTHROPIC = "anthropic.com/pricing#api (docs.anthropic.com/en/docs/about-claude/pricing)"
GEMINI = "ai.google.dev/gemini-api/docs/pricing"


@dataclass(frozen=True)
class Case:
    id: str
    provider: str
    model: str
    usage: dict[str, int]
    expected: str  # USD, by hand
    source: str  # pricing page and the per-Mtok numbers used
    batch: bool = False
    service_tier: str = ""
    at: datetime = DAY
    flags: dict[str, str] = field(default_factory=dict)


CASES = [
    # ---- OpenAI ----
    Case("gpt-4o-mini", "openai", "gpt-4o-mini", {"input_tokens": 10_000, "output_tokens": 2_000},
         "0.0027", f"{OPENAI}: gpt-4o-mini $0.15 in / $0.60 out / $0.075 cached"),
    Case("gpt-4o-mini cached", "openai", "gpt-4o-mini",
         {"input_tokens": 10_000, "cache_read_tokens": 6_000, "output_tokens": 500},
         "0.00135", f"{OPENAI}: gpt-4o-mini $0.15 in / $0.60 out / $0.075 cached"),
    Case("gpt-4o dated 2024-08-06", "openai", "gpt-4o-2024-08-06",
         {"input_tokens": 1_000_000, "output_tokens": 100_000},
         "3.5", f"{OPENAI}: gpt-4o(-2024-08-06) $2.50 in / $10 out / $1.25 cached"),
    Case("gpt-4o dated 2024-11-20 cached", "openai", "gpt-4o-2024-11-20",
         {"input_tokens": 2_000, "cache_read_tokens": 1_024, "output_tokens": 300},
         "0.00672", f"{OPENAI}: gpt-4o-2024-11-20 $2.50 in / $10 out / $1.25 cached"),
    Case("gpt-4o-2024-05-13", "openai", "gpt-4o-2024-05-13", {"input_tokens": 1_000, "output_tokens": 1_000},
         "0.02", f"{OPENAI}: gpt-4o-2024-05-13 $5 in / $15 out"),
    Case("gpt-4.1 cached", "openai", "gpt-4.1",
         {"input_tokens": 100_000, "cache_read_tokens": 50_000, "output_tokens": 10_000},
         "0.205", f"{OPENAI}: gpt-4.1 $2 in / $8 out / $0.50 cached"),
    Case("gpt-4.1-mini dated", "openai", "gpt-4.1-mini-2025-04-14",
         {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
         "2.0", f"{OPENAI}: gpt-4.1-mini $0.40 in / $1.60 out"),
    Case("gpt-4.1-nano", "openai", "gpt-4.1-nano", {"input_tokens": 500_000, "output_tokens": 100_000},
         "0.09", f"{OPENAI}: gpt-4.1-nano $0.10 in / $0.40 out"),
    Case("o3 reasoning", "openai", "o3", {"input_tokens": 5_000, "output_tokens": 20_000, "reasoning_tokens": 18_000},
         "0.17", f"{OPENAI}: o3 $2 in / $8 out (reasoning billed as output), since 2025-06-10"),
    Case("o4-mini dated reasoning cached", "openai", "o4-mini-2025-04-16",
         {"input_tokens": 3_000, "cache_read_tokens": 1_000, "output_tokens": 10_000, "reasoning_tokens": 9_000},
         "0.046475", f"{OPENAI}: o4-mini $1.10 in / $4.40 out / $0.275 cached"),
    Case("o1", "openai", "o1", {"input_tokens": 10_000, "output_tokens": 5_000},
         "0.45", f"{OPENAI}: o1 $15 in / $60 out"),
    Case("o3-mini dated", "openai", "o3-mini-2025-01-31", {"input_tokens": 10_000, "output_tokens": 10_000},
         "0.055", f"{OPENAI}: o3-mini $1.10 in / $4.40 out"),
    Case("gpt-5 cached reasoning", "openai", "gpt-5",
         {"input_tokens": 10_000, "cache_read_tokens": 8_000, "output_tokens": 2_000, "reasoning_tokens": 1_500},
         "0.0235", f"{OPENAI}: gpt-5 $1.25 in / $10 out / $0.125 cached"),
    Case("gpt-5-mini dated", "openai", "gpt-5-mini-2025-08-07", {"input_tokens": 100_000, "output_tokens": 10_000},
         "0.045", f"{OPENAI}: gpt-5-mini $0.25 in / $2 out"),
    Case("gpt-5-nano", "openai", "gpt-5-nano", {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
         "0.45", f"{OPENAI}: gpt-5-nano $0.05 in / $0.40 out"),
    Case("embedding 3-small", "openai", "text-embedding-3-small", {"input_tokens": 1_000_000},
         "0.02", f"{OPENAI}: text-embedding-3-small $0.02 / 1M tokens"),
    Case("embedding 3-large", "openai", "text-embedding-3-large", {"input_tokens": 250_000},
         "0.0325", f"{OPENAI}: text-embedding-3-large $0.13 / 1M tokens"),
    Case("embedding ada-002", "openai", "text-embedding-ada-002", {"input_tokens": 10_000},
         "0.001", f"{OPENAI}: text-embedding-ada-002 $0.10 / 1M tokens"),
    Case("gpt-4o-mini batch", "openai", "gpt-4o-mini", {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
         "0.375", f"{OPENAI} Batch: gpt-4o-mini $0.075 in / $0.30 out", batch=True),
    Case("gpt-5 batch cached", "openai", "gpt-5",
         {"input_tokens": 1_000_000, "cache_read_tokens": 200_000, "output_tokens": 100_000},
         "1.0125", f"{OPENAI} Batch: gpt-5 $0.625 in / $0.0625 cached / $5 out", batch=True),
    Case("o3 flex cached", "openai", "o3", {"input_tokens": 10_000, "cache_read_tokens": 2_000, "output_tokens": 5_000},
         "0.0285", f"{OPENAI} Flex: o3 $1 in / $0.25 cached / $4 out", service_tier="flex"),
    Case("gpt-5 flex", "openai", "gpt-5", {"input_tokens": 100_000, "output_tokens": 10_000},
         "0.1125", f"{OPENAI} Flex: gpt-5 $0.625 in / $5 out", service_tier="flex"),
    Case("gpt-5 priority", "openai", "gpt-5", {"input_tokens": 100_000, "output_tokens": 10_000},
         "0.45", f"{OPENAI} Priority: gpt-5 $2.50 in / $20 out", service_tier="priority"),
    Case("gpt-4o priority", "openai", "gpt-4o", {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.0595", f"{OPENAI} Priority: gpt-4o $4.25 in / $17 out", service_tier="priority"),
    Case("gpt-4o-mini default tier", "openai", "gpt-4o-mini", {"input_tokens": 1_000, "output_tokens": 1_000},
         "0.00075", f"{OPENAI}: gpt-4o-mini $0.15 in / $0.60 out", service_tier="default"),
    Case("gpt-4o-realtime audio", "openai", "gpt-4o-realtime-preview-2024-12-17",
         {"input_tokens": 10_000, "input_audio_tokens": 8_000, "output_tokens": 5_000, "output_audio_tokens": 4_000},
         "0.67", f"{OPENAI}: gpt-4o-realtime-preview text $5 in / $20 out, audio $40 in / $80 out"),
    Case("gpt-4o-mini-realtime audio", "openai", "gpt-4o-mini-realtime-preview",
         {"input_tokens": 1_000, "input_audio_tokens": 1_000, "output_tokens": 1_000, "output_audio_tokens": 1_000},
         "0.03", f"{OPENAI}: gpt-4o-mini-realtime-preview audio $10 in / $20 out"),
    Case("gpt-4o-audio-preview audio (corrected)", "openai", "gpt-4o-audio-preview-2025-06-03",
         {"input_tokens": 1_000, "input_audio_tokens": 600, "output_tokens": 500, "output_audio_tokens": 400},
         "0.058", f"{OPENAI}: gpt-4o-audio-preview text $2.50 in / $10 out, audio $40 in / $80 out"),
    Case("gpt-4o-mini-audio-preview audio (corrected)", "openai", "gpt-4o-mini-audio-preview",
         {"input_tokens": 1_000, "input_audio_tokens": 1_000, "output_tokens": 1_000, "output_audio_tokens": 1_000},
         "0.03", f"{OPENAI}: gpt-4o-mini-audio-preview audio $10 in / $20 out"),
    Case("azure gpt-4o-mini", "azure.ai.openai", "gpt-4o-mini", {"input_tokens": 10_000, "output_tokens": 2_000},
         "0.0027", "azure.microsoft.com/pricing/details/cognitive-services/openai-service: GPT-4o-mini Global "
         "$0.15 in / $0.60 out"),
    Case("azure gpt-4o batch", "azure.ai.openai", "gpt-4o", {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
         "6.25", "azure.microsoft.com/pricing/details/cognitive-services/openai-service: GPT-4o Global Batch "
         "$1.25 in / $5 out", batch=True),
    # ---- Anthropic ----
    Case("sonnet 4 dated", "anthropic", "claude-sonnet-4-20250514", {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.045", f"{ANTHROPIC}: Sonnet 4 $3 in / $15 out"),
    Case("sonnet 4 read + 5m write", "anthropic", "claude-sonnet-4-20250514",
         {"input_tokens": 50_000, "cache_read_tokens": 30_000, "cache_write_tokens": 10_000, "output_tokens": 2_000},
         "0.1065", f"{ANTHROPIC}: Sonnet 4 $3 in / $15 out / $3.75 5m write / $0.30 cache hit"),
    Case("sonnet 4 1h write", "anthropic", "claude-sonnet-4-20250514",
         {"input_tokens": 20_000, "cache_write_tokens": 20_000, "cache_write_1h_tokens": 20_000, "output_tokens": 100},
         "0.1215", f"{ANTHROPIC}: Sonnet 4 $6 1h write / $15 out"),
    Case("sonnet 4.5 5m + 1h writes", "anthropic", "claude-sonnet-4-5-20250929",
         {"input_tokens": 100_000, "cache_read_tokens": 50_000, "cache_write_tokens": 30_000,
          "cache_write_1h_tokens": 10_000, "output_tokens": 5_000},
         "0.285", f"{ANTHROPIC}: Sonnet 4.5 $3 in / $15 out / $3.75 5m / $6 1h / $0.30 hit"),
    Case("sonnet 4.5 long context", "anthropic", "claude-sonnet-4-5",
         {"input_tokens": 300_000, "cache_read_tokens": 100_000, "output_tokens": 10_000},
         "1.485", f"{ANTHROPIC} long context (>200K): Sonnet 4.5 $6 in / $22.50 out / $0.60 hit"),
    Case("sonnet 4.5 exactly 200K", "anthropic", "claude-sonnet-4-5", {"input_tokens": 200_000, "output_tokens": 1_000},
         "0.615", f"{ANTHROPIC}: Sonnet 4.5 $3 in / $15 out (200K is not over 200K)"),
    Case("sonnet 4 long context (corrected)", "anthropic", "claude-sonnet-4-20250514",
         {"input_tokens": 250_000, "output_tokens": 1_000},
         "1.5225", f"{ANTHROPIC} long context (>200K): Sonnet 4 $6 in / $22.50 out"),
    Case("opus 4.1", "anthropic", "claude-opus-4-1-20250805", {"input_tokens": 10_000, "output_tokens": 2_000},
         "0.3", f"{ANTHROPIC}: Opus 4.1 $15 in / $75 out"),
    Case("opus 4.1 batch with write", "anthropic", "claude-opus-4-1-20250805",
         {"input_tokens": 10_000, "cache_write_tokens": 2_000, "output_tokens": 2_000},
         "0.15375", f"{ANTHROPIC} Batch: Opus 4.1 $7.50 in / $37.50 out; 5m write 1.25x = $9.375", batch=True),
    Case("haiku 4.5 cached", "anthropic", "claude-haiku-4-5-20251001",
         {"input_tokens": 10_000, "cache_read_tokens": 8_000, "output_tokens": 1_000},
         "0.0078", f"{ANTHROPIC}: Haiku 4.5 $1 in / $5 out / $0.10 hit"),
    Case("haiku 4.5 batch cached", "anthropic", "claude-haiku-4-5-20251001",
         {"input_tokens": 10_000, "cache_read_tokens": 8_000, "output_tokens": 1_000},
         "0.0039", f"{ANTHROPIC} Batch: Haiku 4.5 $0.50 in / $2.50 out / $0.05 hit", batch=True),
    Case("haiku 3.5", "anthropic", "claude-3-5-haiku-20241022", {"input_tokens": 100_000, "output_tokens": 10_000},
         "0.12", f"{ANTHROPIC}: Haiku 3.5 $0.80 in / $4 out"),
    Case("haiku 3", "anthropic", "claude-3-haiku-20240307", {"input_tokens": 1_000_000, "output_tokens": 100_000},
         "0.375", f"{ANTHROPIC}: Haiku 3 $0.25 in / $1.25 out"),
    Case("opus 4.5 batch thinking", "anthropic", "claude-opus-4-5-20251101",
         {"input_tokens": 10_000, "output_tokens": 10_000, "reasoning_tokens": 8_000},
         "0.15", f"{ANTHROPIC} Batch: Opus 4.5 $2.50 in / $12.50 out (thinking billed as output)", batch=True),
    Case("sonnet 3.7 thinking", "anthropic", "claude-3-7-sonnet-20250219",
         {"input_tokens": 2_000, "output_tokens": 8_000, "reasoning_tokens": 6_000},
         "0.126", f"{ANTHROPIC}: Sonnet 3.7 $3 in / $15 out"),
    # ---- Google ----
    Case("gemini 2.5 pro at 200k", "gcp.gemini", "gemini-2.5-pro", {"input_tokens": 200_000, "output_tokens": 10_000},
         "0.35", f"{GEMINI}: 2.5 Pro prompts <= 200k $1.25 in / $10 out"),
    Case("gemini 2.5 pro above 200k", "gcp.gemini", "gemini-2.5-pro",
         {"input_tokens": 200_001, "output_tokens": 10_000},
         "0.6500025", f"{GEMINI}: 2.5 Pro prompts > 200k $2.50 in / $15 out"),
    Case("gemini 2.5 pro cached thinking", "gcp.gemini", "gemini-2.5-pro",
         {"input_tokens": 100_000, "cache_read_tokens": 40_000, "output_tokens": 5_000, "reasoning_tokens": 4_000},
         "0.13", f"{GEMINI}: 2.5 Pro $1.25 in / $10 out (incl. thinking) / $0.125 context caching"),
    Case("models/ prefix", "gcp.gemini", "models/gemini-2.5-flash", {"input_tokens": 100_000, "output_tokens": 10_000},
         "0.055", f"{GEMINI}: 2.5 Flash $0.30 in / $2.50 out"),
    Case("gemini 2.5 flash audio in", "gcp.gemini", "gemini-2.5-flash",
         {"input_tokens": 10_000, "input_audio_tokens": 6_000, "output_tokens": 1_000},
         "0.0097", f"{GEMINI}: 2.5 Flash $0.30 text in / $1.00 audio in / $2.50 out"),
    Case("gemini 2.5 flash cached", "gcp.gemini", "gemini-2.5-flash",
         {"input_tokens": 100_000, "cache_read_tokens": 80_000, "output_tokens": 1_000},
         "0.0109", f"{GEMINI}: 2.5 Flash $0.30 in / $0.03 context caching / $2.50 out"),
    Case("gemini 2.5 flash batch", "gcp.gemini", "gemini-2.5-flash",
         {"input_tokens": 1_000_000, "output_tokens": 100_000},
         "0.275", f"{GEMINI} Batch: 2.5 Flash $0.15 in / $1.25 out", batch=True),
    Case("gemini 2.5 pro batch above 200k", "gcp.gemini", "gemini-2.5-pro",
         {"input_tokens": 300_000, "output_tokens": 10_000},
         "0.45", f"{GEMINI} Batch: 2.5 Pro prompts > 200k $1.25 in / $7.50 out", batch=True),
    Case("gemini 2.0 flash", "gcp.gemini", "gemini-2.0-flash", {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
         "0.5", f"{GEMINI}: 2.0 Flash $0.10 in / $0.40 out"),
    Case("gemini 2.0 flash-001 cached", "gcp.gemini", "gemini-2.0-flash-001",
         {"input_tokens": 10_000, "cache_read_tokens": 5_000, "output_tokens": 1_000},
         "0.001025", f"{GEMINI}: 2.0 Flash $0.10 in / $0.025 context caching / $0.40 out"),
    Case("gemini 2.5 flash-lite", "gcp.gemini", "gemini-2.5-flash-lite",
         {"input_tokens": 1_000_000, "output_tokens": 100_000},
         "0.14", f"{GEMINI}: 2.5 Flash-Lite $0.10 in / $0.40 out"),
    Case("gemini embedding", "gcp.gemini", "models/gemini-embedding-001", {"input_tokens": 100_000},
         "0.015", f"{GEMINI}: gemini-embedding-001 $0.15 / 1M input tokens"),
    Case("gemini 1.5 pro above 128k", "gcp.gemini", "gemini-1.5-pro-002",
         {"input_tokens": 200_000, "output_tokens": 1_000},
         "0.51", f"{GEMINI}: 1.5 Pro prompts > 128k $2.50 in / $10 out"),
    Case("vertex gemini 2.5 pro", "gcp.vertex_ai",
         "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro",
         {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.0225", "cloud.google.com/vertex-ai/generative-ai/pricing: Gemini 2.5 Pro $1.25 in / $10 out"),
    Case("vertex claude sonnet 4", "gcp.vertex_ai", "claude-sonnet-4@20250514",
         {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.045", "cloud.google.com/vertex-ai/generative-ai/pricing: Claude Sonnet 4 $3 in / $15 out"),
    # ---- others ----
    Case("bedrock claude 3.5 sonnet", "aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0",
         {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.045", "aws.amazon.com/bedrock/pricing: Claude 3.5 Sonnet $3 in / $15 out"),
    Case("mistral large 24.11", "mistral_ai", "mistral-large-2411", {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.026", "mistral.ai/pricing#api: Mistral Large 24.11 $2 in / $6 out"),
    Case("groq llama 3.3 70b", "groq", "llama-3.3-70b-versatile",
         {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
         "1.38", "groq.com/pricing: Llama 3.3 70B Versatile $0.59 in / $0.79 out"),
    Case("groq llama 3.1 8b", "groq", "llama-3.1-8b-instant", {"input_tokens": 100_000, "output_tokens": 100_000},
         "0.013", "groq.com/pricing: Llama 3.1 8B Instant $0.05 in / $0.08 out"),
    Case("deepseek-chat standard hours", "deepseek", "deepseek-chat",
         {"input_tokens": 1_000_000, "cache_read_tokens": 500_000, "output_tokens": 100_000},
         "0.28", "api-docs.deepseek.com/quick_start/pricing (2025-08): deepseek-chat $0.27 miss / $0.07 hit / "
         "$1.10 out",
         at=datetime(2025, 8, 1, 10, 0, tzinfo=UTC)),
    Case("deepseek-chat off-peak", "deepseek", "deepseek-chat",
         {"input_tokens": 1_000_000, "cache_read_tokens": 500_000, "output_tokens": 100_000},
         "0.14", "api-docs.deepseek.com/quick_start/pricing (2025-08): off-peak 16:30-00:30 UTC 50% off",
         at=datetime(2025, 8, 1, 18, 0, tzinfo=UTC)),
    Case("deepseek-reasoner standard hours", "deepseek", "deepseek-reasoner",
         {"input_tokens": 100_000, "output_tokens": 100_000, "reasoning_tokens": 90_000},
         "0.274", "api-docs.deepseek.com/quick_start/pricing (2025-08): deepseek-reasoner $0.55 in / $2.19 out",
         at=datetime(2025, 8, 1, 10, 0, tzinfo=UTC)),
    Case("deepseek-chat V3.2 (corrected)", "deepseek", "deepseek-chat",
         {"input_tokens": 1_000_000, "cache_read_tokens": 500_000, "output_tokens": 100_000},
         "0.196", "api-docs.deepseek.com/news/news250929: $0.28 miss / $0.028 hit / $0.42 out",
         at=datetime(2025, 10, 15, 10, 0, tzinfo=UTC)),
    Case("xai grok-3", "x_ai", "grok-3", {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.045", "docs.x.ai/docs/models: grok-3 $3 in / $15 out"),
    Case("cohere command-r-plus", "cohere", "command-r-plus-08-2024", {"input_tokens": 10_000, "output_tokens": 1_000},
         "0.035", "cohere.com/pricing: Command R+ 08-2024 $2.50 in / $10 out"),
]  # fmt: skip


def test_enough_cases_across_providers() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    for prefix in ("openai", "anthropic", "gcp."):
        assert sum(c.provider.startswith(prefix) for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_price_matches_published(catalog: PriceCatalog, case: Case) -> None:
    call = make_call(case.provider, case.model, case.at, batch=case.batch, service_tier=case.service_tier, **case.usage)
    cost = catalog.price(call)
    assert cost is not None, f"unpriced: {case.provider}/{case.model}"
    expected = Decimal(case.expected)
    assert abs(cost.total - expected) <= expected * Decimal("0.001"), (cost, case.source)
    assert sum(cost.parts.values(), Decimal(0)) == cost.total
    assert set(cost.parts) <= set(COST_CLASSES)
    assert all(isinstance(v, Decimal) and v != 0 for v in cost.parts.values())


# ---------------------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------------------


def test_parts_split_each_class_once(catalog: PriceCatalog) -> None:
    call = make_call(
        "openai",
        "gpt-4o-realtime-preview",
        input_tokens=10_000,
        cache_read_tokens=1_000,
        input_audio_tokens=8_000,
        output_tokens=5_000,
        output_audio_tokens=4_000,
    )
    cost = catalog.price(call)
    assert cost is not None
    assert cost.parts == {
        "input": Decimal("0.005"),  # 1,000 text tokens at $5
        "cache_read": Decimal("0.0025"),  # 1,000 at $2.50
        "input_audio": Decimal("0.32"),  # 8,000 at $40
        "output": Decimal("0.02"),  # 1,000 text at $20
        "output_audio": Decimal("0.32"),  # 4,000 at $80
    }
    assert cost.total == Decimal("0.6675")
    assert cost.price_source == "catalog"


def test_unknown_model_and_provider_are_unpriced(catalog: PriceCatalog) -> None:
    assert catalog.price(make_call("openai", "gpt-99-ultra", input_tokens=10)) is None
    assert catalog.price(make_call("my_vllm", "gpt-4o", input_tokens=10)) is None
    assert catalog.rates("anthropic", "claude-nonexistent", DAY) is None


def test_empty_provider_is_guessed_from_model(catalog: PriceCatalog) -> None:
    cost = catalog.price(make_call("", "claude-3-haiku-20240307", input_tokens=1_000_000))
    assert cost is not None and cost.total == Decimal("0.25")


def test_zero_usage_of_a_known_model_costs_zero(catalog: PriceCatalog) -> None:
    cost = catalog.price(make_call("openai", "gpt-4o"))
    assert cost is not None and cost.total == 0 and cost.parts == {}


def test_streaming_and_non_streaming_cost_the_same(catalog: PriceCatalog) -> None:
    usage = {"input_tokens": 1_234, "cache_read_tokens": 200, "output_tokens": 567, "reasoning_tokens": 100}
    plain = catalog.price(make_call("openai", "gpt-5", **usage))
    streamed = catalog.price(make_call("openai", "gpt-5", streaming=True, **usage))
    assert plain is not None and plain == streamed


def test_rates_are_resolved_once_and_cached(catalog: PriceCatalog) -> None:
    first = catalog.rates("gcp.gemini", "gemini-2.5-pro", DAY)
    again = catalog.rates("gcp.gemini", "gemini-2.5-pro", DAY.replace(hour=20))
    assert isinstance(first, Rates) and first is again
    assert first.source == "catalog" and first.model == "gemini-2.5-pro" and first.provider == "google"
    assert first.input == Decimal("1.25e-6")
    assert [t.threshold for t in first.long_context] == [200_000]
    assert first.long_context[0].rates.output == Decimal("15e-6")


def test_time_of_day_prices_split_the_day(catalog: PriceCatalog) -> None:
    at = datetime(2025, 8, 1, tzinfo=UTC)
    peak = catalog.rates("deepseek", "deepseek-chat", at.replace(hour=10))
    off_peak = catalog.rates("deepseek", "deepseek-chat", at.replace(hour=16, minute=45))
    assert peak is not None and off_peak is not None
    assert peak.input == 2 * off_peak.input


def test_inconsistent_usage_prices_what_it_can(catalog: PriceCatalog, caplog: pytest.LogCaptureFixture) -> None:
    call = make_call("openai", "gpt-4o-mini", input_tokens=100, cache_read_tokens=1_000, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="llmmeter_collector.pricing.catalog"):
        cost = catalog.price(call)
    assert cost is not None
    assert "input" not in cost.parts
    assert cost.parts["cache_read"] == Decimal("0.000075")
    assert "inconsistent usage" in caplog.text


def test_batch_without_a_discount_rule_is_standard(catalog: PriceCatalog) -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    batch = catalog.price(make_call("groq", "llama-3.1-8b-instant", batch=True, **usage))
    standard = catalog.price(make_call("groq", "llama-3.1-8b-instant", **usage))
    assert batch is not None and batch == standard


def test_gemini_batch_keeps_context_cache_reads_at_standard(catalog: PriceCatalog) -> None:
    rates = catalog.rates("gcp.gemini", "gemini-2.0-flash", DAY, batch=True)
    assert rates is not None
    assert rates.input == Decimal("0.05e-6") and rates.cache_read == Decimal("0.025e-6")
    assert any("batch: llmmeter rule" in note for note in rates.notes)


def test_priority_without_a_known_price_is_standard_and_warned(
    catalog: PriceCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmmeter_collector.pricing.catalog"):
        rates = catalog.rates("openai", "o1", DAY, service_tier="priority")
    assert rates is not None and rates.input == Decimal("15e-6")
    assert "no priority-tier price" in caplog.text


def test_catalog_variants_in_force_are_used(catalog: PriceCatalog) -> None:
    """After the catalog's own variant dates, its batch / priority prices apply directly."""
    later = datetime(2026, 11, 2, 9, tzinfo=UTC)
    usage = {"input_tokens": 1_000_000, "output_tokens": 100_000}
    batch = catalog.price(make_call("openai", "gpt-4o-mini", later, batch=True, **usage))
    priority = catalog.price(make_call("openai", "gpt-5", later, service_tier="Priority", **usage))
    assert batch is not None and batch.total == Decimal("0.105")  # $0.075 in / $0.30 out
    assert priority is not None and priority.total == Decimal("4.5")  # $2.50 in / $20 out
    rates = catalog.rates("openai", "gpt-5", later.replace(tzinfo=None), service_tier="priority")
    assert rates is not None and any("catalog variant" in note for note in rates.notes)


def test_catalog_version_names_the_bundled_snapshot(catalog: PriceCatalog) -> None:
    assert catalog.catalog_version.startswith("genai-prices 0.2.3 (snapshot 20")


def test_never_uses_an_auto_updated_snapshot(catalog: PriceCatalog) -> None:
    from genai_prices import data_snapshot
    from genai_prices.types import ClauseEquals, ModelInfo, ModelPrice, Provider

    fake = Provider(
        id="openai",
        name="fake",
        api_pattern="x",
        models=[
            ModelInfo(id="gpt-4o", match=ClauseEquals(equals="gpt-4o"), prices=ModelPrice(input_mtok=Decimal(999)))
        ],
    )
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=[fake], from_auto_update=True))
    try:
        fresh = PriceCatalog()
        cost = fresh.price(make_call("openai", "gpt-4o", input_tokens=1_000_000))
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert cost is not None and cost.total == Decimal("2.5")
    assert not any(t.name == "genai_prices:update" for t in threading.enumerate())


# ---------------------------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_is_valid() -> None:
    assert check_price_file(EXAMPLE_FILE) == []
    catalog = PriceCatalog(EXAMPLE_FILE)
    mapped = catalog.price(make_call("azure.ai.openai", "prod-gpt4o-eastus", input_tokens=1_000_000))
    assert mapped is not None and mapped.total == Decimal("2.5") and mapped.price_source == "override"


def test_override_prices_a_custom_model_per_token(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - model: "ft:gpt-4o-mini-2024-07-18:acme:*"
    provider: openai
    input_per_mtok: 0.30
    cache_read_per_mtok: 0.15
    output_per_mtok: 1.20
    per_request: 0.001
""",
    )
    catalog = PriceCatalog(path)
    call = make_call(
        "openai", "ft:gpt-4o-mini-2024-07-18:acme:v2:abc", input_tokens=1_000, cache_read_tokens=500, output_tokens=100
    )
    cost = catalog.price(call)
    assert cost is not None and cost.price_source == "override"
    assert cost.parts == {
        "input": Decimal("0.00015"),
        "cache_read": Decimal("0.000075"),
        "output": Decimal("0.00012"),
        "request": Decimal("0.001"),
    }
    # provider scoping: the same name from another provider is not this override
    assert catalog.price(make_call("groq", "ft:gpt-4o-mini-2024-07-18:acme:v2:abc", input_tokens=1)) is None


def test_override_regex_and_per_hour(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - model_regex: "llama-3\\\\.1-70b(-instruct)?"
    provider: vllm
    per_hour: 3.6
""",
    )
    catalog = PriceCatalog(path)
    cost = catalog.price(make_call("vllm", "Llama-3.1-70B-Instruct", duration_s=2.5, input_tokens=50, output_tokens=5))
    assert cost is not None and cost.parts == {"request": Decimal("0.0025")}  # 2.5 s at $3.60 / h
    assert catalog.price(make_call("vllm", "llama-3.1-70b-base", input_tokens=1)) is None


def test_override_beats_catalog_and_exact_beats_glob(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - model: "gpt-4o*"
    input_per_mtok: 1
    output_per_mtok: 1
  - model: gpt-4o
    input_per_mtok: 2
    output_per_mtok: 2
""",
    )
    catalog = PriceCatalog(path)
    exact = catalog.price(make_call("openai", "gpt-4o", input_tokens=1_000_000))
    glob = catalog.price(make_call("openai", "gpt-4o-mini", input_tokens=1_000_000))
    assert exact is not None and exact.total == Decimal("2")
    assert glob is not None and glob.total == Decimal("1")


def test_override_long_context_tier(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - model: acme-long
    input_per_mtok: 1
    output_per_mtok: 2
    long_context: {threshold: 1000, input_per_mtok: 10}
""",
    )
    catalog = PriceCatalog(path)
    short = catalog.price(make_call("acme", "acme-long", input_tokens=1_000, output_tokens=1_000))
    long = catalog.price(make_call("acme", "acme-long", input_tokens=1_001, output_tokens=1_000))
    assert short is not None and short.total == Decimal("0.003")
    assert long is not None and long.total == Decimal("0.01201")  # input at the tier, output keeps its price


def test_discounts_by_provider_and_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - model: acme-model
    provider: openai
    input_per_mtok: 10
    output_per_mtok: 10
discounts:
  - provider: openai
    percent: 10
  - provider: openai
    model: gpt-4o
    percent: 25
""",
    )
    catalog = PriceCatalog(path)
    tokens = {"input_tokens": 1_000_000}
    assert total_of(catalog, make_call("openai", "gpt-4o", **tokens)) == Decimal("1.875")
    assert total_of(catalog, make_call("openai", "gpt-4o-mini", **tokens)) == Decimal("0.135")
    assert total_of(catalog, make_call("openai", "acme-model", **tokens)) == Decimal("9")
    assert total_of(catalog, make_call("anthropic", "claude-3-haiku", **tokens)) == Decimal("0.25")


def test_effective_dates_pick_the_entry_in_force(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - model: acme
    input_per_mtok: 1
    output_per_mtok: 1
    effective_to: 2026-01-01
  - model: acme
    input_per_mtok: 2
    output_per_mtok: 2
    effective_from: 2026-01-01
    effective_to: 2026-02-01T12:00:00Z
discounts:
  - percent: 50
    effective_from: 2026-03-01
""",
    )
    catalog = PriceCatalog(path)

    def total(at: datetime) -> Decimal | None:
        cost = catalog.price(make_call("acme", "acme", at, input_tokens=1_000_000))
        return None if cost is None else cost.total

    assert total(datetime(2025, 12, 31, 23, 59, tzinfo=UTC)) == Decimal("1")
    assert total(datetime(2026, 1, 1, tzinfo=UTC)) == Decimal("2")
    assert total(datetime(2026, 2, 1, 11, 59, tzinfo=UTC)) == Decimal("2")
    assert total(datetime(2026, 2, 1, 12, 0, tzinfo=UTC)) is None  # no price in force: unpriced, not zero
    later = make_call("openai", "gpt-4o", datetime(2026, 3, 2, tzinfo=UTC), input_tokens=1_000_000)
    assert total_of(catalog, later) == Decimal("1.25")


def test_overrides_only_without_catalog(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - model: acme\n    input_per_mtok: 1\n    output_per_mtok: 1\n")
    catalog = PriceCatalog(path, use_catalog=False)
    assert catalog.price(make_call("openai", "gpt-4o", input_tokens=10)) is None
    assert total_of(catalog, make_call("x", "acme", input_tokens=1_000_000)) == Decimal("1")


def test_batch_rule_applies_to_override_prices(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - model: ft:acme\n    input_per_mtok: 4\n    output_per_mtok: 8\n")
    cost = PriceCatalog(path).price(make_call("openai", "ft:acme", batch=True, input_tokens=1_000_000))
    assert cost is not None and cost.total == Decimal("2")


def test_reload_applies_changes_and_keeps_the_last_good_set(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - model: acme\n    input_per_mtok: 1\n    output_per_mtok: 1\n")
    catalog = PriceCatalog(path)
    call = make_call("x", "acme", input_tokens=1_000_000)
    assert total_of(catalog, call) == Decimal("1")
    path.write_text("models:\n  - model: acme\n    input_per_mtok: 3\n    output_per_mtok: 1\n", encoding="utf-8")
    catalog.reload()
    assert total_of(catalog, call) == Decimal("3")
    path.write_text("models:\n  - model: acme\n    input_per_mtok: -3\n    output_per_mtok: 1\n", encoding="utf-8")
    with pytest.raises(PriceError) as excinfo:
        catalog.reload()
    assert "models[0].input_per_mtok" in str(excinfo.value)
    assert total_of(catalog, call) == Decimal("3")


def test_bad_file_at_start_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - model: acme\n    input_per_mtok: 1\n    output_per_mtok: 1\n    colour: red\n")
    with pytest.raises(PriceError, match=r"prices\.yaml:5: models\[0\]\.colour: unknown key"):
        PriceCatalog(path)


BAD_FILES = [
    ("unknown key", "models:\n  - model: a\n    input_per_mtok: 1\n    output_per_mtok: 1\n    inptu_per_mtok: 2\n",
     "prices.yaml:5: models[0].inptu_per_mtok: unknown key"),
    ("wrong type", "models:\n  - model: a\n    input_per_mtok: cheap\n    output_per_mtok: 1\n",
     "prices.yaml:3: models[0].input_per_mtok: must be a number"),
    ("negative", "models:\n  - model: a\n  - model: b\n    input_per_mtok: 1\n    output_per_mtok: -0.5\n",
     "prices.yaml:5: models[1].output_per_mtok: must not be negative"),
    ("missing output", "models:\n  - model: a\n    input_per_mtok: 1\n",
     "models[0].output_per_mtok: required with per-token prices"),
    ("no price", "models:\n  - model: a\n    provider: openai\n", "prices.yaml:2: models[0]: needs a price"),
    ("no model", "models:\n  - input_per_mtok: 1\n    output_per_mtok: 1\n", "models[0]: needs `model`"),
    ("bad regex", "models:\n  - model_regex: 'gpt-(4'\n    per_hour: 1\n",
     "prices.yaml:2: models[0].model_regex: bad regular expression"),
    ("overlap", "models:\n  - model: a\n    input_per_mtok: 1\n    output_per_mtok: 1\n"
     "    effective_to: 2026-02-01\n  - model: a\n    input_per_mtok: 2\n    output_per_mtok: 2\n"
     "    effective_from: 2026-01-01\n", "models[1].effective_from: overlaps models[0]"),
    ("dates reversed", "models:\n  - model: a\n    per_hour: 1\n    effective_from: 2026-02-01\n"
     "    effective_to: 2026-01-01\n", "prices.yaml:5: models[0].effective_to: must be after effective_from"),
    ("bad date", "models:\n  - model: a\n    per_hour: 1\n    effective_from: next tuesday\n",
     "models[0].effective_from: must be a date"),
    ("percent", "discounts:\n  - provider: openai\n    percent: 150\n",
     "prices.yaml:3: discounts[0].percent: must be more than 0 and at most 100"),
    ("discount overlap", "discounts:\n  - provider: openai\n    percent: 10\n  - provider: openai\n    percent: 5\n",
     "discounts[1].effective_from: overlaps discounts[0]"),
    ("price_as with prices", "models:\n  - model: a\n    price_as: gpt-4o\n    per_request: 1\n",
     "models[0].price_as: cannot be combined"),
    ("duplicate key", "models:\n  - model: a\n    per_hour: 1\n    per_hour: 2\n",
     "prices.yaml:4: models[0].per_hour: duplicate key"),
    ("top-level key", "modles: []\n", "prices.yaml:1: modles: unknown key"),
    ("not a list", "models: {model: a}\n", "prices.yaml:1: models: must be a list"),
    ("nan", "models:\n  - model: a\n    per_hour: .nan\n", "models[0].per_hour: must be a finite number"),
    ("bool", "models:\n  - model: a\n    per_hour: yes\n", "models[0].per_hour: must be a number"),
    ("tier threshold", "models:\n  - model: a\n    input_per_mtok: 1\n    output_per_mtok: 1\n"
     "    long_context: {threshold: -5, input_per_mtok: 2}\n", "models[0].long_context.threshold"),
    ("yaml syntax", "models:\n  - model: [a\n", "prices.yaml:3: not valid YAML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD_FILES], ids=[n for n, _, _ in BAD_FILES])
def test_check_price_file_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    problems = check_price_file(path)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(str(path)) for p in problems)
    with pytest.raises(PriceError):
        PriceCatalog(path)


def test_check_price_file_reports_every_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n  - model: a\n    input_per_mtok: -1\n    output_per_mtok: x\n    flavour: 1\n",
    )
    problems = check_price_file(path)
    assert len(problems) == 3
    assert check_price_file(tmp_path / "missing.yaml")[0].endswith("cannot read: No such file or directory")


def test_empty_file_is_valid(tmp_path: Path) -> None:
    assert check_price_file(write(tmp_path, "# nothing yet\n")) == []
