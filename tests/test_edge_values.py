"""Limits at the edge (ingest/bounds.py): a span carrying a value llmmeter would store that is too long, not finite, out
of range or not storable text is rejected by name (OTLP partial success + a metric by reason); the good spans
of the same export are stored. gzip bodies: every member is read, a truncated stream or trailing bytes is a 400.
Real collector, real Postgres."""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from llmmeter_collector.config import Settings
from llmmeter_collector.ingest import bounds
from llmmeter_collector.ingest.normalize import normalize
from llmmeter_collector.semconv import PROMPT_FINGERPRINT, SERVICE_TIER_KEYS
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF

JSON = {"Content-Type": "application/json"}
TTFC = "gen_ai.response.time_to_first_chunk"


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _export(*spans: dict[str, object], resource: dict[str, object] | None = None) -> ExportTraceServiceRequest:
    """GenAI spans given as attribute dicts; span id = position + 1, trace id unique per call of this function."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(_kv(k, v) for k, v in (resource or {"service.name": "shop"}).items())
    scope_spans = rs.scope_spans.add()
    trace_id = time.time_ns().to_bytes(16, "big")
    start = time.time_ns()
    for i, attrs in enumerate(spans, start=1):
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = i.to_bytes(8, "big")
        span.name = "chat"
        span.start_time_unix_nano = start
        span.end_time_unix_nano = start + 500_000_000
        span.attributes.extend(_kv(k, v) for k, v in attrs.items())
    return request


def _send(collector: BackgroundCollector, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
    r = httpx.post(collector.url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert r.status_code == 200, r.text
    return ExportTraceServiceResponse.FromString(r.content)


def _rows(settings: Settings, columns: str = "span_id") -> list[tuple[Any, ...]]:
    with psycopg.connect(settings.database_url, options=f"-c search_path={settings.database_schema}") as conn:
        return conn.execute(f"SELECT {columns} FROM llm_calls ORDER BY span_id").fetchall()


def _rejected(collector: BackgroundCollector) -> dict[str, float]:
    text = httpx.get(collector.url + "/metrics").text
    found = re.findall(r'^llmmeter_collector_spans_rejected_total\{reason="([a-z_]+)"\} ([0-9.]+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def _one_bad_among_good(
    collector: BackgroundCollector, settings: Settings, bad: dict[str, object], reason: str, message: str
) -> None:
    response = _send(collector, _export(CHAT, {**CHAT, **bad}, CHAT))
    assert response.partial_success.rejected_spans == 1
    assert f"span 0000000000000002: {message}" in response.partial_success.error_message
    assert [row[0] for row in _rows(settings)] == ["0000000000000001", "0000000000000003"]
    assert _rejected(collector) == {reason: 1.0}


A = bounds.MAX_ATTRIBUTION_CHARS
TOO_LONG = [
    ("llmmeter.project", A),
    ("llmmeter.feature", A),
    ("llmmeter.experiment", A),
    ("llmmeter.variant", A),
    ("llmmeter.environment", bounds.MAX_ENVIRONMENT_CHARS),
    ("user.id", bounds.MAX_USER_CHARS),
    ("session.id", bounds.MAX_USER_CHARS),
    ("gen_ai.request.model", bounds.MAX_MODEL_CHARS),
    ("gen_ai.response.model", bounds.MAX_MODEL_CHARS),
    ("gen_ai.provider.name", bounds.MAX_NAME_CHARS),
    (SERVICE_TIER_KEYS[0], bounds.MAX_NAME_CHARS),
    (PROMPT_FINGERPRINT, bounds.MAX_ID_CHARS),
    ("gen_ai.response.id", bounds.MAX_ID_CHARS),
    ("error.type", bounds.MAX_TEXT_CHARS),
    ("llmmeter.tag.team", bounds.MAX_TAG_VALUE_CHARS),
]


@pytest.mark.parametrize(("attribute", "limit"), TOO_LONG, ids=[a for a, _ in TOO_LONG])
def test_a_value_over_its_limit_rejects_its_span_and_keeps_the_others(
    collector: BackgroundCollector, settings: Settings, attribute: str, limit: int
) -> None:
    message = f"{attribute} is {limit + 1} characters (limit {limit})"
    _one_bad_among_good(collector, settings, {attribute: "x" * (limit + 1)}, "value_too_long", message)


def test_a_long_tag_key_and_too_many_tags_are_rejected(collector: BackgroundCollector, settings: Settings) -> None:
    key = "k" * (bounds.MAX_TAG_KEY_CHARS + 1)
    tags = {f"llmmeter.tag.t{i}": "v" for i in range(bounds.MAX_TAGS + 1)}
    response = _send(collector, _export(CHAT, {**CHAT, f"llmmeter.tag.{key}": "v"}, {**CHAT, **tags}))
    assert response.partial_success.rejected_spans == 2
    assert f"is {len(key)} characters (limit {bounds.MAX_TAG_KEY_CHARS})" in response.partial_success.error_message
    assert f"has {bounds.MAX_TAGS + 1} tags (limit {bounds.MAX_TAGS})" in response.partial_success.error_message
    assert [row[0] for row in _rows(settings)] == ["0000000000000001"]
    assert _rejected(collector) == {"value_too_long": 2.0}


def test_an_over_long_resource_service_name_rejects_only_that_resources_spans(
    collector: BackgroundCollector, settings: Settings
) -> None:
    request = _export(CHAT)
    other = _export(CHAT, resource={"service.name": "s" * (bounds.MAX_TEXT_CHARS + 1)})
    other.resource_spans[0].scope_spans[0].spans[0].span_id = (9).to_bytes(8, "big")
    request.resource_spans.extend(other.resource_spans)
    response = _send(collector, request)
    assert response.partial_success.rejected_spans == 1
    assert "resource service.name is 257 characters (limit 256)" in response.partial_success.error_message
    assert _rows(settings, "span_id, service_name") == [("0000000000000001", "shop")]


NUMBERS = [
    ({"gen_ai.usage.input_tokens": float("inf")}, "non_finite_number", "gen_ai.usage.input_tokens is inf"),
    ({"gen_ai.usage.output_tokens": float("-inf")}, "non_finite_number", "gen_ai.usage.output_tokens is -inf"),
    ({"gen_ai.usage.input_tokens": float("nan")}, "non_finite_number", "gen_ai.usage.input_tokens is nan"),
    ({"gen_ai.usage.input_tokens": "Infinity"}, "non_finite_number", "gen_ai.usage.input_tokens is inf"),
    ({"gen_ai.usage.output_tokens": 10**12}, "out_of_range", "output tokens is absurdly large: 1000000000000"),
    # named by the convention's attribute for the field, whichever variant was sent
    ({"gen_ai.server.time_to_first_token": float("inf")}, "non_finite_number", f"{TTFC} is inf"),
    ({TTFC: 10.0**9}, "out_of_range", f"{TTFC} is 1e+09 s (limit 604800 s)"),
    ({TTFC: 10.0**6}, "out_of_range", f"{TTFC} is 1e+06 s (limit 604800 s)"),  # passes the C reader's screen
    ({"gen_ai.usage.cost": "1" * 5000}, "out_of_range", "gen_ai.usage.cost is 5000 characters (limit 40)"),
    ({"gen_ai.usage.cost": float("inf")}, "non_finite_number", "gen_ai.usage.cost is inf"),
    ({"gen_ai.usage.cost": "NaN"}, "non_finite_number", "gen_ai.usage.cost is NaN"),
    ({"gen_ai.usage.cost": 1e300}, "out_of_range", "gen_ai.usage.cost is out of range (limit 1000000 USD)"),
    ({"gen_ai.usage.cost": 5e6}, "out_of_range", "gen_ai.usage.cost is out of range (limit 1000000 USD)"),
    ({"gen_ai.usage.cost": "1e-999999"}, "out_of_range", "gen_ai.usage.cost has digits below 1e-30"),
]


@pytest.mark.parametrize(("bad", "reason", "message"), NUMBERS, ids=[m for _, _, m in NUMBERS])
def test_a_non_finite_or_out_of_range_number_rejects_its_span(
    collector: BackgroundCollector, settings: Settings, bad: dict[str, object], reason: str, message: str
) -> None:
    _one_bad_among_good(collector, settings, bad, reason, message)


@pytest.mark.parametrize(
    "bad",
    [bad for bad, _, _ in NUMBERS]
    + [{attribute: "x" * (limit + 1)} for attribute, limit in TOO_LONG]
    + [
        {"user.id": "a\x00"},
        {"llmmeter.tag.k\x00": "v"},
        {"llmmeter.tag.k": "é" * 40},
        {"gen_ai.usage.input_tokens": "12"},
    ],
)
def test_the_c_reader_and_the_python_reader_reject_alike(bad: dict[str, object]) -> None:
    """Protobuf bodies are read in C (which screens values for ingest/bounds.py), OTLP/JSON in Python: same verdicts."""
    request = _export(CHAT, {**CHAT, **bad})
    in_c = normalize(request, body=request.SerializeToString())
    in_python = normalize(request)
    assert in_c.rejected == in_python.rejected
    assert in_c.reasons == in_python.reasons
    assert [c.span_id for c in in_c.calls] == [c.span_id for c in in_python.calls]


def test_nul_in_a_stored_value_rejects_its_span_and_nothing_reaches_postgres(
    collector: BackgroundCollector, settings: Settings
) -> None:
    request = _export(
        CHAT,
        {**CHAT, "user.id": "u\x001"},
        {**CHAT, "llmmeter.tag.team": "a\x00"},
        {**CHAT, "gen_ai.request.model": "gpt\x00"},
        {**CHAT, "gen_ai.prompt": "a prompt with a \x00 is not stored, so it is no reason to reject"},
    )
    response = _send(collector, request)
    assert response.partial_success.rejected_spans == 3
    message = response.partial_success.error_message
    assert "span 0000000000000002: user.id contains a NUL character" in message
    assert "span 0000000000000003: llmmeter.tag.team contains a NUL character" in message
    assert "span 0000000000000004: gen_ai.request.model contains a NUL character" in message
    assert [row[0] for row in _rows(settings)] == ["0000000000000001", "0000000000000005"]
    assert _rejected(collector) == {"invalid_string": 3.0}
    assert _send(collector, _export(CHAT)).partial_success.rejected_spans == 0  # later exports are stored


def test_a_wrong_size_parent_span_id_and_an_absurd_duration_are_rejected(
    collector: BackgroundCollector, settings: Settings
) -> None:
    request = _export(CHAT, CHAT, CHAT)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].parent_span_id = b"\x01" * 5000
    spans[2].end_time_unix_nano = spans[2].start_time_unix_nano + 30 * 86_400 * 10**9
    response = _send(collector, request)
    assert response.partial_success.rejected_spans == 2
    assert "parent_span_id is 5000 bytes (must be 8 or empty)" in response.partial_success.error_message
    assert "span duration is 2.592e+06 s (limit 604800 s)" in response.partial_success.error_message
    assert [row[0] for row in _rows(settings)] == ["0000000000000001"]
    assert _rejected(collector) == {"invalid_id": 1.0, "out_of_range": 1.0}


def test_values_at_their_limits_in_four_byte_characters_are_stored(
    collector: BackgroundCollector, settings: Settings
) -> None:
    """The limits fit what Postgres can index: every rollup key column at its limit, in 4-byte UTF-8, commits."""
    wide = "😀"
    at_limit = {
        "llmmeter.project": wide * bounds.MAX_ATTRIBUTION_CHARS,
        "llmmeter.feature": wide * bounds.MAX_ATTRIBUTION_CHARS,
        "llmmeter.environment": wide * bounds.MAX_ENVIRONMENT_CHARS,
        "gen_ai.provider.name": wide * bounds.MAX_NAME_CHARS,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": wide * bounds.MAX_MODEL_CHARS,
        "user.id": wide * bounds.MAX_USER_CHARS,
        "session.id": wide * bounds.MAX_USER_CHARS,
        "llmmeter.tag." + "k" * bounds.MAX_TAG_KEY_CHARS: wide * bounds.MAX_TAG_VALUE_CHARS,
        "gen_ai.usage.input_tokens": bounds.MAX_TOKENS,
        "gen_ai.usage.output_tokens": 1,
    }
    response = _send(collector, _export(at_limit))
    assert response.partial_success.rejected_spans == 0, response.partial_success.error_message
    (row,) = _rows(settings, "project, model, user_id, input_tokens")
    assert row == (wide * bounds.MAX_ATTRIBUTION_CHARS, wide * bounds.MAX_MODEL_CHARS, wide * 256, bounds.MAX_TOKENS)
    assert httpx.get(collector.url + "/readyz").status_code == 200


def test_otlp_json_numbers_and_lone_surrogates(collector: BackgroundCollector, settings: Settings) -> None:
    def span(n: int, *attributes: str) -> str:
        base = [
            '{"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}}',
            '{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}}',
            '{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}}',
        ]
        return (
            f'{{"traceId": "{"cd" * 16}", "spanId": "{n:016x}", "name": "chat", '
            f'"startTimeUnixNano": "{time.time_ns()}", "attributes": [{", ".join([*base, *attributes])}]}}'
        )

    spans = [
        span(1),
        span(2, '{"key": "gen_ai.usage.output_tokens", "value": {"doubleValue": "NaN"}}'),
        span(3, '{"key": "user.id", "value": {"stringValue": "u-\\ud83d"}}'),  # a JS string cut in an emoji
    ]
    body = '{"resourceSpans": [{"scopeSpans": [{"spans": [' + ", ".join(spans) + "]}]}]}"
    r = httpx.post(collector.url + "/v1/traces", content=body.encode(), headers=JSON)
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert (
        "span 0000000000000002: gen_ai.usage.output_tokens is nan (must be a finite number)" in partial["errorMessage"]
    )
    # the lone surrogate is replaced by U+FFFD, as a UTF-8 decoder does: the span is stored, the text is valid
    assert _rows(settings, "span_id, user_id") == [("0000000000000001", ""), ("0000000000000003", "u-\ufffd")]

    deep = '{"resourceSpans": ' + "[" * 5000 + "]" * 5000 + "}"
    r = httpx.post(collector.url + "/v1/traces", content=deep.encode(), headers=JSON)
    assert r.status_code == 400 and "recursion" in r.json()["message"]


def test_a_protobuf_string_that_is_not_utf8_is_400(collector: BackgroundCollector, settings: Settings) -> None:
    body = _export({**CHAT, "user.id": "SUR"}).SerializeToString().replace(b"SUR", b"\xed\xa0\x80")
    r = httpx.post(collector.url + "/v1/traces", content=body, headers=PROTOBUF)
    assert r.status_code == 400 and "UTF-8" in r.text
    assert _rows(settings) == []


def test_rejections_over_grpc_and_one_log_line_per_reason(
    collector: BackgroundCollector, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llmmeter.collector")
    with grpc.insecure_channel(collector.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for _ in range(3):
            request = _export(CHAT, {**CHAT, "llmmeter.project": "p" * 3000})
            response = stub.Export(request, timeout=10)
            assert response.partial_success.rejected_spans == 1
            assert "llmmeter.project is 3000 characters (limit 128)" in response.partial_success.error_message
    assert len(_rows(settings)) == 3
    assert _rejected(collector) == {"value_too_long": 3.0}
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 1 and "value_too_long" in lines[0] and "llmmeter.project is 3000" in lines[0]


def _gzip_post(collector: BackgroundCollector, body: bytes) -> httpx.Response:
    headers = {**PROTOBUF, "Content-Encoding": "gzip"}
    return httpx.post(collector.url + "/v1/traces", content=body, headers=headers)


def test_every_gzip_member_is_ingested(collector: BackgroundCollector, settings: Settings) -> None:
    """Two protobuf messages concatenated are one message with both span lists (protobuf merges repeated fields)."""
    first, second = _export(CHAT, CHAT), _export(CHAT)
    second.resource_spans[0].scope_spans[0].spans[0].span_id = (7).to_bytes(8, "big")
    r = _gzip_post(collector, gzip.compress(first.SerializeToString()) + gzip.compress(second.SerializeToString()))
    assert r.status_code == 200
    assert [row[0] for row in _rows(settings)] == ["0000000000000001", "0000000000000002", "0000000000000007"]


def test_a_truncated_gzip_stream_or_bytes_after_it_are_400(collector: BackgroundCollector, settings: Settings) -> None:
    packed = gzip.compress(_export(CHAT).SerializeToString())
    trailing = _gzip_post(collector, packed + b"garbage")
    assert trailing.status_code == 400 and "7 bytes of trailing data after the gzip stream" in trailing.text
    truncated = _gzip_post(collector, packed[:-6])
    assert truncated.status_code == 400 and "truncated" in truncated.text
    assert _rows(settings) == []
    assert _gzip_post(collector, packed).status_code == 200
    assert len(_rows(settings)) == 1


def test_a_refusal_message_with_a_lone_surrogate_is_a_clean_400(collector: BackgroundCollector) -> None:
    """The error text of a body that does not parse may quote it; the answer is still a well-formed 400."""
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "\ud800"}]}]}]}).encode()
    r = httpx.post(collector.url + "/v1/traces", content=body, headers=JSON)
    assert r.status_code == 400 and "traceId" in r.json()["message"]
