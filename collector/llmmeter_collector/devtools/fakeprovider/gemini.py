"""Gemini wire format (google-genai): the Developer API and Vertex AI paths, both sharing one answer.

Developer API: `/v1beta/models/{model}:{method}`. Vertex AI: `/v1beta1/projects/{p}/locations/{l}/
publishers/google/models/{model}:{method}` (and `/v1beta1/publishers/google/models/...` for Vertex
express mode with an API key). Methods: generateContent, streamGenerateContent (`?alt=sse`),
countTokens, embedContent, batchEmbedContents and Vertex's predict (embeddings).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from .usage import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    Usage,
    answer_text,
    collect_text,
    count_words,
    default_usage,
    embedding,
    own_text,
    placeholder,
    text_deltas,
    wants_tool_call,
)
from .wire import Call, RouteTable, error_response, sse_event


def usage_metadata(usage: Usage, final: bool = True) -> dict[str, Any]:
    """Gemini's usageMetadata: `promptTokenCount` includes cached tokens, thoughts are NOT candidates.

    Non-final stream chunks carry only the prompt side, as the real API's intermediate chunks do.
    """
    text_input = usage.input_tokens - usage.audio_input_tokens
    prompt_details = [{"modality": "TEXT", "tokenCount": text_input}]
    if usage.audio_input_tokens:
        prompt_details.append({"modality": "AUDIO", "tokenCount": usage.audio_input_tokens})
    body: dict[str, Any] = {"promptTokenCount": usage.input_tokens, "promptTokensDetails": prompt_details}
    if usage.cached_tokens:
        body["cachedContentTokenCount"] = usage.cached_tokens
        body["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached_tokens}]
    if not final:
        body["totalTokenCount"] = usage.input_tokens
        return body
    body["candidatesTokenCount"] = usage.visible_output_tokens
    if usage.audio_output_tokens:
        body["candidatesTokensDetails"] = [
            {"modality": "TEXT", "tokenCount": usage.visible_output_tokens - usage.audio_output_tokens},
            {"modality": "AUDIO", "tokenCount": usage.audio_output_tokens},
        ]
    if usage.reasoning_tokens:
        body["thoughtsTokenCount"] = usage.reasoning_tokens
    body["totalTokenCount"] = usage.total_tokens
    return body


def _get(obj: dict[str, Any], name: str) -> Any:
    """A field by its camelCase name or its snake_case twin: protobuf JSON accepts both, and
    google-genai sends some fields (e.g. `parameters_json_schema`) in snake_case."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return obj.get(name, obj.get(snake))


def _function_declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            found.extend(d for d in _get(tool, "functionDeclarations") or [] if isinstance(d, dict) and d.get("name"))
    return found


def _request_texts(body: dict[str, Any]) -> list[str]:
    return collect_text(_get(body, "systemInstruction")) + collect_text(body.get("contents"))


def _plan(call: Call) -> tuple[Usage, list[dict[str, Any]]]:
    """Usage and the answer's parts for a generateContent request body."""
    body = call.json
    config = _get(body, "generationConfig") or {}
    usage = call.usage(default_usage(_request_texts(body), _get(config, "maxOutputTokens")))
    contents = body.get("contents") or []
    last = contents[-1] if contents else {}
    is_user_turn = isinstance(last, dict) and last.get("role", "user") == "user"
    tools = _function_declarations(body)
    if wants_tool_call(bool(tools), own_text(last) if is_user_turn else [], call.tool_call_header):
        tool = tools[0]
        schema = _get(tool, "parametersJsonSchema") or tool.get("parameters") or {}
        args = placeholder(schema)
        args = args if isinstance(args, dict) else {}
        if "location" in schema.get("properties", {}):
            args["location"] = "Paris"
        return usage, [{"functionCall": {"name": tool["name"], "args": args}}]
    schema = _get(config, "responseJsonSchema") or _get(config, "responseSchema")
    if schema:
        text = json.dumps(placeholder(schema))
    elif _get(config, "responseMimeType") == "application/json":
        text = json.dumps({"answer": "Fake answer"})
    else:
        text = answer_text(usage.visible_output_tokens)
    return usage, [{"text": text}]


def _response(response_id: str, model: str, parts: list[dict[str, Any]], usage: dict[str, Any], finish: bool) -> Any:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id,
    }


