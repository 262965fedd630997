"""OpenAI (and Azure OpenAI) wire format: chat completions, responses, completions, embeddings, batches."""

from __future__ import annotations

import base64
import json
import struct
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from starlette.responses import JSONResponse, Response

from .reports import bill
from .usage import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    Usage,
    answer_text,
    collect_text,
    default_usage,
    embedding,
    own_text,
    placeholder,
    text_deltas,
    wants_tool_call,
)
from .wire import Call, RouteTable, error_response, sse_event

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
    usage = bill(call, call.usage(default))
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


# -- responses -------------------------------------------------------------------------------------


def _responses_plan(call: Call) -> tuple[Usage, str | None, dict[str, Any] | None]:
    body = call.json
    items = body.get("input")
    items = [items] if isinstance(items, str) else items or []
    default = default_usage(collect_text(body.get("instructions")) + collect_text(items), body.get("max_output_tokens"))
    usage = bill(call, call.usage(default))
    tools = _function_tools(body.get("tools"))
    last = items[-1] if items else {}
    is_user_turn = isinstance(last, str) or (isinstance(last, dict) and last.get("role") == "user")
    last_texts = own_text(last) if is_user_turn else []
    if wants_tool_call(bool(tools), last_texts, call.tool_call_header):
        tool = tools[0]
        item = {
            "type": "function_call",
            "id": call.new_id("fc_fake"),
            "call_id": call.new_id("call_fake"),
            "name": tool["name"],
            "arguments": _tool_arguments(tool),
            "status": "completed",
        }
        return usage, None, item
    text_format = (body.get("text") or {}).get("format")
    text = _structured_text(text_format) or answer_text(usage.visible_output_tokens)
    return usage, text, None


def responses_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _response_object(call: Call, response_id: str, status: str, output: list[Any], usage: Usage | None) -> Any:
    body = call.json
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": _model(call),
        "output": output,
        "usage": responses_usage(usage) if usage is not None else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "service_tier": body.get("service_tier") or "default",
        "error": None,
        "incomplete_details": None,
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "truncation": "disabled",
        "user": None,
    }


def _response_output(call: Call, usage: Usage, text: str | None, tool_item: dict[str, Any] | None) -> list[Any]:
    output: list[Any] = []
    if usage.reasoning_tokens:
        output.append({"type": "reasoning", "id": call.new_id("rs_fake"), "summary": []})
    if tool_item is not None:
        output.append(tool_item)
    else:
        output.append(
            {
                "type": "message",
                "id": call.new_id("msg_fake"),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text or "", "annotations": [], "logprobs": []}],
            }
        )
    return output


def response_body(call: Call) -> dict[str, Any]:
    usage, text, tool_item = _responses_plan(call)
    output = _response_output(call, usage, text, tool_item)
    return _response_object(call, call.new_id("resp_fake"), "completed", output, usage)


def responses(call: Call) -> Response:
    if "input" not in call.json and "prompt" not in call.json:
        return error_response("openai", 400, "Missing required parameter: 'input'.")
    if not call.json.get("stream"):
        return JSONResponse(response_body(call))
    usage, text, tool_item = _responses_plan(call)
    response_id = call.new_id("resp_fake")
    output = _response_output(call, usage, text, tool_item)
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": _response_object(call, response_id, "in_progress", [], None)}),
        ("response.in_progress", {"response": _response_object(call, response_id, "in_progress", [], None)}),
    ]
    for index, item in enumerate(output):
        if item["type"] == "message":
            part = item["content"][0]
            started = {**item, "status": "in_progress", "content": []}
            events.append(("response.output_item.added", {"output_index": index, "item": started}))
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            empty_part = {**part, "text": ""}
            events.append(("response.content_part.added", {**where, "part": empty_part}))
            for piece in text_deltas(part["text"]):
                events.append(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}))
            events.append(("response.output_text.done", {**where, "text": part["text"], "logprobs": []}))
            events.append(("response.content_part.done", {**where, "part": part}))
        elif item["type"] == "function_call":
            events.append(("response.output_item.added", {"output_index": index, "item": {**item, "arguments": ""}}))
            where = {"item_id": item["id"], "output_index": index}
            events.append(("response.function_call_arguments.delta", {**where, "delta": item["arguments"]}))
            events.append(
                (
                    "response.function_call_arguments.done",
                    {**where, "arguments": item["arguments"], "name": item["name"]},
                )
            )
        else:
            events.append(("response.output_item.added", {"output_index": index, "item": item}))
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
    completed = _response_object(call, response_id, "completed", output, usage)
    events.append(("response.completed", {"response": completed}))
    return call.sse(
        sse_event({"type": kind, "sequence_number": number, **data}, event=kind)
        for number, (kind, data) in enumerate(events)
    )


