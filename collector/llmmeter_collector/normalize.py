"""Turn OTLP spans into ``LlmCall`` records, whatever GenAI naming variant they arrived in.

A span is an LLM call when it carries a GenAI provider/system attribute and a billable operation
(chat, text completion, generate_content, embeddings). Agent and tool spans, spans marked
``llmmeter.billable=false`` and every non-GenAI span are passed over (they are not calls to price).

Names are read in the order listed in ``semconv`` (the v1.37+ name first, then older and vendor variants:
``gen_ai.system``, ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``, ``gen_ai.usage.cache_write.input_tokens``,
OpenLLMetry's ``llm.*`` and OpenLIT's names).

Whether input tokens include cached ones (applied here, once)
--------------------------------------------------------------
The GenAI convention counts ``gen_ai.usage.input_tokens`` *including* cache reads and writes; OpenAI and
Gemini report prompt tokens that way, and llmmeter, the official OpenTelemetry instrumentations and
OpenLLMetry (which adds Anthropic's cache counts to ``input_tokens`` itself) follow it. Anthropic's API
(also through Bedrock) reports ``input_tokens`` *without* them, and some senders copy that raw count:
OpenLIT does (it adds the cache counts on top when pricing). So:

1. sender in ``RAW_INPUT_SENDERS`` (resource or span ``telemetry.sdk.name``; OpenLIT) and provider in
   ``INPUT_EXCLUDES_CACHE`` (anthropic, aws.bedrock): input = reported input + cache read + cache write;
2. any other sender: the reported input is the total, as the convention says;
3. whatever the sender, a reported input smaller than cache read + cache write cannot be a total, so it is
   taken as a raw count and the cache counts are added (a sender we do not know that reports raw counts).

Only the cost-relevant attributes are decoded: the span's attributes are indexed by key first, and values
(which may be large prompt contents) are converted only when read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmmeter_collector import semconv as sc
from llmmeter_collector.llmcall import LlmCall, Usage

MAX_TOKENS_PER_CALL = 100_000_000  # above this a count is not a real call's usage
MAX_REJECTED_MESSAGES = 100
_EARLIEST_NS = 1_577_836_800 * 10**9  # 2020-01-01
_FUTURE_SLACK_NS = 86_400 * 10**9
_STATUS_ERROR = Status.STATUS_CODE_ERROR
_TAG_PREFIX = sc.TAG_PREFIX
_TAG_PREFIX_LEN = len(sc.TAG_PREFIX)
_Attrs = dict[str, Any]  # attribute key -> decoded value, only the keys normalize reads
_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


_WANTED = frozenset(
    {
        *sc.PROVIDER_KEYS, *sc.OPERATION_KEYS, *sc.REQUEST_MODEL_KEYS, *sc.RESPONSE_MODEL_KEYS,
        *sc.INPUT_TOKEN_KEYS, *sc.OUTPUT_TOKEN_KEYS, *sc.CACHE_READ_KEYS, *sc.CACHE_WRITE_KEYS,
        *sc.REASONING_KEYS, *sc.REPORTED_COST_KEYS, *sc.STREAM_KEYS, *sc.TTFC_KEYS, *sc.SERVICE_TIER_KEYS,
        *sc.ENVIRONMENT_KEYS, *sc.RESOURCE_ENVIRONMENT_KEYS, *sc.USER_KEYS, *sc.SESSION_KEYS,
        sc.TELEMETRY_SDK_NAME, sc.BILLABLE, sc.CACHE_CREATION_1H_INPUT_TOKENS, sc.AUDIO_INPUT_TOKENS,
        sc.AUDIO_OUTPUT_TOKENS, sc.ERROR_TYPE, sc.RETRIES, sc.PROVIDER_BILLED, sc.GEN_AI_RESPONSE_ID,
        sc.PROJECT, sc.FEATURE, sc.EXPERIMENT, sc.VARIANT, sc.BATCH, sc.USAGE_MISSING, sc.PROMPT_FINGERPRINT,
        "service.name",
    }
)  # fmt: skip


class InvalidSpan(ValueError):
    """A GenAI span that cannot be accounted (bad token counts, no model, absurd time)."""


@dataclass(slots=True)
class Normalized:
    calls: list[LlmCall] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # a message per rejected span (the first 100)
    rejected_count: int = 0
    other_spans: int = 0  # non-GenAI or non-billable spans
    spans: list[Span] = field(default_factory=list)  # the span of each call (only when asked: forwarding)
    total_spans: int = 0


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


def attributes_dict(attributes: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def _index(attributes: Any) -> _Attrs:
    """Decode only the attributes normalize reads (prompt contents and the like are never converted)."""
    out: _Attrs = {}
    wanted = _WANTED
    for kv in attributes:
        key = kv.key
        if key in wanted or key.startswith(_TAG_PREFIX):
            value = kv.value
            kind = value.WhichOneof("value")
            out[key] = getattr(value, kind) if kind in _SCALARS else any_value(value)
    return out


def _get(attrs: _Attrs, key: str) -> Any:
    return attrs.get(key)


def _first(attrs: _Attrs, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _tokens(attrs: _Attrs, keys: tuple[str, ...], name: str) -> int | None:
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


def _bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def provider_name(raw: str) -> str:
    key = raw.strip().lower()
    return sc.PROVIDER_ALIASES.get(key, key)


def is_llm_call(attrs: _Attrs) -> bool:
    if _first(attrs, sc.PROVIDER_KEYS) is None:
        return False
    operation = _first(attrs, sc.OPERATION_KEYS)
    if operation is not None and str(operation).lower() not in sc.BILLABLE_OPERATIONS:
        return False
    if operation is None and _first(attrs, (*sc.INPUT_TOKEN_KEYS, *sc.OUTPUT_TOKEN_KEYS)) is None:
        # No operation and no usage: an API call that is not a model call (e.g. the Anthropic SDK's own
        # span for the free messages.count_tokens, or sessions.create) — never a $0 "chat".
        return False
    return _get(attrs, sc.BILLABLE) is not False


def _operation(attrs: _Attrs, span_name: str) -> str:
    raw = attrs.get(sc.GEN_AI_OPERATION_NAME)
    if raw is not None:
        operation = str(raw).lower()
    else:
        legacy = _get(attrs, "llm.request.type")
        operation = str(legacy or "chat").lower()
        # OpenLLMetry's Anthropic instrumentation marks Messages calls "completion" on spans named "anthropic.chat"
        if operation == "completion" and span_name.endswith(".chat"):
            operation = "chat"
    return sc.OPERATION_ALIASES.get(operation, operation)


def _reported_cost(attrs: _Attrs) -> Decimal | None:
    reported = _first(attrs, sc.REPORTED_COST_KEYS)
    if reported is None or isinstance(reported, bool):
        return None
    try:
        value = Decimal(str(reported))
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


def _usage(attrs: _Attrs, provider: str, sender: str) -> tuple[Usage, bool]:
    input_tokens = _tokens(attrs, sc.INPUT_TOKEN_KEYS, "input tokens")
    output_tokens = _tokens(attrs, sc.OUTPUT_TOKEN_KEYS, "output tokens")
    cache_read = _tokens(attrs, sc.CACHE_READ_KEYS, "cache read tokens") or 0
    cache_write = _tokens(attrs, sc.CACHE_WRITE_KEYS, "cache creation tokens") or 0
    cache_write_1h = _tokens(attrs, (sc.CACHE_CREATION_1H_INPUT_TOKENS,), "1h cache creation tokens") or 0
    if cache_write_1h > cache_write:
        raise InvalidSpan("1h cache creation tokens exceed cache creation tokens")
    total_input = input_tokens or 0
    cached = cache_read + cache_write
    if cached and ((sender in sc.RAW_INPUT_SENDERS and provider in sc.INPUT_EXCLUDES_CACHE) or total_input < cached):
        total_input += cached
    output = output_tokens or 0
    reasoning = _tokens(attrs, sc.REASONING_KEYS, "reasoning tokens") or 0
    usage = Usage(
        input_tokens=total_input,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=reasoning,
        input_audio_tokens=_tokens(attrs, (sc.AUDIO_INPUT_TOKENS,), "audio input tokens") or 0,
        output_audio_tokens=_tokens(attrs, (sc.AUDIO_OUTPUT_TOKENS,), "audio output tokens") or 0,
    )
    if usage.input_audio_tokens > usage.input_tokens:
        raise InvalidSpan("audio input tokens exceed input tokens")
    return usage, input_tokens is None and output_tokens is None


def to_call(span: Span, attrs: _Attrs, resource: _Attrs, now_ns: int) -> LlmCall:
    """Build one LlmCall from a GenAI span; raises InvalidSpan naming the problem."""
    trace_id = span.trace_id
    span_id = span.span_id
    if len(span_id) != 8 or len(trace_id) != 16:
        raise InvalidSpan("span has no valid trace_id/span_id")
    start_ns = span.start_time_unix_nano
    if not (_EARLIEST_NS <= start_ns <= now_ns + _FUTURE_SLACK_NS):
        raise InvalidSpan(f"start time {start_ns} is not a plausible time")
    provider = provider_name(str(_first(attrs, sc.PROVIDER_KEYS)))
    request_model = _str(_first(attrs, sc.REQUEST_MODEL_KEYS))
    response_model = _str(_first(attrs, sc.RESPONSE_MODEL_KEYS))
    if not request_model and not response_model:
        raise InvalidSpan("missing model (gen_ai.request.model / gen_ai.response.model)")
    sender = _str(_get(attrs, sc.TELEMETRY_SDK_NAME) or _get(resource, sc.TELEMETRY_SDK_NAME)).lower()
    usage, usage_missing = _usage(attrs, provider, sender)

    error_type = _str(_get(attrs, sc.ERROR_TYPE))
    tags: dict[str, str] = {}
    for key in attrs:
        if key.startswith(_TAG_PREFIX):
            tags[key[_TAG_PREFIX_LEN:]] = _str(_get(attrs, key))
    ttfc = _first(attrs, sc.TTFC_KEYS)
    retries = _get(attrs, sc.RETRIES)
    billed = _get(attrs, sc.PROVIDER_BILLED)
    return LlmCall(
        trace_id=trace_id.hex(),
        span_id=span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        start_ns=start_ns,
        end_ns=span.end_time_unix_nano,
        provider=provider,
        operation=_operation(attrs, span.name),
        request_model=request_model or response_model,
        response_model=response_model,
        response_id=_str(_get(attrs, sc.GEN_AI_RESPONSE_ID)),
        service_name=_str(_get(resource, "service.name")),
        project=_str(_get(attrs, sc.PROJECT) or _get(resource, sc.PROJECT)),
        feature=_str(_get(attrs, sc.FEATURE)),
        environment=_str(_first(attrs, sc.ENVIRONMENT_KEYS) or _first(resource, sc.RESOURCE_ENVIRONMENT_KEYS)),
        user_id=_str(_first(attrs, sc.USER_KEYS)),
        session_id=_str(_first(attrs, sc.SESSION_KEYS)),
        experiment=_str(_get(attrs, sc.EXPERIMENT)),
        variant=_str(_get(attrs, sc.VARIANT)),
        tags=tags,
        usage=usage,
        usage_missing=usage_missing or _get(attrs, sc.USAGE_MISSING) is True,
        service_tier=_str(_first(attrs, sc.SERVICE_TIER_KEYS)),
        batch=_bool(_get(attrs, sc.BATCH)),
        streaming=_bool(_first(attrs, sc.STREAM_KEYS)),
        billable=billed is not False,
        status="error" if span.status.code == _STATUS_ERROR or error_type else "ok",
        error_type=error_type,
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) and 0 < retries < 1000 else 0,
        ttfc_s=float(ttfc) if isinstance(ttfc, int | float) and not isinstance(ttfc, bool) and ttfc >= 0 else None,
        prompt_fingerprint=_str(_get(attrs, sc.PROMPT_FINGERPRINT)),
        reported_cost=_reported_cost(attrs),
    )


def normalize(request: ExportTraceServiceRequest, now_ns: int | None = None, keep_spans: bool = False) -> Normalized:
    """Every LLM call in an export, and a message for each GenAI span that had to be rejected."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    out = Normalized()
    calls = out.calls
    total = 0
    for resource_spans in request.resource_spans:
        resource = _index(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            total += len(spans)
            for span in spans:
                attrs = _index(span.attributes)
                if not is_llm_call(attrs):
                    out.other_spans += 1
                    continue
                try:
                    calls.append(to_call(span, attrs, resource, now_ns))
                except InvalidSpan as exc:
                    out.rejected_count += 1
                    if len(out.rejected) < MAX_REJECTED_MESSAGES:
                        out.rejected.append(f"span {span.span_id.hex() or '?'}: {exc}")
                    continue
                if keep_spans:
                    out.spans.append(span)
    out.total_spans = total
    return out
