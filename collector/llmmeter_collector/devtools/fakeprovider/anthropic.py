"""Anthropic Messages API wire format: messages (+ SSE stream), count_tokens, message batches."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.responses import JSONResponse, Response

from .reports import bill
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
from .wire import Call, RouteTable, error_response, sse_event


def anthropic_usage(usage: Usage, service_tier: str = "standard") -> dict[str, Any]:
    """Anthropic's usage: `input_tokens` EXCLUDES cache reads and writes, which are reported beside it."""
    body: dict[str, Any] = {
        "input_tokens": usage.uncached_input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_creation_5m_input_tokens,
            "ephemeral_1h_input_tokens": usage.cache_creation_1h_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "service_tier": service_tier,
        "server_tool_use": None,
    }
    if usage.reasoning_tokens:
        body["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return body


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Client tools (those with an `input_schema`); server tools such as web search are skipped."""
    return [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]


def _plan(call: Call) -> tuple[Usage, list[dict[str, Any]], str]:
    """Usage, content blocks and stop reason for a messages request body."""
    body = call.json
    messages = body.get("messages") or []
    texts = collect_text(body.get("system")) + [t for m in messages for t in collect_text(m)]
    usage = bill(call, call.usage(default_usage(texts, body.get("max_tokens"))))
    tools = _tools(body)
    last = messages[-1] if messages else {}
    last_texts = own_text(last) if isinstance(last, dict) and last.get("role") == "user" else []
    if wants_tool_call(bool(tools), last_texts, call.tool_call_header):
        tool = tools[0]
        arguments = placeholder(tool["input_schema"])
        arguments = arguments if isinstance(arguments, dict) else {}
        if "location" in tool["input_schema"].get("properties", {}):
            arguments["location"] = "Paris"
        block = {"type": "tool_use", "id": call.new_id("toolu_fake"), "name": tool["name"], "input": arguments}
        return usage, [block], "tool_use"
    output_format = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        text = json.dumps(placeholder(output_format.get("schema", {})))
    else:
        text = answer_text(usage.visible_output_tokens)
    return usage, [{"type": "text", "text": text}], "end_turn"


def _model(call: Call) -> str:
    return str(call.json.get("model") or "claude-fake")


def message_body(call: Call, service_tier: str = "standard") -> dict[str, Any]:
    usage, content, stop_reason = _plan(call)
    return {
        "id": call.new_id("msg_fake"),
        "type": "message",
        "role": "assistant",
        "model": _model(call),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(usage, service_tier),
    }


def messages(call: Call) -> Response:
    body = call.json
    for required in ("model", "messages", "max_tokens"):
        if required not in body:
            return error_response("anthropic", 400, f"{required}: Field required")
    if not body.get("stream"):
        return JSONResponse(message_body(call))
    usage, content, stop_reason = _plan(call)
    start_usage = {**anthropic_usage(usage), "output_tokens": min(usage.output_tokens, 1)}
    start_usage.pop("output_tokens_details", None)
    message: dict[str, Any] = {
        "id": call.new_id("msg_fake"),
        "type": "message",
        "role": "assistant",
        "model": _model(call),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    for index, block in enumerate(content):
        if block["type"] == "tool_use":
            events.append({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}})
            if index == 0:
                events.append({"type": "ping"})
            arguments = json.dumps(block["input"])
            for piece in ("", arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
        else:
            events.append({"type": "content_block_start", "index": index, "content_block": {**block, "text": ""}})
            if index == 0:
                events.append({"type": "ping"})
            for piece in text_deltas(block["text"]):
                delta = {"type": "text_delta", "text": piece}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    final_usage = anthropic_usage(usage)
    delta_usage = {
        key: final_usage[key]
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    }
    if "output_tokens_details" in final_usage:
        delta_usage["output_tokens_details"] = final_usage["output_tokens_details"]
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": delta_usage,
        }
    )
    events.append({"type": "message_stop"})
    return call.sse(sse_event(event, event=event["type"]) for event in events)


def count_tokens(call: Call) -> Response:
    """`input_tokens` of the request by the same rule (or `x-fake-usage`'s total input)."""
    body = call.json
    texts = collect_text(body.get("system")) + [t for m in body.get("messages") or [] for t in collect_text(m)]
    return JSONResponse({"input_tokens": call.usage(default_usage(texts)).input_tokens})


# -- message batches -------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _batches(call: Call) -> dict[str, Any]:
    return call.fake.state.setdefault("anthropic.batches", {})


def _batch_object(call: Call, batch_id: str, count: int, created: datetime) -> dict[str, Any]:
    return {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": count, "errored": 0, "canceled": 0, "expired": 0},
        "ended_at": _iso(created),
        "created_at": _iso(created),
        "expires_at": _iso(created + timedelta(days=1)),
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": f"{call.base_url}/v1/messages/batches/{batch_id}/results",
    }


def create_batch(call: Call) -> Response:
    """Answers every request at once: the batch has `ended` when created, usage at `service_tier: batch`.

    `x-fake-usage`/`x-fake-tool-call` headers on the create request apply to every request.
    """
    requests = call.json.get("requests")
    if not isinstance(requests, list) or not requests:
        return error_response("anthropic", 400, "requests: Field required")
    results = []
    for item in requests:
        sub = Call(request=call.request, body=item.get("params") or {}, provider="anthropic", fake=call.fake)
        message = message_body(sub, service_tier="batch")
        results.append({"custom_id": item.get("custom_id"), "result": {"type": "succeeded", "message": message}})
    batch_id = call.new_id("msgbatch_fake")
    created = datetime.now(timezone.utc).replace(microsecond=0)
    _batches(call)[batch_id] = (created, results)
    return JSONResponse(_batch_object(call, batch_id, len(results), created))


def retrieve_batch(call: Call) -> Response:
    batch_id = call.path_params["batch_id"]
    found = _batches(call).get(batch_id)
    if found is None:
        return error_response("anthropic", 404, f"message batch {batch_id} not found")
    return JSONResponse(_batch_object(call, batch_id, len(found[1]), found[0]))


def batch_results(call: Call) -> Response:
    batch_id = call.path_params["batch_id"]
    found = _batches(call).get(batch_id)
    if found is None:
        return error_response("anthropic", 404, f"message batch {batch_id} not found")
    lines = "".join(json.dumps(result) + "\n" for result in found[1])
    return Response(lines, media_type="application/x-jsonl")


def list_batches(call: Call) -> Response:
    data = [_batch_object(call, bid, len(results), created) for bid, (created, results) in _batches(call).items()]
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return JSONResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})


ROUTES: RouteTable = [
    ("/v1/messages", ["POST"], messages),
    ("/v1/messages/count_tokens", ["POST"], count_tokens),
    ("/v1/messages/batches", ["POST"], create_batch),
    ("/v1/messages/batches", ["GET"], list_batches),
    ("/v1/messages/batches/{batch_id}", ["GET"], retrieve_batch),
    ("/v1/messages/batches/{batch_id}/results", ["GET"], batch_results),
]
