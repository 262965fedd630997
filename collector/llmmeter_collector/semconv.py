"""Names the collector reads (every GenAI naming variant it accepts) and the metric names it exposes.

llmmeter's own attribute names come from ``llmmeter.semconv`` so SDK, collector and dashboards agree.
"""

from __future__ import annotations

from typing import Final

from llmmeter.semconv import *  # noqa: F403 - re-export: one place for every name
from llmmeter.semconv import (
    DEPLOYMENT_ENVIRONMENT_NAME,
    ENVIRONMENT,
    GEN_AI_OPENAI_REQUEST_SERVICE_TIER,
    GEN_AI_OPENAI_RESPONSE_SERVICE_TIER,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_STREAM,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    SESSION_ID,
    USER_ID,
)

# --- variants read, first match wins -----------------------------------------------------------------
# Sources: OpenTelemetry semconv v1.37-v1.41 (gen-ai-spans.md, registry gen-ai.md); the official
# opentelemetry-instrumentation-openai-v2 / -vertexai / -google-genai; OpenLLMetry
# (opentelemetry-semantic-conventions-ai SpanAttributes: llm.request.type, llm.usage.*, llm.is_streaming,
# gen_ai.usage.cache_read_input_tokens); OpenLIT (openlit/semcov/__init__.py: gen_ai.usage.cost,
# gen_ai.request.is_stream, gen_ai.usage.reasoning_tokens, gen_ai.server.time_to_first_token,
# gen_ai.environment, gen_ai.request/response.service_tier; resource telemetry.sdk.name="openlit").
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
STREAM_KEYS: Final = (GEN_AI_REQUEST_STREAM, "gen_ai.request.is_stream", "llm.is_streaming")
TTFC_KEYS: Final = (GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, "gen_ai.server.time_to_first_token")
SERVICE_TIER_KEYS: Final = (
    GEN_AI_OPENAI_RESPONSE_SERVICE_TIER,
    "gen_ai.openai.response.service_tier",
    "gen_ai.response.service_tier",
    GEN_AI_OPENAI_REQUEST_SERVICE_TIER,
    "gen_ai.openai.request.service_tier",
    "gen_ai.request.service_tier",
)
ENVIRONMENT_KEYS: Final = (ENVIRONMENT, "gen_ai.environment")
RESOURCE_ENVIRONMENT_KEYS: Final = (ENVIRONMENT, DEPLOYMENT_ENVIRONMENT_NAME, "deployment.environment")
USER_KEYS: Final = (USER_ID, "gen_ai.request.user", "llm.user")
SESSION_KEYS: Final = (SESSION_ID, "gen_ai.conversation.id")
TELEMETRY_SDK_NAME: Final = "telemetry.sdk.name"
SENDER_OPENLIT: Final = "openlit"

# Operations that are one billable model call. Agent and tool spans are parents, never priced.
# LiteLLM's OpenTelemetry logger names an async call by its LiteLLM function (acompletion, aembedding, ...).
BILLABLE_OPERATIONS: Final = frozenset(
    {
        "chat",
        "text_completion",
        "generate_content",
        "embeddings",
        "completion",
        "embedding",
        "responses",
        "acompletion",
        "aembedding",
        "atext_completion",
    }
)
OPERATION_ALIASES: Final = {
    "completion": "text_completion",
    "embedding": "embeddings",
    "responses": "chat",
    "acompletion": "chat",
    "aembedding": "embeddings",
    "atext_completion": "text_completion",
}