def generate_content(call: Call, model: str) -> Response:
    usage, parts = _plan(call)
    return JSONResponse(_response(call.new_id("fake-resp-"), model, parts, usage_metadata(usage), finish=True))


def stream_generate_content(call: Call, model: str) -> Response:
    """SSE `data:` chunks, one word each; only the last has finishReason and the candidate counts."""
    usage, parts = _plan(call)
    response_id = call.new_id("fake-resp-")
    if "text" in parts[0]:
        pieces: list[list[dict[str, Any]]] = [[{"text": p}] for p in text_deltas(parts[0]["text"])] or [[{"text": ""}]]
    else:
        pieces = [parts]
    events = []
    for index, chunk_parts in enumerate(pieces):
        final = index == len(pieces) - 1
        events.append(sse_event(_response(response_id, model, chunk_parts, usage_metadata(usage, final), final)))
    return call.sse(events)


def count_tokens(call: Call, model: str) -> Response:
    body = call.json
    inner = _get(body, "generateContentRequest") or body
    usage = call.usage(default_usage(_request_texts(inner)))
    return JSONResponse(
        {"totalTokens": usage.input_tokens, "promptTokensDetails": usage_metadata(usage)["promptTokensDetails"]}
    )


def _dimensions(config: Any) -> int:
    dims = _get(config, "outputDimensionality") if isinstance(config, dict) else None
    return dims if isinstance(dims, int) and dims > 0 else DEFAULT_EMBEDDING_DIMENSIONS


def _embed_usage(call: Call, texts: list[str]) -> dict[str, Any]:
    tokens = call.usage(default_usage(texts)).input_tokens
    return {"promptTokenCount": tokens, "totalTokenCount": tokens}


def embed_content(call: Call, model: str) -> Response:
    body = call.json
    text = " ".join(collect_text(body.get("content")))
    dims = _dimensions(_get(body, "embedConfig") or body)
    return JSONResponse(
        {
            "embedding": {"values": embedding(text, dims)},
            "usageMetadata": _embed_usage(call, [text]),
            "truncated": False,
        }
    )


def batch_embed_contents(call: Call, model: str) -> Response:
    requests = call.json.get("requests") or []
    texts = [" ".join(collect_text(r.get("content"))) for r in requests]
    vectors = [{"values": embedding(t, _dimensions(r))} for t, r in zip(texts, requests, strict=True)]
    return JSONResponse({"embeddings": vectors, "usageMetadata": _embed_usage(call, texts)})


def predict(call: Call, model: str) -> Response:
    """Vertex `:predict` embeddings; per-instance `token_count`s sum to the request's input tokens."""
    instances = call.json.get("instances") or []
    dims = _dimensions(call.json.get("parameters") or {})
    texts = [" ".join(collect_text(i.get("content"))) for i in instances if isinstance(i, dict)]
    total = call.usage(default_usage(texts)).input_tokens
    counts = [count_words([t]) for t in texts]
    if counts:
        counts[0] += total - sum(counts)
    predictions = [
        {"embeddings": {"values": embedding(t, dims), "statistics": {"token_count": n, "truncated": False}}}
        for t, n in zip(texts, counts, strict=True)
    ]
    return JSONResponse({"predictions": predictions, "metadata": {"billableCharacterCount": sum(map(len, texts))}})


_METHODS = {
    "generateContent": generate_content,
    "streamGenerateContent": stream_generate_content,
    "countTokens": count_tokens,
    "embedContent": embed_content,
    "batchEmbedContents": batch_embed_contents,
    "predict": predict,
}


def model_method(call: Call) -> Response:
    """Dispatch `{model}:{method}` (Starlette cannot route on the part after the colon)."""
    model, _, method = call.path_params["target"].partition(":")
    handler = _METHODS.get(method)
    if handler is None:
        return error_response("gemini", 404, f"Method not found: {method!r}")
    return handler(call, model)


ROUTES: RouteTable = [
    (prefix + "/{target}", ["POST"], model_method)
    for version in ("v1beta", "v1", "v1alpha", "v1beta1")
    for prefix in (
        f"/{version}/models",
        f"/{version}/publishers/google/models",
        f"/{version}/projects/{{project}}/locations/{{location}}/publishers/google/models",
    )
]
