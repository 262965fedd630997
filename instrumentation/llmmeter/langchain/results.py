"""What a LangChain model run reports, read into GenAI terms: provider, model, request parameters, usage.

LangChain describes a run with ``ls_*`` metadata and ``invocation_params`` at start and an ``LLMResult`` at
end. Usage comes from ``AIMessage.usage_metadata`` (LangChain's normalised form: ``input_tokens`` already
includes cache reads and writes), falling back to the provider's raw ``llm_output["token_usage"]`` /
``llm_output["usage"]`` for models that do not fill it (legacy completion LLMs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmmeter import semconv
from llmmeter.invocation import TokenUsage

# LangChain's ``ls_provider`` values -> gen_ai.provider.name (unknown values are passed through as is).
PROVIDERS: Mapping[str, str] = {
    "openai": semconv.PROVIDER_OPENAI,
    "azure": semconv.PROVIDER_AZURE_OPENAI,
    "azure_openai": semconv.PROVIDER_AZURE_OPENAI,
    "azure_ai": semconv.PROVIDER_AZURE_AI_INFERENCE,
    "anthropic": semconv.PROVIDER_ANTHROPIC,
    "google_genai": semconv.PROVIDER_GEMINI,
    "google_gemini": semconv.PROVIDER_GEMINI,
    "google_vertexai": semconv.PROVIDER_VERTEX_AI,
    "google_anthropic_vertex": semconv.PROVIDER_VERTEX_AI,
    "vertexai": semconv.PROVIDER_VERTEX_AI,
    "bedrock": semconv.PROVIDER_AWS_BEDROCK,
    "amazon_bedrock": semconv.PROVIDER_AWS_BEDROCK,
    "bedrock_converse": semconv.PROVIDER_AWS_BEDROCK,
    "cohere": semconv.PROVIDER_COHERE,
    "deepseek": semconv.PROVIDER_DEEPSEEK,
    "groq": semconv.PROVIDER_GROQ,
    "ibm": semconv.PROVIDER_IBM_WATSONX_AI,
    "watsonx": semconv.PROVIDER_IBM_WATSONX_AI,
    "mistral": semconv.PROVIDER_MISTRAL_AI,
    "mistralai": semconv.PROVIDER_MISTRAL_AI,
    "perplexity": semconv.PROVIDER_PERPLEXITY,
    "xai": semconv.PROVIDER_X_AI,
}

# Python package of an integration (``langchain_openai``) -> gen_ai.provider.name, for embeddings classes.
PACKAGE_PROVIDERS: Mapping[str, str] = {
    "langchain_openai": semconv.PROVIDER_OPENAI,
    "langchain_anthropic": semconv.PROVIDER_ANTHROPIC,
    "langchain_google_genai": semconv.PROVIDER_GEMINI,
    "langchain_google_vertexai": semconv.PROVIDER_VERTEX_AI,
    "langchain_aws": semconv.PROVIDER_AWS_BEDROCK,
    "langchain_cohere": semconv.PROVIDER_COHERE,
    "langchain_mistralai": semconv.PROVIDER_MISTRAL_AI,
    "langchain_ibm": semconv.PROVIDER_IBM_WATSONX_AI,
    "langchain_azure_ai": semconv.PROVIDER_AZURE_AI_INFERENCE,
}

_REQUEST_PARAMS = (
    ("temperature", semconv.GEN_AI_REQUEST_TEMPERATURE),
    ("max_tokens", semconv.GEN_AI_REQUEST_MAX_TOKENS),
    ("max_completion_tokens", semconv.GEN_AI_REQUEST_MAX_TOKENS),
    ("max_output_tokens", semconv.GEN_AI_REQUEST_MAX_TOKENS),
    ("top_p", semconv.GEN_AI_REQUEST_TOP_P),
    ("top_k", semconv.GEN_AI_REQUEST_TOP_K),
    ("seed", semconv.GEN_AI_REQUEST_SEED),
    ("frequency_penalty", semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", semconv.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("n", semconv.GEN_AI_REQUEST_CHOICE_COUNT),
)
_LS_PARAMS = (
    ("ls_temperature", semconv.GEN_AI_REQUEST_TEMPERATURE),
    ("ls_max_tokens", semconv.GEN_AI_REQUEST_MAX_TOKENS),
)


def provider_name(ls_provider: object) -> str:
    """The convention's provider value for LangChain's ``ls_provider`` (``langchain`` when it is missing)."""
    if not isinstance(ls_provider, str) or not ls_provider:
        return "langchain"
    key = ls_provider.lower()
    return PROVIDERS.get(key, key)


def request_model(params: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """The requested model: invocation params (``model``, ``model_name``, ``model_id``) or ``ls_model_name``."""
    for key in ("model", "model_name", "model_id", "deployment_name", "azure_deployment"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    value = metadata.get("ls_model_name")
    return value if isinstance(value, str) else ""


def _scalar(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def request_attributes(params: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters known at run start, from invocation params and LangChain's ``ls_*`` metadata."""
    attrs: dict[str, Any] = {}
    for key, attr in _REQUEST_PARAMS:
        value = params.get(key)
        if _scalar(value):
            attrs[attr] = value
    for key, attr in _LS_PARAMS:
        value = metadata.get(key)
        if attr not in attrs and _scalar(value):
            attrs[attr] = value
    stop = params.get("stop") or metadata.get("ls_stop")
    if isinstance(stop, str):
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list | tuple) and stop:
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    tools = params.get("tools")
    if isinstance(tools, list | tuple):
        attrs[semconv.TOOL_DEFINITIONS] = len(tools)
    return attrs


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _get(obj: object, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def usage_from_metadata(usage: Mapping[str, Any]) -> TokenUsage:
    """LangChain ``UsageMetadata``: input includes cache reads/writes, output includes reasoning (as GenAI's)."""
    input_details = usage.get("input_token_details") or {}
    output_details = usage.get("output_token_details") or {}
    cache_write = _int(input_details.get("cache_creation"))
    write_5m = _int(input_details.get("ephemeral_5m_input_tokens"))
    write_1h = _int(input_details.get("ephemeral_1h_input_tokens"))
    if not cache_write and (write_5m or write_1h):
        # langchain-anthropic reports a 5m/1h breakdown instead, with cache_creation 0
        cache_write = (write_5m or 0) + (write_1h or 0)
    return TokenUsage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=_int(input_details.get("cache_read")),
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        reasoning_tokens=_int(output_details.get("reasoning")),
        input_audio_tokens=_int(input_details.get("audio")),
        output_audio_tokens=_int(output_details.get("audio")),
    )


