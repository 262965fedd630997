"""Turn OTLP spans into ``LlmCall`` records, whatever GenAI naming variant they arrived in.

A span is an LLM call when it carries a GenAI provider/system attribute and a billable operation
(chat, text completion, generate_content, embeddings). Agent and tool spans, spans marked
``llmmeter.billable=false`` and every non-GenAI span are passed over (they are not calls to price).

Names are read in the order listed in ``semconv`` (the v1.37+ name first, then older and vendor variants:
``gen_ai.system``, ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``, ``gen_ai.usage.cache_write.input_tokens``,
OpenLLMetry's ``llm.*`` and OpenLIT's names). Names only one instrumentation uses (OpenInference, Langfuse, …) and
its corrections are in ONE table, ``ingest/dialects.py``: it is applied to each span before it is judged a call.

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

Only the cost-relevant attributes are decoded, in one pass over the span's attributes that maps every naming
variant to its field (``_SPAN_FIELDS``); other values (which may be large prompt contents) are never converted.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmmeter_collector import semconv as sc
from llmmeter_collector.ingest import bounds, dialects, identity
from llmmeter_collector.llmcall import LlmCall, Usage

try:  # the C attribute reader (_otlp_fields.c), built with the package when a compiler was there
    from llmmeter_collector.ingest._otlp_fields import span_fields as _c_span_fields
except ImportError:  # pragma: no cover - a build without a compiler: attributes are read in Python
    _c_span_fields = None

MAX_TOKENS_PER_CALL = bounds.MAX_TOKENS  # above this a count is not a real call's usage
MAX_REJECTED_MESSAGES = 100
_EARLIEST_NS = 1_577_836_800 * 10**9  # 2020-01-01
_FUTURE_SLACK_NS = 86_400 * 10**9
_STATUS_ERROR = Status.STATUS_CODE_ERROR
_TAG_PREFIX = sc.TAG_PREFIX
_TAG_PREFIX_LEN = len(sc.TAG_PREFIX)
_Attrs = dict[str, Any]  # attribute key -> decoded value, only the keys normalize reads
_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


# Span attribute key -> (field, rank, text): every naming variant of a field, rank 0 the v1.37+ name. A span's
# attributes are read in one pass into {field: value}, the best-ranked non-empty variant winning, so the
# rest of normalize reads each field with one dict lookup, whatever convention the span used.
_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("provider", sc.PROVIDER_KEYS),
    ("operation", (sc.GEN_AI_OPERATION_NAME,)),
    ("legacy_operation", ("llm.request.type",)),
    ("request_model", sc.REQUEST_MODEL_KEYS),
    ("response_model", sc.RESPONSE_MODEL_KEYS),
    ("response_id", (sc.GEN_AI_RESPONSE_ID,)),
    ("input", sc.INPUT_TOKEN_KEYS),
    ("output", sc.OUTPUT_TOKEN_KEYS),
    ("cache_read", sc.CACHE_READ_KEYS),
    ("cache_write", sc.CACHE_WRITE_KEYS),
    ("cache_write_1h", (sc.CACHE_CREATION_1H_INPUT_TOKENS,)),
    ("reasoning", sc.REASONING_KEYS),
    ("audio_input", (sc.AUDIO_INPUT_TOKENS,)),
    ("audio_output", (sc.AUDIO_OUTPUT_TOKENS,)),
    ("reported_cost", sc.REPORTED_COST_KEYS),
    ("stream", sc.STREAM_KEYS),
    ("ttfc", sc.TTFC_KEYS),
    ("service_tier", sc.SERVICE_TIER_KEYS),
    ("environment", sc.ENVIRONMENT_KEYS),
    ("user", sc.USER_KEYS),
    ("session", sc.SESSION_KEYS),
    ("sender", (sc.TELEMETRY_SDK_NAME,)),
    ("billable", (sc.BILLABLE,)),
    ("error_type", (sc.ERROR_TYPE,)),
    ("retries", (sc.RETRIES,)),
    ("provider_billed", (sc.PROVIDER_BILLED,)),
    ("project", (sc.PROJECT,)),
    ("feature", (sc.FEATURE,)),
    ("experiment", (sc.EXPERIMENT,)),
    ("variant", (sc.VARIANT,)),
    ("batch", (sc.BATCH,)),
    ("usage_missing", (sc.USAGE_MISSING,)),
    ("fingerprint", (sc.PROMPT_FINGERPRINT,)),
    ("prompt_name", sc.PROMPT_NAME_KEYS),
    ("prompt_version", sc.PROMPT_VERSION_KEYS),
    ("template_fingerprint", (sc.PROMPT_TEMPLATE_FINGERPRINT,)),
    ("simhash", (sc.PROMPT_SIGNATURE,)),
)


# Fields read as numbers or flags; every other field is text (a non-string value is turned into its str()).
_NOT_TEXT = frozenset(
    {
        "input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning", "audio_input", "audio_output",
        "reported_cost", "stream", "ttfc", "billable", "retries", "provider_billed", "batch", "usage_missing",
    }
)  # fmt: skip


def _span_fields() -> dict[str, tuple[str, int, bool]]:
    fields: dict[str, tuple[str, int, bool]] = {}
    for name, keys in _VARIANTS:
        for rank, key in enumerate(keys):
            fields.setdefault(key, (name, rank, name not in _NOT_TEXT))
    for key, name in dialects.attribute_fields().items():  # a dialect's own names rank after the convention's
        fields.setdefault(key, (name, 50, name not in _NOT_TEXT and name not in dialects.NUMBER_FIELDS))
    return fields


_SPAN_FIELDS = _span_fields()
_RESOURCE_KEYS = frozenset(
    {"service.name", sc.PROJECT, sc.TELEMETRY_SDK_NAME, *sc.RESOURCE_ENVIRONMENT_KEYS}
)  # fmt: skip
_TOKEN_FIELDS = (
    ("input", "input tokens"),
    ("output", "output tokens"),
    ("cache_read", "cache read tokens"),
    ("cache_write", "cache creation tokens"),
    ("cache_write_1h", "1h cache creation tokens"),
    ("reasoning", "reasoning tokens"),
    ("audio_input", "audio input tokens"),
    ("audio_output", "audio output tokens"),
)


INVALID_SPAN = "invalid_span"  # the rejected-spans reason of an InvalidSpan


class InvalidSpan(ValueError):
    """A GenAI span that cannot be accounted (bad token counts, no model, absurd time)."""


@dataclass(slots=True)
class Normalized:
    calls: list[LlmCall] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # a message per rejected span (the first 100)
    rejected_count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # rejected spans by reason (bounds.REASONS, "invalid_span")
    examples: dict[str, str] = field(default_factory=dict)  # the first rejection message of each reason
    other_spans: int = 0  # non-GenAI or non-billable spans
    sender: str = ""  # who sent the export (its key, or its address without keys): the ingest rate limit's bucket
    spans: list[Span] = field(default_factory=list)  # the span of each call (only when asked: forwarding)
    total_spans: int = 0
    rows: bytes | None = None  # the priced calls as COPY rows (storage.copy_rows), made by the receiver
    # (instrumentation scope, "call" or the reason a GenAI-looking span was not counted) -> spans (doctor)
    scopes: dict[tuple[str, str], int] = field(default_factory=dict)


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


def _fields(attributes: Any) -> tuple[_Attrs, dict[str, str]]:
    """A span's cost-relevant attributes by field (see ``_SPAN_FIELDS``), and its ``llmmeter.tag.*`` tags.

    Only those values are decoded: prompt contents and the like are never converted.
    """
    fields: _Attrs = {}
    ranks: dict[str, int] = {}
    tags: dict[str, str] = {}
    known = _SPAN_FIELDS
    for kv in attributes:
        key = kv.key
        field = known.get(key)
        if field is None:
            if key.startswith(_TAG_PREFIX) and len(key) > _TAG_PREFIX_LEN:  # a tag with a name
                value = kv.value
                tags[key[_TAG_PREFIX_LEN:]] = value.string_value or _str(any_value(value))
            continue
        value = kv.value
        name, rank, text = field
        decoded = value.string_value  # most attributes are strings: one read instead of WhichOneof + getattr
        if not decoded:
            kind = value.WhichOneof("value")
            decoded = getattr(value, kind) if kind in _SCALARS else any_value(value)
            if decoded is None or decoded == "":
                continue  # an empty variant does not hide another one
            if text:
                decoded = str(decoded)
        best = ranks.get(name)
        if best is not None and best < rank:
            continue  # a better-ranked variant of this field came first
        ranks[name] = rank
        fields[name] = decoded
    return fields, tags


def _count(value: Any, name: str) -> int:
    """A token count; raises InvalidSpan naming ``name`` when it is not a plausible one."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, float | str) and not isinstance(value, bool):
        try:
            count = int(value)
        except (ValueError, OverflowError):
            raise InvalidSpan(f"{name} is not a number: {value!r}") from None
    else:
        raise InvalidSpan(f"{name} is not a number: {value!r}")
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


