"""Names the collector reads (every GenAI naming variant it accepts) and the metric names it exposes.

llmmeter's own attribute names come from ``llmmeter.semconv`` so SDK, collector and dashboards agree.
"""

from __future__ import annotations

from typing import Final

from llmmeter.semconv import *  # noqa: F403 - re-export: one place for every name
from llmmeter.semconv import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
)

# --- variants read, first match wins -----------------------------------------------------------------
PROVIDER_KEYS: Final = (GEN_AI_PROVIDER_NAME, "gen_ai.system")
OPERATION_KEYS: Final = (GEN_AI_OPERATION_NAME, "llm.request.type")
REQUEST_MODEL_KEYS: Final = (GEN_AI_REQUEST_MODEL, "llm.request.model")
RESPONSE_MODEL_KEYS: Final = (GEN_AI_RESPONSE_MODEL, "llm.response.model")
INPUT_TOKEN_KEYS: Final = (GEN_AI_USAGE_INPUT_TOKENS, "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
OUTPUT_TOKEN_KEYS: Final = (
    GEN_AI_USAGE_OUTPUT_TOKENS,
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
)
CACHE_READ_KEYS: Final = (
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cached_tokens",
    "llm.usage.cache_read_input_tokens",
)
CACHE_WRITE_KEYS: Final = (
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.usage.cache_creation_input_tokens",
)
REASONING_KEYS: Final = (
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.completion_tokens_details.reasoning_tokens",
    "llm.usage.reasoning_tokens",
)
REPORTED_COST_KEYS: Final = ("gen_ai.usage.cost", "llm.cost.total", "llm.usage.total_cost")

# Operations that are one billable model call. Agent and tool spans are parents, never priced.
BILLABLE_OPERATIONS: Final = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "embedding", "responses"}
)
OPERATION_ALIASES: Final = {"completion": "text_completion", "embedding": "embeddings", "responses": "chat"}

# gen_ai.system / vendor spellings -> gen_ai.provider.name values
PROVIDER_ALIASES: Final = {
    "openai": "openai",
    "azure.ai.openai": "azure.ai.openai",
    "az.ai.openai": "azure.ai.openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "gcp.gemini": "gcp.gemini",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "google_genai": "gcp.gemini",
    "gcp.vertex_ai": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "gcp.gen_ai": "gcp.gemini",
    "aws.bedrock": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "mistral_ai": "mistral_ai",
    "mistralai": "mistral_ai",
    "cohere": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x_ai",
    "xai": "x_ai",
    "perplexity": "perplexity",
}

# Providers whose raw input token count excludes cache reads and writes (normalised in the collector).
INPUT_EXCLUDES_CACHE: Final = frozenset({"anthropic", "aws.bedrock"})

# --- Prometheus metrics exposed by the collector -----------------------------------------------------
PROM_COST: Final = "llmmeter_cost_usd"  # counter, exposed as llmmeter_cost_usd_total
PROM_TOKENS: Final = "llmmeter_tokens"  # counter by token type
PROM_CALLS: Final = "llmmeter_calls"  # counter by status
PROM_UNPRICED_CALLS: Final = "llmmeter_unpriced_calls"
PROM_CALL_DURATION: Final = "llmmeter_call_duration_seconds"
PROM_TIME_TO_FIRST_CHUNK: Final = "llmmeter_time_to_first_chunk_seconds"
PROM_SPANS_RECEIVED: Final = "llmmeter_collector_spans_received"
PROM_SPANS_REJECTED: Final = "llmmeter_collector_spans_rejected"
PROM_EXPORTS_REFUSED: Final = "llmmeter_collector_exports_refused"
PROM_QUEUE_DEPTH: Final = "llmmeter_collector_queue_spans"
PROM_COMMIT_SECONDS: Final = "llmmeter_collector_commit_duration_seconds"
# budgets (label: budget = the budget's name)
PROM_BUDGET_LIMIT: Final = "llmmeter_budget_limit_usd"
PROM_BUDGET_SPENT: Final = "llmmeter_budget_spent_usd"
PROM_BUDGET_UTILIZATION: Final = "llmmeter_budget_utilization_ratio"
PROM_BUDGET_FORECAST: Final = "llmmeter_budget_forecast_usd"  # period-end forecast
PROM_BUDGET_THRESHOLD: Final = "llmmeter_budget_threshold_ratio"  # label threshold="warning"|"exceeded"
CALL_LABELS: Final = ("provider", "model", "project", "feature", "operation")
