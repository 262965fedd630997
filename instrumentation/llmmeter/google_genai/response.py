"""Reading Google Gen AI (Gemini API / Vertex AI) requests and responses: attributes, prompt, usage, output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmmeter import options, semconv
from llmmeter.content import Message, Prompt, output_attributes, text_part, tool_call_part, tool_response_part
from llmmeter.invocation import Invocation, TokenUsage
from llmmeter.server import Endpoint, Endpoints, server_attributes

_CONFIG_PARAMS = (
    ("max_output_tokens", semconv.GEN_AI_REQUEST_MAX_TOKENS),
    ("temperature", semconv.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", semconv.GEN_AI_REQUEST_TOP_P),
    ("top_k", semconv.GEN_AI_REQUEST_TOP_K),
    ("seed", semconv.GEN_AI_REQUEST_SEED),
    ("candidate_count", semconv.GEN_AI_REQUEST_CHOICE_COUNT),
    ("frequency_penalty", semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", semconv.GEN_AI_REQUEST_PRESENCE_PENALTY),
)


def get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if value is None and "_" in key:  # the REST spelling a dict may use
            head, *rest = key.split("_")
            value = obj.get(head + "".join(w.title() for w in rest))
        return value
    return getattr(obj, key, None)


def provider_of(models: Any) -> str:
    """``gcp.vertex_ai`` for a Vertex AI mode client, ``gcp.gemini`` for the Gemini Developer API."""
    client = getattr(models, "_api_client", None)
    return semconv.PROVIDER_VERTEX_AI if getattr(client, "vertexai", False) else semconv.PROVIDER_GEMINI


def model_of(value: Any) -> str:
    name = value if isinstance(value, str) else ""
    return name.rsplit("/", 1)[-1] if name.startswith(("models/", "publishers/", "projects/")) else name


_ENDPOINTS = Endpoints()


def endpoint(models: Any) -> Endpoint:
    """Provider and ``server.address`` / ``server.port`` of a ``Models`` / ``AsyncModels`` client, cached per
    API client and base URL."""
    client = getattr(models, "_api_client", None)
    base_url = getattr(getattr(client, "_http_options", None), "base_url", None)
    cached = _ENDPOINTS.get(client, base_url)
    if cached is not None:
        return cached
    server = server_attributes(base_url) if isinstance(base_url, str) else {}
    return _ENDPOINTS.put(client, base_url, (provider_of(models), server))


def request_attributes(models: Any, kwargs: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    config = kwargs.get("config")
    if config is not None:
        for param, attr in _CONFIG_PARAMS:
            value = get(config, param)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attrs[attr] = value
        stop = get(config, "stop_sequences")
        if isinstance(stop, list | tuple):
            attrs[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
        tools = get(config, "tools")
        if isinstance(tools, list | tuple):
            declared = 0
            for tool in tools:
                declarations = get(tool, "function_declarations")
                declared += len(declarations) if isinstance(declarations, list | tuple) else 1
            attrs[semconv.TOOL_DEFINITIONS] = declared
    attrs[semconv.GEN_AI_REQUEST_STREAM] = stream
    return attrs


def generate_request_attributes(models: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return request_attributes(models, kwargs, False)


def stream_request_attributes(models: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return request_attributes(models, kwargs, True)


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[dict[str, Any]] = []
    for part in get(content, "parts") or ([content] if get(content, "text") is not None else ()):
        if isinstance(part, str):
            parts.append(text_part(part))
            continue
        text = get(part, "text")
        call = get(part, "function_call")
        result = get(part, "function_response")
        if isinstance(text, str):
            parts.append(text_part(text))
        elif call is not None:
            parts.append(tool_call_part(get(call, "id"), get(call, "name"), get(call, "args")))
        elif result is not None:
            parts.append(tool_response_part(get(result, "id"), get(result, "response")))
        else:
            parts.append({"type": "blob"})
    return parts


def prompt(kwargs: Mapping[str, Any]) -> Prompt:
    result = Prompt()
    system = get(kwargs.get("config"), "system_instruction")
    if system is not None:
        result.system.extend(p["content"] for p in _parts(system) if p.get("type") == "text")
    contents = kwargs.get("contents")
    if isinstance(contents, str) or get(contents, "parts") is not None:
        contents = [contents]
    pending_user: list[dict[str, Any]] = []
    for item in contents or ():
        if isinstance(item, str) or (get(item, "text") is not None and get(item, "parts") is None):
            pending_user.extend(_parts(item))  # bare strings/parts form one user turn
            continue
        if pending_user:
            result.messages.append(Message("user", pending_user))
            pending_user = []
        role = str(get(item, "role") or "user")
        result.messages.append(Message("assistant" if role == "model" else role, _parts(item)))
    if pending_user:
        result.messages.append(Message("user", pending_user))
    return result


def _modality(details: Any, modality: str) -> int | None:
    for entry in details or ():
        if str(getattr(getattr(entry, "modality", None), "value", getattr(entry, "modality", ""))) == modality:
            return getattr(entry, "token_count", None)
    return None


def usage_of(meta: Any) -> TokenUsage | None:
    """Gemini's ``candidatesTokenCount`` excludes thoughts: output = candidates + thoughts, reasoning = thoughts.
    Input is the prompt plus tool-use prompt tokens; ``cachedContentTokenCount`` is the cache read."""
    if meta is None or (meta.prompt_token_count is None and meta.candidates_token_count is None):
        return None
    thoughts = meta.thoughts_token_count
    return TokenUsage(
        input_tokens=(meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0),
        output_tokens=(meta.candidates_token_count or 0) + (thoughts or 0),
        cache_read_tokens=meta.cached_content_token_count,
        reasoning_tokens=thoughts,
        input_audio_tokens=_modality(meta.prompt_tokens_details, "AUDIO"),
        output_audio_tokens=_modality(meta.candidates_tokens_details, "AUDIO"),
    )


def candidate_messages(candidates: Any) -> list[Message]:
    messages = []
    for candidate in candidates or ():
        reason = getattr(candidate, "finish_reason", None)
        reason_text = str(getattr(reason, "value", reason)) if reason is not None else None
        messages.append(Message("assistant", _parts(candidate.content) if candidate.content else [], reason_text))
    return messages


def function_calls(candidates: Any) -> int:
    count = 0
    for candidate in candidates or ():
        for part in getattr(candidate.content, "parts", None) or ():
            if getattr(part, "function_call", None) is not None:
                count += 1
    return count


def end_generate(invocation: Invocation, response: Any) -> None:
    candidates = response.candidates
    messages = candidate_messages(candidates)
    attrs: dict[str, Any] = {}
    calls = function_calls(candidates)
    if calls:
        attrs[semconv.TOOL_CALLS] = calls
    attrs.update(output_attributes(messages, options.current))
    invocation.end(
        response_model=response.model_version,
        response_id=response.response_id,
        finish_reasons=[m.finish_reason for m in messages if m.finish_reason],
        usage=usage_of(response.usage_metadata),
        attributes=attrs,
    )


def end_embed(invocation: Invocation, response: Any) -> None:
    meta = getattr(response, "usage_metadata", None)
    tokens = getattr(meta, "prompt_token_count", None)
    embeddings = response.embeddings or []
    if tokens is None:
        counts = [getattr(getattr(e, "statistics", None), "token_count", None) for e in embeddings]
        if counts and all(c is not None for c in counts):
            tokens = int(sum(counts))  # type: ignore[arg-type]
    attrs: dict[str, Any] = {}
    if embeddings and embeddings[0].values:
        attrs[semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(embeddings[0].values)
    invocation.end(usage=TokenUsage(input_tokens=tokens) if tokens is not None else None, attributes=attrs)
