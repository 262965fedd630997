"""Batch API results as spans: one span per request, flagged ``llmmeter.batch=true`` for batch pricing.

Batch requests never pass through the instrumented SDK methods (the work happens on the provider's side
and the results arrive as a file), so the app hands the finished batch's results to these helpers:

    record_openai_batch(client.files.content(batch.output_file_id).text, batch_id=batch.id)
    record_anthropic_batch(client.messages.batches.results(batch_id), batch_id=batch_id)

Call each once per finished batch: every call emits the spans again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from llmmeter import semconv
from llmmeter.anthropic.response import usage_of as anthropic_usage
from llmmeter.invocation import Invocation, TokenUsage
from llmmeter.manual import instruments
from llmmeter.openai.response import chat_usage, responses_usage


class BatchResultError(ValueError):
    """A batch result line that is not what the provider's batch API returns (names the line)."""


def _as_dict(item: Any) -> Any:
    if isinstance(item, Mapping):
        return item
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        return dump()
    raise BatchResultError(f"batch result of type {type(item).__name__} is neither a mapping nor an SDK model")


def _lines(results: Any) -> Iterable[Any]:
    """Items from JSONL text/bytes, a JSONL file path, or an iterable of dicts / SDK objects."""
    if isinstance(results, Path):
        results = results.read_text()
    if isinstance(results, bytes):
        results = results.decode()
    if isinstance(results, str):
        for number, line in enumerate(results.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BatchResultError(f"batch results line {number} is not JSON: {exc.msg}") from None
        return
    for item in results:
        yield _as_dict(item)


class _Obj:
    """Attribute access over a dict, so the SDK-object readers work on parsed JSON too."""

    __slots__ = ("_d",)

    def __init__(self, d: Mapping[str, Any]) -> None:
        self._d = d

    def __getattr__(self, name: str) -> Any:
        value = self._d.get(name)
        return _Obj(value) if isinstance(value, Mapping) else value


def _ns(value: datetime | float | None) -> int | None:
    if value is None:
        return None
    return int((value.timestamp() if isinstance(value, datetime) else value) * 1e9)


def _emit(
    operation: str,
    provider: str,
    model: str,
    custom_id: Any,
    batch_id: str | None,
    usage: TokenUsage | None,
    response_id: str | None,
    error: str | None,
    start_ns: int | None,
    end_ns: int | None,
) -> None:
    attrs: dict[str, Any] = {semconv.BATCH: True, semconv.GEN_AI_REQUEST_STREAM: False}
    if custom_id is not None:
        attrs[semconv.BATCH_CUSTOM_ID] = str(custom_id)
    if batch_id:
        attrs[semconv.BATCH_ID] = batch_id
    invocation = Invocation(
        instruments(), operation, provider, model, attrs, start_time_ns=start_ns, on_call_path=False
    )
    duration = (end_ns - start_ns) / 1e9 if start_ns is not None and end_ns is not None else None
    if error is not None:
        invocation.fail(BatchRequestError(error), {semconv.PROVIDER_BILLED: False})
        return
    invocation.end(response_model=model, response_id=response_id, usage=usage, end_time_ns=end_ns, duration_s=duration)


class BatchRequestError(Exception):
    """A request of a batch that failed (its ``error.type``); the provider does not bill it."""


def record_openai_batch(
    results: Any,
    *,
    batch_id: str | None = None,
    provider: str = semconv.PROVIDER_OPENAI,
    start_time: datetime | float | None = None,
    end_time: datetime | float | None = None,
) -> int:
    """One span per line of an OpenAI (or Azure OpenAI) batch output file; returns how many were recorded.

    ``results``: the output file's JSONL (str/bytes/Path) or its parsed lines. Chat completions, Responses,
    legacy completions and embeddings bodies are read with the same usage rules as live calls.
    """
    start_ns, end_ns = _ns(start_time), _ns(end_time)
    count = 0
    for number, line in enumerate(_lines(results), 1):
        if not isinstance(line, Mapping):
            raise BatchResultError(f"batch results line {number} is not a JSON object")
        response = line.get("response") or {}
        body = response.get("body") if isinstance(response, Mapping) else None
        error = line.get("error")
        status = response.get("status_code") if isinstance(response, Mapping) else None
        if error or not isinstance(body, Mapping) or (isinstance(status, int) and status >= 400):
            code = error.get("code") if isinstance(error, Mapping) else None
            if code is None and isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
                code = body["error"].get("code") or body["error"].get("type")
            _emit(semconv.OP_CHAT, provider, "unknown", line.get("custom_id"), batch_id, None, None,
                  str(code or status or "error"), start_ns, end_ns)  # fmt: skip
            count += 1
            continue
        kind = body.get("object")
        usage_body = body.get("usage")
        if kind == "response":
            operation, usage = semconv.OP_CHAT, responses_usage(_Obj(usage_body) if usage_body else None)
        elif kind == "list":
            tokens = (usage_body or {}).get("prompt_tokens")
            operation, usage = semconv.OP_EMBEDDINGS, TokenUsage(input_tokens=tokens) if tokens is not None else None
        else:
            operation = semconv.OP_TEXT_COMPLETION if kind == "text_completion" else semconv.OP_CHAT
            usage = chat_usage(_Obj(usage_body) if usage_body else None)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BatchResultError(f"batch results line {number} has no model in response.body")
        _emit(
            operation, provider, model, line.get("custom_id"), batch_id, usage, body.get("id"), None, start_ns, end_ns
        )
        count += 1
    return count


def record_anthropic_batch(
    results: Any,
    *,
    batch_id: str | None = None,
    start_time: datetime | float | None = None,
    end_time: datetime | float | None = None,
) -> int:
    """One span per succeeded or errored request of a finished Anthropic Message Batch; returns the count.

    ``results``: what ``client.messages.batches.results(batch_id)`` yields, or the results JSONL. Canceled
    and expired requests were never run and are not billed: they get no span.
    """
    start_ns, end_ns = _ns(start_time), _ns(end_time)
    count = 0
    for number, item in enumerate(_lines(results), 1):
        if not isinstance(item, Mapping):
            raise BatchResultError(f"batch results line {number} is not a JSON object")
        result = item.get("result") or {}
        kind = result.get("type")
        if kind == "succeeded":
            message = result.get("message") or {}
            model = message.get("model")
            if not isinstance(model, str) or not model:
                raise BatchResultError(f"batch results line {number} has no result.message.model")
            _emit(semconv.OP_CHAT, semconv.PROVIDER_ANTHROPIC, model, item.get("custom_id"), batch_id,
                  anthropic_usage(message.get("usage")), message.get("id"), None, start_ns, end_ns)  # fmt: skip
        elif kind == "errored":
            error = (result.get("error") or {}).get("error") or result.get("error") or {}
            _emit(semconv.OP_CHAT, semconv.PROVIDER_ANTHROPIC, "unknown", item.get("custom_id"), batch_id, None, None,
                  str(error.get("type") or "error"), start_ns, end_ns)  # fmt: skip
        elif kind in ("canceled", "expired"):
            continue
        else:
            raise BatchResultError(f"batch results line {number} has unknown result.type {kind!r}")
        count += 1
    return count