def is_llm_call(fields: _Attrs) -> bool:
    if "provider" not in fields:
        return False
    operation = fields.get("operation", fields.get("legacy_operation"))
    if operation is not None and str(operation).lower() not in sc.BILLABLE_OPERATIONS:
        return False
    if operation is None and "input" not in fields and "output" not in fields:
        # No operation and no usage: an API call that is not a model call (e.g. the Anthropic SDK's own
        # span for the free messages.count_tokens, or sessions.create) — never a $0 "chat".
        return False
    return fields.get("billable") is not False


def _operation(fields: _Attrs, span_name: str) -> str:
    raw = fields.get("operation")
    if raw is not None:
        operation = str(raw).lower()
    else:
        operation = str(fields.get("legacy_operation") or "chat").lower()
        # OpenLLMetry's Anthropic instrumentation marks Messages calls "completion" on spans named "anthropic.chat"
        if operation == "completion" and span_name.endswith(".chat"):
            operation = "chat"
    return sc.OPERATION_ALIASES.get(operation, operation)


def _reported_cost(reported: Any) -> Decimal | None:
    if reported is None or isinstance(reported, bool):
        return None
    try:
        value = Decimal(str(reported))
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


def _usage(fields: _Attrs, provider: str, sender: str) -> tuple[Usage, bool]:
    get = fields.get
    counts = [0 if (value := get(key)) is None else _count(value, name) for key, name in _TOKEN_FIELDS]
    input_tokens, output, cache_read, cache_write, cache_write_1h, reasoning, audio_in, audio_out = counts
    if cache_write_1h > cache_write:
        raise InvalidSpan("1h cache creation tokens exceed cache creation tokens")
    cached = cache_read + cache_write
    if cached and ((sender in sc.RAW_INPUT_SENDERS and provider in sc.INPUT_EXCLUDES_CACHE) or input_tokens < cached):
        input_tokens += cached
    if audio_in > input_tokens:
        raise InvalidSpan("audio input tokens exceed input tokens")
    usage = Usage(input_tokens, output, cache_read, cache_write, cache_write_1h, reasoning, audio_in, audio_out)
    return usage, "input" not in fields and "output" not in fields


