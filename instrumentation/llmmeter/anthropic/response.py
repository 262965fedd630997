"""Reading Anthropic Messages requests and responses: request attributes, prompt, normalised usage, output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmmeter import options, semconv
from llmmeter.content import Message, Prompt, output_attributes, text_part, tool_call_part, tool_response_part
from llmmeter.invocation import Invocation, TokenUsage
from llmmeter.server import base_url_endpoints

_REQUEST_PARAMS = {
    "max_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "temperature": semconv.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": semconv.GEN_AI_REQUEST_TOP_P,
    "top_k": semconv.GEN_AI_REQUEST_TOP_K,
}


def get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _provider_of(client: Any) -> str:
    return semconv.PROVIDER_ANTHROPIC


endpoint = base_url_endpoints(_provider_of)  # provider and server of a resource, cached per client


def request_attributes(instance: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for param, value in kwargs.items():
        attr = _REQUEST_PARAMS.get(param)
        if attr is not None and isinstance(value, int | float) and not isinstance(value, bool):
            attrs[attr] = value
    stop = kwargs.get("stop_sequences")
    if isinstance(stop, list | tuple):
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    tools = kwargs.get("tools")
    if isinstance(tools, list | tuple):
        attrs[semconv.TOOL_DEFINITIONS] = len(tools)
    attrs[semconv.GEN_AI_REQUEST_STREAM] = kwargs.get("stream") is True
    return attrs


def stream_request_attributes(instance: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = request_attributes(instance, kwargs)
    attrs[semconv.GEN_AI_REQUEST_STREAM] = True
    return attrs


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for block in content or ():
        kind = get(block, "type")
        if kind == "text":
            parts.append(text_part(str(get(block, "text"))))
        elif kind == "tool_use":
            parts.append(tool_call_part(get(block, "id"), get(block, "name"), get(block, "input")))
        elif kind == "tool_result":
            parts.append(tool_response_part(get(block, "tool_use_id"), get(block, "content")))
        else:
            parts.append({"type": str(kind or "blob")})
    return parts


def prompt(kwargs: Mapping[str, Any]) -> Prompt:
    result = Prompt()
    system = kwargs.get("system")
    if isinstance(system, str):
        result.system.append(system)
    elif isinstance(system, list | tuple):
        result.system.extend(str(get(b, "text")) for b in system if get(b, "type") == "text")
    for msg in kwargs.get("messages") or ():
        result.messages.append(Message(str(get(msg, "role") or "user"), _blocks(get(msg, "content"))))
    return result


def usage_of(usage: Any, output_tokens: int | None = None) -> TokenUsage | None:
    """Anthropic reports ``input_tokens`` WITHOUT cache reads and writes: the convention's input is the sum.

    ``cache_creation_input_tokens`` is every cache write; ``cache_creation.ephemeral_1h_input_tokens`` the part
    written with a 1-hour TTL (priced higher than 5-minute writes), kept apart.
    """
    if usage is None:
        return None
    uncached = get(usage, "input_tokens") or 0
    cache_read = get(usage, "cache_read_input_tokens") or 0
    cache_write = get(usage, "cache_creation_input_tokens") or 0
    cache_write_1h = get(get(usage, "cache_creation"), "ephemeral_1h_input_tokens")
    thinking = get(get(usage, "output_tokens_details"), "thinking_tokens")
    return TokenUsage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=output_tokens if output_tokens is not None else get(usage, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=thinking,
    )


def message_attributes(message: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    content = get(message, "content") or ()
    tool_calls = sum(1 for b in content if get(b, "type") in ("tool_use", "server_tool_use"))
    if tool_calls:
        attrs[semconv.TOOL_CALLS] = tool_calls
    tier = get(get(message, "usage"), "service_tier")
    if isinstance(tier, str):
        attrs[semconv.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER] = tier
    opts = options.current
    if opts.capture_content:
        attrs.update(output_attributes([Message("assistant", _blocks(content), get(message, "stop_reason"))], opts))
    return attrs


def end_message(invocation: Invocation, message: Any) -> None:
    reason = get(message, "stop_reason")
    invocation.end(
        response_model=get(message, "model"),
        response_id=get(message, "id"),
        finish_reasons=[reason] if reason else None,
        usage=usage_of(get(message, "usage")),
        attributes=message_attributes(message),
    )
