"""OpenAI (and Azure OpenAI) wire format: chat completions, responses, completions, embeddings, batches."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.responses import JSONResponse, Response

from .server import Call, error_response, sse_event
from .usage import (
    Usage,
    answer_text,
    collect_text,
    default_usage,
    own_text,
    placeholder,
    text_deltas,
    wants_tool_call,
)

SYSTEM_FINGERPRINT = "fp_fake"


# -- shared pieces ---------------------------------------------------------------------------------


def chat_usage(usage: Usage) -> dict[str, Any]:
    """Chat/legacy-completions usage: `prompt_tokens` includes cached tokens, as OpenAI reports it."""
    prompt_details: dict[str, Any] = {
        "cached_tokens": usage.cached_tokens,
        "audio_tokens": usage.audio_input_tokens,
    }
    if usage.cache_creation_input_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_creation_input_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": usage.audio_output_tokens,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _model(call: Call) -> str:
    return str(call.json.get("model") or call.path_params.get("deployment") or "gpt-fake")


def _function_tools(tools: Any) -> list[dict[str, Any]]:
    """Function tools as `{"name", "parameters"}`, from chat (`{"function": {...}}`) or responses shape."""
    found = []
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        spec: dict[str, Any] = tool["function"] if isinstance(tool.get("function"), dict) else tool
        if spec.get("name"):
            found.append({"name": spec["name"], "parameters": spec.get("parameters") or {}})
    return found


def _tool_arguments(tool: dict[str, Any]) -> str:
    arguments = placeholder(tool["parameters"])
    if isinstance(tool["parameters"], dict) and "location" in tool["parameters"].get("properties", {}):
        arguments = {**(arguments or {}), "location": "Paris"}
    return json.dumps(arguments if isinstance(arguments, dict) else {})


def _structured_text(response_format: Any) -> str | None:
    """JSON content for `response_format`/`text.format` json_schema / json_object, else None."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema", response_format)
        return json.dumps(placeholder(spec.get("schema", {})))
    if response_format.get("type") == "json_object":
        return json.dumps({"answer": "Fake answer"})
    return None


# -- chat completions ------------------------------------------------------------------------------


def _chat_plan(call: Call) -> tuple[Usage, str | None, dict[str, Any] | None]:
    """Usage, answer text and (or) tool call for a chat completion request body."""
    body = call.json
    messages = body.get("messages") or []
    default = default_usage(
        [t for m in messages for t in collect_text(m)],
        body.get("max_tokens"),
        body.get("max_completion_tokens"),
    )
    usage = call.usage(default)
    tools = _function_tools(body.get("tools"))
    last = messages[-1] if messages else {}
    last_texts = own_text(last) if isinstance(last, dict) and last.get("role") == "user" else []
    if wants_tool_call(bool(tools), last_texts, call.tool_call_header):
        tool = tools[0]
        tool_call = {
            "id": call.new_id("call_fake"),
            "type": "function",
            "function": {"name": tool["name"], "arguments": _tool_arguments(tool)},
        }
        return usage, None, tool_call
    text = _structured_text(body.get("response_format")) or answer_text(usage.visible_output_tokens)
    return usage, text, None


def chat_completion_body(call: Call) -> dict[str, Any]:
    """A complete `chat.completion` object for the request (also used for batch output lines)."""
    usage, text, tool_call = _chat_plan(call)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if tool_call is not None:
        message["tool_calls"] = [tool_call]
    count = body_n(call)
    return {
        "id": call.new_id("chatcmpl-fake"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _model(call),
        "choices": [
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_call else "stop",
            }
            for index in range(count)
        ],
        "usage": chat_usage(usage),
        "service_tier": call.json.get("service_tier") or "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def body_n(call: Call) -> int:
    n = call.json.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def chat_completions(call: Call) -> Response:
    if not call.json.get("messages"):
        return error_response("openai", 400, "Missing required parameter: 'messages'.")
    if not call.json.get("stream"):
        return JSONResponse(chat_completion_body(call))
    usage, text, tool_call = _chat_plan(call)
    include_usage = bool((call.json.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": call.new_id("chatcmpl-fake"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": _model(call),
        "service_tier": call.json.get("service_tier") or "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        data = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return sse_event(data)

    events = []
    if tool_call is not None:
        head = {**tool_call, "function": {"name": tool_call["function"]["name"], "arguments": ""}}
        events.append(chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, **head}]}))
        arguments = tool_call["function"]["arguments"]
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        events.append(chunk({}, "tool_calls"))
    else:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        events.extend(chunk({"content": piece}) for piece in text_deltas(text or ""))
        events.append(chunk({}, "stop"))
    if include_usage:
        events.append(sse_event({**base, "choices": [], "usage": chat_usage(usage)}))
    events.append(sse_event("[DONE]"))
    return call.sse(events)


ROUTES: list[tuple[str, list[str], Any]] = [
    ("/v1/chat/completions", ["POST"], chat_completions),
    ("/openai/deployments/{deployment}/chat/completions", ["POST"], chat_completions),
]
