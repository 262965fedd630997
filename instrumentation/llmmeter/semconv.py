"""Every attribute name, metric name and unit llmmeter emits or reads, in one place.

The OpenTelemetry GenAI conventions are still being renamed; the SDK emits the names the official
Python instrumentations emit today (semconv v1.37+), and the collector also reads the variants listed
in ``llmmeter_collector.semconv``. llmmeter's own attributes are defined here and used by the SDK,
the collector and the dashboards alike.
"""

from __future__ import annotations

from typing import Final

# --- GenAI semantic conventions (v1.37+) -------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"  # includes cached tokens
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"  # includes reasoning tokens
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
GEN_AI_OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"

# gen_ai.operation.name values
OP_CHAT: Final = "chat"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_EMBEDDINGS: Final = "embeddings"
OP_GENERATE_CONTENT: Final = "generate_content"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_AGENT: Final = "invoke_agent"

# gen_ai.provider.name values
PROVIDER_OPENAI: Final = "openai"
PROVIDER_AZURE_OPENAI: Final = "azure.ai.openai"
PROVIDER_ANTHROPIC: Final = "anthropic"
PROVIDER_GEMINI: Final = "gcp.gemini"
PROVIDER_VERTEX_AI: Final = "gcp.vertex_ai"

# --- llmmeter's own attributes -----------------------------------------------------------------------
PROJECT: Final = "llmmeter.project"
FEATURE: Final = "llmmeter.feature"
ENVIRONMENT: Final = "llmmeter.environment"
EXPERIMENT: Final = "llmmeter.experiment"
VARIANT: Final = "llmmeter.variant"
TAG_PREFIX: Final = "llmmeter.tag."
BILLABLE: Final = "llmmeter.billable"
BATCH: Final = "llmmeter.batch"
USAGE_MISSING: Final = "llmmeter.usage.missing"
RETRIES: Final = "llmmeter.retries"
PROMPT_FINGERPRINT: Final = "llmmeter.prompt.fingerprint"
PROMPT_NAME: Final = "llmmeter.prompt.name"  # llmmeter.attributes(prompt=...) or a LangChain prompt template's name
PROMPT_VERSION: Final = "llmmeter.prompt.version"  # explicit; absent: the collector detects versions by template
PROMPT_TEMPLATE_FINGERPRINT: Final = "llmmeter.prompt.template_fingerprint"  # keyed hash of the template part
PROMPT_SIGNATURE: Final = "llmmeter.prompt.simhash"  # opt-in: a 64-bit SimHash of the prompt's word shingles
CACHE_CREATION_1H_INPUT_TOKENS: Final = "llmmeter.usage.cache_creation_1h.input_tokens"
AUDIO_INPUT_TOKENS: Final = "llmmeter.usage.audio.input_tokens"
AUDIO_OUTPUT_TOKENS: Final = "llmmeter.usage.audio.output_tokens"
TOOL_DEFINITIONS: Final = "llmmeter.tool.definitions"
TOOL_CALLS: Final = "llmmeter.tool.calls"
PROVIDER_BILLED: Final = "llmmeter.provider_billed"
REQUESTED_MODEL: Final = "llmmeter.model.requested"
STREAM_CLOSED_EARLY: Final = "llmmeter.stream.closed_early"  # the app stopped reading: usage may be partial
BATCH_CUSTOM_ID: Final = "llmmeter.batch.custom_id"
BATCH_ID: Final = "llmmeter.batch.id"
COST_USD: Final = "llmmeter.cost.usd"
COST_PART_PREFIX: Final = "llmmeter.cost."  # + "<class>_usd"
COST_UNPRICED: Final = "llmmeter.cost.unpriced"

# attribution keys accepted by llmmeter.attributes(...) -> span attribute
ATTRIBUTION_KEYS: Final[dict[str, str]] = {
    "project": PROJECT,
    "feature": FEATURE,
    "user_id": USER_ID,
    "session_id": SESSION_ID,
    "environment": ENVIRONMENT,
    "experiment": EXPERIMENT,
    "variant": VARIANT,
    "prompt": PROMPT_NAME,
    "prompt_version": PROMPT_VERSION,
}

# --- GenAI client metrics ----------------------------------------------------------------------------
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
# Bucket boundaries advised by the GenAI metrics conventions.
TOKEN_USAGE_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)

# --- LangChain (llmmeter.langchain) ------------------------------------------------------------------
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
LANGCHAIN_RUN_TYPE: Final = "llmmeter.langchain.run_type"  # llm, embeddings, chain, agent, tool, retriever
LANGCHAIN_CACHE_HIT: Final = "llmmeter.langchain.cache_hit"  # answered from LangChain's cache: no provider call
PROVIDER_AWS_BEDROCK: Final = "aws.bedrock"
PROVIDER_AZURE_AI_INFERENCE: Final = "azure.ai.inference"
PROVIDER_COHERE: Final = "cohere"
PROVIDER_DEEPSEEK: Final = "deepseek"
PROVIDER_GROQ: Final = "groq"
PROVIDER_IBM_WATSONX_AI: Final = "ibm.watsonx.ai"
PROVIDER_MISTRAL_AI: Final = "mistral_ai"
PROVIDER_PERPLEXITY: Final = "perplexity"
PROVIDER_X_AI: Final = "x_ai"
