"""OTLP/JSON (``application/json``) to and from the protobuf messages the rest of the collector uses.

The OTLP/HTTP spec's JSON mapping differs from protobuf's canonical one in two ways handled here:
trace and span ids are hex strings (not base64), and enum values are integers. 64-bit integers may come
as strings or numbers (both accepted), field names in lowerCamelCase (original snake_case also accepted),
and unknown fields are ignored, as the spec asks of receivers.

Hostile bodies get ``JsonBodyError`` (a 400), never another exception: nesting too deep for the parsers
(RecursionError), numbers protobuf cannot hold, and whatever the protobuf JSON parser raises on them. A lone
surrogate (``"\\ud800"``, which JSON allows and Unicode does not; a JS string cut inside an emoji) is
replaced by U+FFFD, as a UTF-8 decoder does with a broken sequence, so it never reaches protobuf or Postgres.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_SURROGATE = re.compile("[\ud800-\udfff]")
# Bytes that can decode to a lone surrogate: a \uD8xx-\uDFxx escape, or UTF-8-encoded surrogates.
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_ID_FIELDS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8, "parentSpanId": 8, "parent_span_id": 8}


class JsonBodyError(ValueError):
    """The body is not OTLP/JSON; the message names the field."""


def _hex_to_b64(value: Any, field: str, size: int, where: str) -> str:
    if not isinstance(value, str):
        raise JsonBodyError(f"{where}.{field}: must be a hex string")
    if value == "":
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise JsonBodyError(f"{where}.{field}: {value!r} is not hex") from None
    if len(raw) != size:
        raise JsonBodyError(f"{where}.{field}: must be {size * 2} hex characters, got {len(value)}")
    return base64.b64encode(raw).decode("ascii")


def _fix_ids(obj: dict[str, Any], where: str) -> None:
    for field, size in _ID_FIELDS.items():
        if field in obj:
            obj[field] = _hex_to_b64(obj[field], field, size, where)


def _spans(data: dict[str, Any]) -> None:
    for i, rs in enumerate(_list(data, "resourceSpans", "resource_spans", "")):
        for j, ss in enumerate(_list(rs, "scopeSpans", "scope_spans", f"resourceSpans[{i}]")):
            for k, span in enumerate(_list(ss, "spans", "spans", f"resourceSpans[{i}].scopeSpans[{j}]")):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                if not isinstance(span, dict):
                    raise JsonBodyError(f"{where}: must be an object")
                _fix_ids(span, where)
                for n, link in enumerate(_list(span, "links", "links", where)):
                    if isinstance(link, dict):
                        _fix_ids(link, f"{where}.links[{n}]")


def _list(obj: Any, camel: str, snake: str, where: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise JsonBodyError(f"{where or 'body'}: must be an object")
    value = obj.get(camel, obj.get(snake, []))
    if not isinstance(value, list):
        raise JsonBodyError(f"{where + '.' if where else ''}{camel}: must be an array")
    return value


def _clean(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JsonBodyError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JsonBodyError("body: must be a JSON object")
    if _SURROGATE_BYTES.search(body):
        data = _clean(data)
    return data


def _parse(data: dict[str, Any], message: Message) -> None:
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise JsonBodyError(f"body is not OTLP/JSON: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, SystemError) as exc:
        # protobuf's parser lets some hostile values through as other errors (a SystemError from upb, say)
        raise JsonBodyError(f"body is not OTLP/JSON: {type(exc).__name__}: {exc}") from None


def parse_traces(body: bytes) -> ExportTraceServiceRequest:
    data = _load(body)
    _spans(data)
    request = ExportTraceServiceRequest()
    _parse(data, request)
    return request


def parse_metrics(body: bytes) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    _parse(_load(body), request)
    return request


def dumps(message: Message) -> bytes:
    """A response message as OTLP/JSON (lowerCamelCase; int64 as strings)."""
    return json_format.MessageToJson(message, indent=None).encode("utf-8")