# -- legacy completions ----------------------------------------------------------------------------


def _completion_plan(call: Call) -> tuple[Usage, str]:
    body = call.json
    usage = bill(call, call.usage(default_usage(collect_text(body.get("prompt")), body.get("max_tokens"))))
    return usage, answer_text(usage.visible_output_tokens)


def completion_body(call: Call) -> dict[str, Any]:
    usage, text = _completion_plan(call)
    return {
        "id": call.new_id("cmpl-fake"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": _model(call),
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": chat_usage(usage),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def completions(call: Call) -> Response:
    if not call.json.get("stream"):
        return JSONResponse(completion_body(call))
    usage, text = _completion_plan(call)
    include_usage = bool((call.json.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": call.new_id("cmpl-fake"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": _model(call),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    pieces = [*text_deltas(text), ""]
    events = [
        sse_event(
            {
                **base,
                "choices": [
                    {
                        "text": piece,
                        "index": 0,
                        "logprobs": None,
                        "finish_reason": "stop" if last else None,
                    }
                ],
                **({"usage": None} if include_usage else {}),
            }
        )
        for last, piece in ((i == len(pieces) - 1, p) for i, p in enumerate(pieces))
    ]
    if include_usage:
        events.append(sse_event({**base, "choices": [], "usage": chat_usage(usage)}))
    events.append(sse_event("[DONE]"))
    return call.sse(events)


# -- embeddings and models -------------------------------------------------------------------------


def embeddings_body(call: Call) -> dict[str, Any]:
    """Deterministic vectors (see `usage.embedding`); base64 = little-endian float32, as OpenAI sends."""
    body = call.json
    raw = body.get("input")
    inputs: list[Any] = [raw] if isinstance(raw, str) else list(raw or [])
    if inputs and all(isinstance(i, int) for i in inputs):
        inputs = [inputs]  # one tokenized input
    texts = [i if isinstance(i, str) else " ".join(str(t) for t in i) for i in inputs]
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and dims > 0 else DEFAULT_EMBEDDING_DIMENSIONS
    usage = bill(call, call.usage(default_usage(texts)))
    data = []
    for index, text in enumerate(texts):
        vector = embedding(text, dims)
        value: Any = vector
        if body.get("encoding_format") == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": _model(call),
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }


def embeddings(call: Call) -> Response:
    if call.json.get("input") in (None, "", []):
        return error_response("openai", 400, "Missing required parameter: 'input'.")
    return JSONResponse(embeddings_body(call))


MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o4-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct")


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "fakeprovider"}


def list_models(call: Call) -> Response:
    return JSONResponse({"object": "list", "data": [_model_object(m) for m in MODELS]})


def retrieve_model(call: Call) -> Response:
    return JSONResponse(_model_object(call.path_params["model"]))


# -- files and batches -----------------------------------------------------------------------------

_BATCH_BODIES = {
    "/v1/chat/completions": chat_completion_body,
    "/v1/responses": response_body,
    "/v1/completions": completion_body,
    "/v1/embeddings": embeddings_body,
}


def _store(call: Call, kind: str) -> dict[str, Any]:
    return call.fake.state.setdefault(f"openai.{kind}", {})


def _multipart(call: Call) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """Form fields and the (filename, content) of the uploaded file of a multipart body."""
    raw = call.body if isinstance(call.body, bytes) else b""
    head = f"Content-Type: {call.headers.get('content-type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    fields: dict[str, str] = {}
    upload = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            upload = (filename, content)
        elif isinstance(name, str):
            fields[name] = content.decode()
    return fields, upload


def _file_object(file_id: str, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(content),
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def create_file(call: Call) -> Response:
    fields, upload = _multipart(call)
    if upload is None:
        return error_response("openai", 400, "Missing required parameter: 'file'.")
    file_id = call.new_id("file-fake")
    meta = _file_object(file_id, upload[0], upload[1], fields.get("purpose", "batch"))
    _store(call, "files")[file_id] = (meta, upload[1])
    return JSONResponse(meta)


def _get_file(call: Call) -> tuple[dict[str, Any], bytes] | None:
    return _store(call, "files").get(call.path_params["file_id"])


def retrieve_file(call: Call) -> Response:
    found = _get_file(call)
    if found is None:
        return error_response("openai", 404, f"No such File object: {call.path_params['file_id']}")
    return JSONResponse(found[0])


def file_content(call: Call) -> Response:
    found = _get_file(call)
    if found is None:
        return error_response("openai", 404, f"No such File object: {call.path_params['file_id']}")
    return Response(found[1], media_type="application/octet-stream")


def create_batch(call: Call) -> Response:
    """Runs every request of the input file at once: the batch is `completed` when created.

    `x-fake-usage`/`x-fake-tool-call` headers on the create request apply to every line.
    """
    body = call.json
    found = _store(call, "files").get(str(body.get("input_file_id")))
    if found is None:
        return error_response("openai", 400, f"No such File object: {body.get('input_file_id')}")
    lines = []
    for raw in found[1].decode().splitlines():
        if not raw.strip():
            continue
        item = json.loads(raw)
        url = str(item.get("url") or body.get("endpoint"))
        make = _BATCH_BODIES.get(url)
        if make is None:
            return error_response("openai", 400, f"Unsupported batch url: {url}")
        result = make(Call(request=call.request, body=item.get("body") or {}, provider="openai", fake=call.fake))
        response = {"status_code": 200, "request_id": call.new_id("req_fake"), "body": result}
        lines.append({"id": call.new_id("batch_req_fake"), "custom_id": item.get("custom_id"), "response": response})
    output = "".join(json.dumps(line) + "\n" for line in lines).encode()
    output_id = call.new_id("file-fake")
    _store(call, "files")[output_id] = (
        _file_object(output_id, "batch_output.jsonl", output, "batch_output"),
        output,
    )
    now = int(time.time())
    batch = {
        "id": call.new_id("batch_fake"),
        "object": "batch",
        "endpoint": body.get("endpoint"),
        "errors": None,
        "input_file_id": body.get("input_file_id"),
        "completion_window": body.get("completion_window", "24h"),
        "status": "completed",
        "output_file_id": output_id,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": now,
        "expires_at": now + 86400,
        "finalizing_at": now,
        "completed_at": now,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": len(lines), "completed": len(lines), "failed": 0},
        "metadata": body.get("metadata"),
    }
    _store(call, "batches")[batch["id"]] = batch
    return JSONResponse(batch)


def retrieve_batch(call: Call) -> Response:
    batch = _store(call, "batches").get(call.path_params["batch_id"])
    if batch is None:
        return error_response("openai", 404, f"No such Batch object: {call.path_params['batch_id']}")
    return JSONResponse(batch)


def list_batches(call: Call) -> Response:
    data = list(_store(call, "batches").values())
    return JSONResponse({"object": "list", "data": data, "has_more": False})


def _openai_routes() -> RouteTable:
    """The same endpoints under `/v1` (OpenAI), `/openai/v1` (Azure v1 API) and `/openai` (Azure classic)."""
    endpoints: RouteTable = [
        ("/chat/completions", ["POST"], chat_completions),
        ("/responses", ["POST"], responses),
        ("/completions", ["POST"], completions),
        ("/embeddings", ["POST"], embeddings),
        ("/models", ["GET"], list_models),
        ("/models/{model:path}", ["GET"], retrieve_model),
        ("/files", ["POST"], create_file),
        ("/files/{file_id}", ["GET"], retrieve_file),
        ("/files/{file_id}/content", ["GET"], file_content),
        ("/batches", ["POST"], create_batch),
        ("/batches", ["GET"], list_batches),
        ("/batches/{batch_id}", ["GET"], retrieve_batch),
    ]
    routes = [
        (prefix + path, methods, handler)
        for prefix in ("/v1", "/openai/v1", "/openai")
        for path, methods, handler in endpoints
    ]
    for path in ("/chat/completions", "/completions", "/embeddings"):
        handler = next(h for p, _, h in endpoints if p == path)
        routes.append(("/openai/deployments/{deployment}" + path, ["POST"], handler))
    return routes


ROUTES = _openai_routes()
