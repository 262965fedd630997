"""Reading OpenAI requests and responses: request attributes, prompt, usage, output, per API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmmeter import options, semconv
from llmmeter.content import Message, Prompt, output_attributes, text_part, tool_call_part, tool_response_part
from llmmeter.invocation import Invocation, TokenUsage
from llmmeter.server import base_url_endpoints

_REQUEST_PARAMS = {
    "max_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "temperature": semconv.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": semconv.GEN_AI_REQUEST_TOP_P,
    "seed": semconv.GEN_AI_REQUEST_SEED,
    "frequency_penalty": semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": semconv.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "n": semconv.GEN_AI_REQUEST_CHOICE_COUNT,
    "service_tier": semconv.GEN_AI_OPENAI_REQUEST_SERVICE_TIER,
}


def get(obj: Any, key: str) -> Any:
    """A field of an SDK object or of the dict the app passed."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _provider_of(client: Any) -> str:
    """``azure.ai.openai`` for Azure OpenAI clients, ``openai`` otherwise."""
    return semconv.PROVIDER_AZURE_OPENAI if "Azure" in type(client).__name__ else semconv.PROVIDER_OPENAI


endpoint = base_url_endpoints(_provider_of)  # provider and server of a resource, cached per client


def request_attributes(instance: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes known before the call: server, request parameters, tools sent, streaming."""
    attrs: dict[str, Any] = {}
    for param, value in kwargs.items():  # a call passes a few of the many parameters: loop over those
        attr = _REQUEST_PARAMS.get(param)
        if attr is not None and isinstance(value, str | int | float) and not isinstance(value, bool):
            attrs[attr] = value
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list | tuple):
        attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    tools = kwargs.get("tools")
    if isinstance(tools, list | tuple):
        attrs[semconv.TOOL_DEFINITIONS] = len(tools)
    attrs[semconv.GEN_AI_REQUEST_STREAM] = kwargs.get("stream") is True
    return attrs


def embeddings_request_attributes(instance: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attrs = request_attributes(instance, kwargs)
    fmt = kwargs.get("encoding_format")
    if isinstance(fmt, str):
        attrs[semconv.GEN_AI_REQUEST_ENCODING_FORMATS] = [fmt]
    return attrs


# --- prompts ---------------------------------------------------------------------------------------------


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list | tuple):
        for item in content:
            text = get(item, "text")
            if isinstance(text, str):
                parts.append(text_part(text))
            elif isinstance(item, str):
                parts.append(text_part(item))
            else:
                parts.append({"type": str(get(item, "type") or "blob")})
    return parts


def chat_prompt(kwargs: Mapping[str, Any]) -> Prompt:
    prompt = Prompt()
    for msg in kwargs.get("messages") or ():
        role = str(get(msg, "role") or "user")
        if role == "developer":
            role = "system"
        parts = _content_parts(get(msg, "content"))
        for call in get(msg, "tool_calls") or ():
            fn = get(call, "function")
            parts.append(tool_call_part(get(call, "id"), get(fn, "name"), get(fn, "arguments")))
        if role == "tool":
            parts = [tool_response_part(get(msg, "tool_call_id"), get(msg, "content"))]
        prompt.messages.append(Message(role, parts))
    return prompt


def responses_prompt(kwargs: Mapping[str, Any]) -> Prompt:
    prompt = Prompt()
    instructions = kwargs.get("instructions")
    if isinstance(instructions, str):
        prompt.system.append(instructions)
    items = kwargs.get("input")
    if isinstance(items, str):
        prompt.messages.append(Message("user", [text_part(items)]))
        return prompt
    for item in items or ():
        kind = get(item, "type")
        if kind == "function_call_output":
            prompt.messages.append(Message("tool", [tool_response_part(get(item, "call_id"), get(item, "output"))]))
        elif kind == "function_call":
            call = tool_call_part(get(item, "call_id"), get(item, "name"), get(item, "arguments"))
            prompt.messages.append(Message("assistant", [call]))
        else:
            role = str(get(item, "role") or "user")
            prompt.messages.append(
                Message("system" if role == "developer" else role, _content_parts(get(item, "content")))
            )
    return prompt


def completions_prompt(kwargs: Mapping[str, Any]) -> Prompt:
    value = kwargs.get("prompt")
    texts = [value] if isinstance(value, str) else [v for v in (value or ()) if isinstance(v, str)]
    return Prompt(messages=[Message("user", [text_part(t) for t in texts])])


# --- usage ----------------------------------------------------------------------------------------------


def chat_usage(usage: Any) -> TokenUsage | None:
    """Chat/Completions usage: prompt_tokens already includes cached tokens, as the convention wants."""
    if usage is None:
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return TokenUsage(  # positional (this runs on the call path): the fields in TokenUsage's order
        usage.prompt_tokens,
        usage.completion_tokens,
        getattr(prompt_details, "cached_tokens", None),  # cache read
        getattr(prompt_details, "cache_write_tokens", None) or None,  # cache write
        None,  # 1-hour cache write: Anthropic only
        getattr(completion_details, "reasoning_tokens", None),
        getattr(prompt_details, "audio_tokens", None),
        getattr(completion_details, "audio_tokens", None),
    )


def responses_usage(usage: Any) -> TokenUsage | None:
    """Responses API usage: input_tokens includes cached tokens, output_tokens includes reasoning."""
    if usage is None:
        return None
    input_details = getattr(usage, "input_tokens_details", None)
    output_details = getattr(usage, "output_tokens_details", None)
    return TokenUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=getattr(input_details, "cached_tokens", None),
        cache_write_tokens=getattr(input_details, "cache_write_tokens", None) or None,
        reasoning_tokens=getattr(output_details, "reasoning_tokens", None),
    )


# --- ending a span from a complete response ----------------------------------------------------------------


def _tier(result: Any, attrs: dict[str, Any]) -> None:
    tier = getattr(result, "service_tier", None)
    if isinstance(tier, str) and tier:
        attrs[semconv.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER] = tier


def end_chat(invocation: Invocation, result: Any) -> None:
    choices = getattr(result, "choices", None) or ()
    reasons = []
    tool_calls = 0
    for choice in choices:
        reason = getattr(choice, "finish_reason", None)
        if reason:
            reasons.append(reason)
        calls = getattr(choice.message, "tool_calls", None)
        if calls:
            tool_calls += len(calls)
    attrs: dict[str, Any] = {}
    if tool_calls:
        attrs[semconv.TOOL_CALLS] = tool_calls
    _tier(result, attrs)
    opts = options.current
    if opts.capture_content:
        outputs = []
        for c in choices:
            message = c.message
            parts = [text_part(message.content)] if isinstance(message.content, str) else []
            for call in message.tool_calls or ():
                fn = getattr(call, "function", None)
                parts.append(tool_call_part(call.id, getattr(fn, "name", None), getattr(fn, "arguments", None)))
            outputs.append(Message("assistant", parts, c.finish_reason))
        attrs.update(output_attributes(outputs, opts))
    invocation.end(
        response_model=getattr(result, "model", None),
        response_id=getattr(result, "id", None),
        finish_reasons=reasons,
        usage=chat_usage(getattr(result, "usage", None)),
        attributes=attrs,
    )


def end_completion(invocation: Invocation, result: Any) -> None:
    choices = getattr(result, "choices", None) or ()
    attrs: dict[str, Any] = {}
    opts = options.current
    if opts.capture_content:
        outputs = [Message("assistant", [text_part(c.text)], c.finish_reason) for c in choices]
        attrs.update(output_attributes(outputs, opts))
    invocation.end(
        response_model=getattr(result, "model", None),
        response_id=getattr(result, "id", None),
        finish_reasons=[c.finish_reason for c in choices if getattr(c, "finish_reason", None)],
        usage=chat_usage(getattr(result, "usage", None)),
        attributes=attrs,
    )


def response_finish_reason(response: Any) -> str | None:
    status = getattr(response, "status", None)
    if status == "incomplete":
        reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
        return str(reason or "incomplete")
    return str(status) if status else None


def response_attributes(response: Any) -> dict[str, Any]:
    """Tool calls, service tier and (when captured) output of a Responses API ``Response``."""
    attrs: dict[str, Any] = {}
    output = getattr(response, "output", None) or ()
    tool_calls = sum(1 for item in output if str(getattr(item, "type", "")).endswith("_call"))
    if tool_calls:
        attrs[semconv.TOOL_CALLS] = tool_calls
    _tier(response, attrs)
    opts = options.current
    if opts.capture_content:
        parts: list[dict[str, Any]] = []
        for item in output:
            kind = getattr(item, "type", None)
            if kind == "message":
                parts.extend(text_part(c.text) for c in item.content or () if isinstance(getattr(c, "text", None), str))
            elif kind == "function_call":
                parts.append(tool_call_part(item.call_id, item.name, item.arguments))
        attrs.update(output_attributes([Message("assistant", parts, response_finish_reason(response))], opts))
    return attrs


def end_response(invocation: Invocation, result: Any) -> None:
    reason = response_finish_reason(result)
    invocation.end(
        response_model=getattr(result, "model", None),
        response_id=getattr(result, "id", None),
        finish_reasons=[reason] if reason else None,
        usage=responses_usage(getattr(result, "usage", None)),
        attributes=response_attributes(result),
    )


def end_embeddings(invocation: Invocation, result: Any) -> None:
    usage = getattr(result, "usage", None)
    attrs: dict[str, Any] = {}
    data = getattr(result, "data", None) or ()
    if data and isinstance(getattr(data[0], "embedding", None), list):
        attrs[semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(data[0].embedding)
    invocation.end(
        response_model=getattr(result, "model", None),
        usage=TokenUsage(input_tokens=usage.prompt_tokens) if usage is not None else None,
        attributes=attrs,
    )
