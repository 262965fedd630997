"""Wrapper factories for the patched OpenAI SDK methods, one per call shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llmmeter import semconv
from llmmeter.invocation import Invocation, TokenUsage, log_once
from llmmeter.telemetry import Instruments

_REQUEST_PARAMS = (
    ("max_tokens", semconv.GEN_AI_REQUEST_MAX_TOKENS),
    ("max_completion_tokens", semconv.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", semconv.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", semconv.GEN_AI_REQUEST_TOP_P),
    ("seed", semconv.GEN_AI_REQUEST_SEED),
    ("frequency_penalty", semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", semconv.GEN_AI_REQUEST_PRESENCE_PENALTY),
    ("n", semconv.GEN_AI_REQUEST_CHOICE_COUNT),
    ("service_tier", semconv.GEN_AI_OPENAI_REQUEST_SERVICE_TIER),
)


def provider_of(client: Any) -> str:
    """``azure.ai.openai`` for Azure OpenAI clients, ``openai`` otherwise."""
    return (
        semconv.PROVIDER_AZURE_OPENAI
        if type(client).__name__.startswith("AsyncAzure") or type(client).__name__.startswith("Azure")
        else semconv.PROVIDER_OPENAI
    )


def request_attributes(instance: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes known before the call: server, request parameters, tools sent."""
    attrs: dict[str, Any] = {}
    client = getattr(instance, "_client", None)
    base_url = getattr(client, "base_url", None)
    if base_url is not None:
        attrs[semconv.SERVER_ADDRESS] = base_url.host
        if base_url.port:
            attrs[semconv.SERVER_PORT] = base_url.port
    for param, attr in _REQUEST_PARAMS:
        value = kwargs.get(param)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            attrs[attr] = value
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list):
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    tools = kwargs.get("tools")
    if isinstance(tools, list):
        attrs[semconv.TOOL_DEFINITIONS] = len(tools)
    attrs[semconv.GEN_AI_REQUEST_STREAM] = bool(kwargs.get("stream"))
    return attrs


def chat_usage(usage: Any) -> TokenUsage | None:
    """Chat Completions usage: prompt_tokens already includes cached tokens, as the convention wants."""
    if usage is None:
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return TokenUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=getattr(prompt_details, "cached_tokens", None),
        input_audio_tokens=getattr(prompt_details, "audio_tokens", None),
        reasoning_tokens=getattr(completion_details, "reasoning_tokens", None),
        output_audio_tokens=getattr(completion_details, "audio_tokens", None),
    )


def _end_chat(invocation: Invocation, result: Any) -> None:
    choices = getattr(result, "choices", None) or ()
    reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
    tool_calls = sum(len(getattr(c.message, "tool_calls", None) or ()) for c in choices)
    attrs: dict[str, Any] = {}
    if tool_calls:
        attrs[semconv.TOOL_CALLS] = tool_calls
    tier = getattr(result, "service_tier", None)
    if tier:
        attrs[semconv.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER] = tier
    invocation.end(
        response_model=getattr(result, "model", None),
        response_id=getattr(result, "id", None),
        finish_reasons=reasons,
        usage=chat_usage(getattr(result, "usage", None)),
        attributes=attrs,
    )


def chat_completions_create(inst: Instruments) -> Callable[..., Any]:
    """``Completions.create`` (sync, non-streaming)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if kwargs.get("stream"):
            return wrapped(*args, **kwargs)
        try:
            invocation = Invocation(
                inst,
                semconv.OP_CHAT,
                provider_of(getattr(instance, "_client", None)),
                str(kwargs.get("model", "")),
                request_attributes(instance, kwargs),
            )
        except Exception as exc:
            log_once("openai.chat.start", exc)
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            try:
                invocation.fail(exc)
            except Exception as inner:
                log_once("openai.chat.fail", inner)
            raise
        try:
            _end_chat(invocation, result)
        except Exception as exc:
            log_once("openai.chat.end", exc)
        return result

    return wrapper