# gen_ai.system / vendor spellings (lower-cased) -> gen_ai.provider.name values.
# OpenLLMetry capitalises ("OpenAI", "Anthropic", "Gemini", "VertexAI", "AWS"); OpenLIT uses the pre-1.37
# gen_ai.system values ("az.ai.openai", "vertex_ai", "gemini", "xai", ...).
PROVIDER_ALIASES: Final = {
    "openai": "openai",
    "azure.ai.openai": "azure.ai.openai",
    "az.ai.openai": "azure.ai.openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azureopenai": "azure.ai.openai",
    "anthropic": "anthropic",
    "gcp.gemini": "gcp.gemini",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "google_genai": "gcp.gemini",
    "google.ai.studio": "gcp.gemini",
    "gcp.vertex_ai": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "gcp.gen_ai": "gcp.gemini",
    "aws.bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
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

# Providers whose API reports input tokens WITHOUT cache reads and writes (Anthropic's ``input_tokens``,
# also through Bedrock). Senders that copy that raw count into gen_ai.usage.input_tokens are listed in
# RAW_INPUT_SENDERS; everyone else follows the convention (input includes cached tokens).
INPUT_EXCLUDES_CACHE: Final = frozenset({"anthropic", "aws.bedrock"})
RAW_INPUT_SENDERS: Final = frozenset({SENDER_OPENLIT})

# --- Prometheus metrics exposed by the collector -----------------------------------------------------
# The prompt's name and version: llmmeter's, and Langfuse's prompt management attributes.
PROMPT_NAME_KEYS: Final = ("llmmeter.prompt.name", "langfuse.observation.prompt.name")
PROMPT_VERSION_KEYS: Final = ("llmmeter.prompt.version", "langfuse.observation.prompt.version")

PROM_COST: Final = "llmmeter_cost_usd"  # counter, exposed as llmmeter_cost_usd_total
PROM_TOKENS: Final = "llmmeter_tokens"  # counter by token type
PROM_CALLS: Final = "llmmeter_calls"  # counter by status
PROM_UNPRICED_CALLS: Final = "llmmeter_unpriced_calls"
PROM_CALL_DURATION: Final = "llmmeter_call_duration_seconds"
PROM_TIME_TO_FIRST_CHUNK: Final = "llmmeter_time_to_first_chunk_seconds"
PROM_BUILD_INFO: Final = "llmmeter_build_info"  # gauge 1 by version, python (exporters/buildinfo.py)
PROM_SPANS_RECEIVED: Final = "llmmeter_collector_spans_received"
PROM_SPANS_REJECTED: Final = "llmmeter_collector_spans_rejected"
PROM_EXPORTS_REFUSED: Final = "llmmeter_collector_exports_refused"
PROM_QUEUE_DEPTH: Final = "llmmeter_collector_queue_spans"
PROM_COMMIT_SECONDS: Final = "llmmeter_collector_commit_duration_seconds"
PROM_SPOOL_BYTES: Final = "llmmeter_collector_spool_bytes"  # gauge: bytes held on disk while Postgres is down
PROM_SPOOLED_CALLS: Final = "llmmeter_collector_spooled_calls"  # counter: calls written to the spool
PROM_POSTGRES_UP: Final = "llmmeter_collector_postgres_up"  # gauge: 1 when the last write or ping succeeded
PROM_FORWARDED_SPANS: Final = "llmmeter_collector_forwarded_spans"
# ledger robustness (ledger/writer.py): refused rows, quarantined spool segments, what keeps the ledger unwritten
PROM_REJECTED_CALLS: Final = "llmmeter_collector_rejected_calls"  # counter{source}: refused by Postgres, dead-lettered
PROM_QUARANTINED_SEGMENTS: Final = "llmmeter_collector_quarantined_segments"  # counter: unreadable spool segments
PROM_STORAGE_PROBLEM: Final = "llmmeter_collector_storage_problem"  # gauge{reason}: 1 while that problem lasts
PROM_FORWARD_DROPPED_SPANS: Final = "llmmeter_collector_forward_dropped_spans"
PROM_DUPLICATE_SPANS: Final = "llmmeter_collector_duplicate_spans"  # counter by scope: a call's second span
PROM_PRICE_RELOADS: Final = "llmmeter_collector_price_reloads"  # counter by result ("ok" / "error")
PROM_REPRICED_CALLS: Final = "llmmeter_repriced_calls"  # counter by reason (manual / new_price): stored calls repriced
PROM_REPRICED_COST: Final = "llmmeter_repriced_usd"  # counter by reason, direction (added / removed): USD moved
# gauges by provider, set by each reconcile against the provider's own usage and cost reports (insights/reconcile.py)
PROM_RECONCILE_COVERAGE: Final = "llmmeter_reconcile_coverage_ratio"  # share of billed spend the ledger holds
PROM_RECONCILE_DRIFT: Final = "llmmeter_reconcile_drift_usd"  # ledger minus billed dollars
PROM_RECONCILE_DRIFT_RATIO: Final = "llmmeter_reconcile_drift_ratio"  # |ledger - billed| / billed
PROM_RECONCILE_BILLED: Final = "llmmeter_reconcile_billed_usd"  # the provider's billed dollars in the window
PROM_RECONCILE_SUCCESS: Final = "llmmeter_reconcile_last_success_timestamp_seconds"
PROM_SDK_CALLS: Final = "llmmeter_collector_sdk_calls"  # counter by scope, version: which SDKs send calls
PROM_RECONCILE_FAILURES: Final = "llmmeter_reconcile_failures"  # counter by provider
# counter by scope and reason: spans with a model or token counts that were not counted as calls (doctor)
PROM_UNRECOGNIZED_GENAI: Final = "llmmeter_unrecognized_genai_spans"
# budgets (label: budget = the budget's name)
PROM_BUDGET_LIMIT: Final = "llmmeter_budget_limit_usd"
PROM_BUDGET_SPENT: Final = "llmmeter_budget_spent_usd"
PROM_BUDGET_UTILIZATION: Final = "llmmeter_budget_utilization_ratio"
PROM_BUDGET_FORECAST: Final = "llmmeter_budget_forecast_usd"  # period-end forecast
PROM_BUDGET_THRESHOLD: Final = "llmmeter_budget_threshold_ratio"  # label threshold="warning"|"exceeded"
CALL_LABELS: Final = ("provider", "model", "project", "feature", "operation")