@dataclass(frozen=True, slots=True)
class _Resource:
    """What a span's resource contributes to its calls (read once per resource)."""

    service_name: str
    project: str
    environment: str
    sender: str


def _resource(attributes: Any) -> _Resource:
    attrs = {kv.key: any_value(kv.value) for kv in attributes if kv.key in _RESOURCE_KEYS}
    return _Resource(
        service_name=_str(attrs.get("service.name")),
        project=_str(attrs.get(sc.PROJECT)),
        environment=_str(_first(attrs, sc.RESOURCE_ENVIRONMENT_KEYS)),
        sender=_str(attrs.get(sc.TELEMETRY_SDK_NAME)),
    )


def to_call(span: Span, fields: _Attrs, tags: dict[str, str], resource: _Resource, now_ns: int) -> LlmCall:
    """Build one LlmCall from a GenAI span; raises InvalidSpan naming the problem."""
    trace_id = span.trace_id
    span_id = span.span_id
    if len(span_id) != 8 or len(trace_id) != 16:
        raise InvalidSpan("span has no valid trace_id/span_id")
    start_ns = span.start_time_unix_nano
    if not (_EARLIEST_NS <= start_ns <= now_ns + _FUTURE_SLACK_NS):
        raise InvalidSpan(f"start time {start_ns} is not a plausible time")
    get = fields.get
    provider = provider_name(fields["provider"])
    request_model = get("request_model", "")
    response_model = get("response_model", "")
    if not request_model and not response_model:
        raise InvalidSpan("missing model (gen_ai.request.model / gen_ai.response.model)")
    usage, usage_missing = _usage(fields, provider, (get("sender") or resource.sender).lower())
    error_type = get("error_type", "")
    ttfc = get("ttfc")
    retries = get("retries")
    return LlmCall(
        trace_id=trace_id.hex(),
        span_id=span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        start_ns=start_ns,
        end_ns=span.end_time_unix_nano,
        provider=provider,
        operation=_operation(fields, span.name),
        request_model=request_model or response_model,
        response_model=response_model,
        response_id=get("response_id", ""),
        service_name=resource.service_name,
        project=get("project") or resource.project,
        feature=get("feature", ""),
        environment=get("environment") or resource.environment,
        user_id=get("user", ""),
        session_id=get("session", ""),
        experiment=get("experiment", ""),
        variant=get("variant", ""),
        tags=tags,
        usage=usage,
        usage_missing=usage_missing or get("usage_missing") is True,
        service_tier=get("service_tier", ""),
        batch=_bool(get("batch")),
        streaming=_bool(get("stream")),
        billable=get("provider_billed") is not False,
        status="error" if span.status.code == _STATUS_ERROR or error_type else "ok",
        error_type=error_type,
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) and 0 < retries < 1000 else 0,
        ttfc_s=float(ttfc) if isinstance(ttfc, int | float) and not isinstance(ttfc, bool) and ttfc >= 0 else None,
        prompt_fingerprint=get("fingerprint", ""),
        prompt_name=get("prompt_name", ""),
        prompt_version=get("prompt_version", ""),
        template_fingerprint=get("template_fingerprint", ""),
        prompt_simhash=_signature(get("simhash", "")),
        reported_cost=_reported_cost(get("reported_cost")),
    )


