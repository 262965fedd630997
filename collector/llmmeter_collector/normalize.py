"""Turn OTLP spans into ``LlmCall`` records, whatever GenAI naming variant they arrived in.

A span is an LLM call when it carries a GenAI provider/system attribute and a billable operation
(chat, text completion, generate_content, embeddings). Agent and tool spans, spans marked
``llmmeter.billable=false`` and every non-GenAI span are passed over (they are not calls to price).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmmeter_collector import semconv as sc
from llmmeter_collector.llmcall import LlmCall, Usage

MAX_TOKENS_PER_CALL = 100_000_000  # above this a count is not a real call's usage
_EARLIEST_NS = 1_577_836_800 * 10**9  # 2020-01-01
_FUTURE_SLACK_NS = 86_400 * 10**9


class InvalidSpan(ValueError):
    """A GenAI span that cannot be accounted (bad token counts, no model, absurd time)."""


@dataclass(slots=True)
class Normalized:
    calls: list[LlmCall] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # one message per rejected span
    other_spans: int = 0  # non-GenAI or non-billable spans


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value
    return None


def attributes_dict(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def _first(attrs: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _tokens(attrs: Mapping[str, Any], keys: Iterable[str], name: str) -> int | None:
    value = _first(attrs, keys)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidSpan(f"{name} is not a number: {value!r}")
    try:
        count = int(value)
    except ValueError:
        raise InvalidSpan(f"{name} is not a number: {value!r}") from None
    if count < 0:
        raise InvalidSpan(f"{name} is negative: {count}")
    if count > MAX_TOKENS_PER_CALL:
        raise InvalidSpan(f"{name} is absurdly large: {count}")
    return count


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def provider_name(raw: str) -> str:
    key = raw.strip().lower()
    return sc.PROVIDER_ALIASES.get(key, key)


def is_llm_call(attrs: Mapping[str, Any]) -> bool:
    if _first(attrs, sc.PROVIDER_KEYS) is None:
        return False
    operation = _first(attrs, sc.OPERATION_KEYS)
    if operation is not None and str(operation).lower() not in sc.BILLABLE_OPERATIONS:
        return False
    return attrs.get(sc.BILLABLE) is not False


def to_call(
    span: Span,
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any],
    now_ns: int,
) -> LlmCall:
    """Build one LlmCall from a GenAI span; raises InvalidSpan naming the problem."""
    if len(span.span_id) != 8 or len(span.trace_id) != 16:
        raise InvalidSpan("span has no valid trace_id/span_id")
    if not (_EARLIEST_NS <= span.start_time_unix_nano <= now_ns + _FUTURE_SLACK_NS):
        raise InvalidSpan(f"start time {span.start_time_unix_nano} is not a plausible time")
    provider = provider_name(str(_first(attrs, sc.PROVIDER_KEYS)))
    request_model = _str(_first(attrs, sc.REQUEST_MODEL_KEYS))
    response_model = _str(_first(attrs, sc.RESPONSE_MODEL_KEYS))
    if not request_model and not response_model:
        raise InvalidSpan("missing model (gen_ai.request.model / gen_ai.response.model)")
    operation = str(_first(attrs, sc.OPERATION_KEYS) or "chat").lower()
    operation = sc.OPERATION_ALIASES.get(operation, operation)

    input_tokens = _tokens(attrs, sc.INPUT_TOKEN_KEYS, "input tokens")
    output_tokens = _tokens(attrs, sc.OUTPUT_TOKEN_KEYS, "output tokens")
    cache_read = _tokens(attrs, sc.CACHE_READ_KEYS, "cache read tokens") or 0
    cache_write = _tokens(attrs, sc.CACHE_WRITE_KEYS, "cache creation tokens") or 0
    cache_write_1h = _tokens(attrs, (sc.CACHE_CREATION_1H_INPUT_TOKENS,), "1h cache creation tokens") or 0
    reasoning = _tokens(attrs, sc.REASONING_KEYS, "reasoning tokens") or 0
    usage_missing = input_tokens is None and output_tokens is None
    usage = Usage(
        input_tokens=input_tokens or 0,
        output_tokens=output_tokens or 0,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=reasoning,
        input_audio_tokens=_tokens(attrs, (sc.AUDIO_INPUT_TOKENS,), "audio input tokens") or 0,
        output_audio_tokens=_tokens(attrs, (sc.AUDIO_OUTPUT_TOKENS,), "audio output tokens") or 0,
    )
    # Convention: input includes cached tokens. Where a sender reported the provider's raw count
    # (Anthropic's input_tokens excludes cache reads and writes) the parts exceed the whole: add them.
    if usage.input_tokens < cache_read + cache_write:
        usage.input_tokens += cache_read + cache_write
    if cache_write_1h > cache_write:
        raise InvalidSpan("1h cache creation tokens exceed cache creation tokens")

    status_error = span.status.code == Status.STATUS_CODE_ERROR
    error_type = _str(attrs.get(sc.ERROR_TYPE))
    tags = {k[len(sc.TAG_PREFIX) :]: _str(v) for k, v in attrs.items() if k.startswith(sc.TAG_PREFIX)}
    ttfc = attrs.get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    reported = _first(attrs, sc.REPORTED_COST_KEYS)
    reported_cost: Decimal | None = None
    if reported is not None:
        try:
            reported_cost = Decimal(str(reported))
        except InvalidOperation:
            reported_cost = None
    retries = attrs.get(sc.RETRIES)
    return LlmCall(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        provider=provider,
        operation=operation,
        request_model=request_model or response_model,
        response_model=response_model,
        response_id=_str(attrs.get(sc.GEN_AI_RESPONSE_ID)),
        service_name=_str(resource.get("service.name")),
        project=_str(attrs.get(sc.PROJECT) or resource.get(sc.PROJECT)),
        feature=_str(attrs.get(sc.FEATURE)),
        environment=_str(attrs.get(sc.ENVIRONMENT) or resource.get(sc.DEPLOYMENT_ENVIRONMENT_NAME)),
        user_id=_str(attrs.get(sc.USER_ID)),
        session_id=_str(attrs.get(sc.SESSION_ID)),
        experiment=_str(attrs.get(sc.EXPERIMENT)),
        variant=_str(attrs.get(sc.VARIANT)),
        tags=tags,
        usage=usage,
        usage_missing=usage_missing or attrs.get(sc.USAGE_MISSING) is True,
        service_tier=_str(
            attrs.get(sc.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER)
            or attrs.get(sc.GEN_AI_OPENAI_REQUEST_SERVICE_TIER)
        ),
        batch=attrs.get(sc.BATCH) is True,
        streaming=attrs.get(sc.GEN_AI_REQUEST_STREAM) is True,
        status="error" if status_error or error_type else "ok",
        error_type=error_type,
        retries=int(retries) if isinstance(retries, int) and retries > 0 else 0,
        ttfc_s=float(ttfc) if isinstance(ttfc, int | float) else None,
        prompt_fingerprint=_str(attrs.get(sc.PROMPT_FINGERPRINT)),
        reported_cost=reported_cost,
    )


def normalize(request: ExportTraceServiceRequest, now_ns: int | None = None) -> Normalized:
    """Every LLM call in an export, and a message for each GenAI span that had to be rejected."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    out = Normalized()
    for resource_spans in request.resource_spans:
        resource = attributes_dict(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attrs = attributes_dict(span.attributes)
                if not is_llm_call(attrs):
                    out.other_spans += 1
                    continue
                try:
                    out.calls.append(to_call(span, attrs, resource, now_ns))
                except InvalidSpan as exc:
                    out.rejected.append(f"span {span.span_id.hex() or '?'}: {exc}")
    return out