def usage_from_llm_output(llm_output: Mapping[str, Any] | None) -> TokenUsage | None:
    """The provider's raw usage in ``llm_output`` (OpenAI ``token_usage`` or Anthropic-style ``usage``)."""
    if not llm_output:
        return None
    raw = llm_output.get("token_usage") or llm_output.get("usage")
    if not raw:
        return None
    prompt = _int(_get(raw, "prompt_tokens"))
    if prompt is not None:  # OpenAI convention: prompt_tokens includes cached tokens
        prompt_details = _get(raw, "prompt_tokens_details") or {}
        completion_details = _get(raw, "completion_tokens_details") or {}
        return TokenUsage(
            input_tokens=prompt,
            output_tokens=_int(_get(raw, "completion_tokens")),
            cache_read_tokens=_int(_get(prompt_details, "cached_tokens")),
            reasoning_tokens=_int(_get(completion_details, "reasoning_tokens")),
        )
    input_tokens = _int(_get(raw, "input_tokens"))
    if input_tokens is None:
        return None
    cache_read = _int(_get(raw, "cache_read_input_tokens"))
    cache_write = _int(_get(raw, "cache_creation_input_tokens"))
    if cache_read is not None or cache_write is not None:  # Anthropic convention: input excludes cache
        input_tokens += (cache_read or 0) + (cache_write or 0)
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=_int(_get(raw, "output_tokens")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


class RunResult:
    """Everything the end of a model run reports, read once from an ``LLMResult``."""

    __slots__ = ("cache_hit", "finish_reasons", "response_id", "response_model", "tool_calls", "usage")

    def __init__(self, response: Any) -> None:
        self.usage: TokenUsage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.tool_calls = 0
        self.cache_hit = False
        llm_output = getattr(response, "llm_output", None)
        llm_output = llm_output if isinstance(llm_output, Mapping) else None
        for generations in getattr(response, "generations", None) or ():
            for generation in generations:
                self._read_generation(generation)
        if self.usage is None:
            self.usage = usage_from_llm_output(llm_output)
        if llm_output:
            self.response_model = self.response_model or _str(llm_output.get("model_name") or llm_output.get("model"))
            self.response_id = self.response_id or _str(llm_output.get("id"))

    def _read_generation(self, generation: Any) -> None:
        info = getattr(generation, "generation_info", None) or {}
        message = getattr(generation, "message", None)
        metadata: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        usage = getattr(message, "usage_metadata", None)
        # n > 1 choices each carry the whole response's usage: take it once, never sum it.
        if usage and self.usage is None:
            self.usage = usage_from_metadata(usage)
            # LangChain zeroes ``total_cost`` on answers replayed from its LLM cache: no provider call happened.
            self.cache_hit = usage.get("total_cost") == 0
        reason = metadata.get("finish_reason") or metadata.get("stop_reason") or info.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.finish_reasons.append(reason)
        self.tool_calls += len(getattr(message, "tool_calls", None) or ())
        if self.response_model is None:
            self.response_model = _str(metadata.get("model_name") or metadata.get("model") or info.get("model_name"))
        if self.response_id is None:
            self.response_id = _str(metadata.get("id"))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