_SIGNATURE = re.compile(r"[0-9a-f]{16}")
MAX_SCOPE_VERSION_CHARS = 64


def _signature(value: str) -> str:
    """A prompt signature as 16 lower-case hex digits; anything else is not one (dropped, the call kept)."""
    value = value.lower()
    return value if _SIGNATURE.fullmatch(value) else ""


def _first(attrs: _Attrs, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _read_in_c(body: bytes | None) -> tuple[list[tuple[_Attrs, dict[str, str]] | None], bool]:
    """Every span's ``_fields`` from the protobuf bytes, by the C reader when it is built (hatch_build.py), and
    whether all its values passed the reader's screen for ``bounds`` (short, no NUL, numbers in range)."""
    if body is None or _c_span_fields is None:
        return [], False
    try:
        read, screened = _c_span_fields(body, _SPAN_FIELDS, _TAG_PREFIX, bounds.SCREEN_BYTES, bounds.MAX_TOKENS)
    except (ValueError, TypeError):  # bytes the C reader did not accept, or a stale build: read them in Python
        return [], False
    return read, screened


def normalize(
    request: ExportTraceServiceRequest, now_ns: int | None = None, keep_spans: bool = False, body: bytes | None = None
) -> Normalized:
    """Every LLM call in an export, and a message for each GenAI span that had to be rejected.

    ``body``: the protobuf bytes ``request`` was parsed from, when there are some: span attributes are then read
    from them in C (three to four times faster), the rest from ``request``.
    """
    now_ns = now_ns if now_ns is not None else time.time_ns()
    out = Normalized()
    calls = out.calls
    total = 0
    read, screened = _read_in_c(body)
    for resource_spans in request.resource_spans:
        resource = _resource(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            version = scope_spans.scope.version
            if len(version) > MAX_SCOPE_VERSION_CHARS or not version.isprintable():
                version = ""  # not a version: the calls are kept, the version is not
            scoped = dialects.for_scope(scope)
            calls_before = len(calls)
            spans = scope_spans.spans
            first = total
            total += len(spans)
            for i, span in enumerate(spans, first):
                entry = read[i] if i < len(read) else None
                fields, tags = entry if entry is not None else _fields(span.attributes)
                dialect = dialects.adapt(scoped, fields) if fields else scoped
                if not is_llm_call(fields):
                    out.other_spans += 1
                    reason = dialects.why_not_counted(fields, span.attributes)
                    if reason is not None:
                        out.scopes[scope, reason] = out.scopes.get((scope, reason), 0) + 1
                    continue
                try:
                    bounds.check(span, fields, tags, resource, screened and entry is not None)  # limits: bounds.py
                    if len(scope) > bounds.MAX_TEXT_CHARS or not scope.isprintable():
                        bounds.check_scope(scope)
                    call = to_call(span, fields, tags, resource, now_ns)
                except (InvalidSpan, bounds.OutOfBounds) as exc:
                    out.scopes[scope, "rejected"] = out.scopes.get((scope, "rejected"), 0) + 1
                    out.rejected_count += 1
                    reason = exc.reason if isinstance(exc, bounds.OutOfBounds) else INVALID_SPAN
                    message = f"span {span.span_id.hex() or '?'}: {exc}"
                    out.reasons[reason] = out.reasons.get(reason, 0) + 1
                    out.examples.setdefault(reason, message)
                    if len(out.rejected) < MAX_REJECTED_MESSAGES:
                        out.rejected.append(message)
                    continue
                call.usage_incomplete = dialects.missing_classes(dialect, call.provider, fields)
                call.usage_missing = call.usage_missing or bool(call.usage_incomplete)
                call.scope = scope
                call.scope_version = version
                call.completeness = identity.completeness(fields)
                calls.append(call)
                if keep_spans:
                    out.spans.append(span)
            if len(calls) > calls_before:
                out.scopes[scope, "call"] = out.scopes.get((scope, "call"), 0) + len(calls) - calls_before
    out.total_spans = total
    identity.assign(calls)
    return out
