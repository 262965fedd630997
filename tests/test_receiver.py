"""Bad input at the OTLP/HTTP edge gets a clear 4xx; the collector keeps running and keeps its data."""

from __future__ import annotations

import gzip

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def export_request(*spans: dict[str, object], start_ns: int | None = None) -> ExportTraceServiceRequest:
    """An OTLP export of GenAI spans given as attribute dicts (span id = position + 1)."""
    import time

    start = start_ns or time.time_ns()
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for i, attrs in enumerate(spans, start=1):
        span = scope_spans.spans.add()
        span.trace_id = bytes.fromhex("ab" * 16)
        span.span_id = i.to_bytes(8, "big")
        span.name = "chat"
        span.start_time_unix_nano = start
        span.end_time_unix_nano = start + 500_000_000
        span.attributes.extend(_kv(k, v) for k, v in attrs.items())
    return request


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 100,
}


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url + "/v1/traces", content=body, headers=headers or PROTOBUF)


def test_a_body_that_is_not_otlp_gets_400_and_earlier_data_is_intact(collector: BackgroundCollector) -> None:
    ok = _post(collector.url, export_request(CHAT).SerializeToString())
    assert ok.status_code == 200
    bad = _post(collector.url, b"\xff\xff\xff this is not protobuf")
    assert bad.status_code == 400
    assert "not an OTLP ExportTraceServiceRequest" in bad.text
    summary = httpx.get(collector.url + "/api/v1/summary").json()
    assert summary["calls"] == 1
    assert _post(collector.url, export_request({**CHAT}).SerializeToString()).status_code == 200


def test_wrong_content_type_is_415_and_bad_gzip_is_400(collector: BackgroundCollector) -> None:
    body = export_request(CHAT).SerializeToString()
    wrong = _post(collector.url, body, {"Content-Type": "text/plain"})
    assert wrong.status_code == 415 and "application/x-protobuf" in wrong.text
    bad_gzip = _post(collector.url, b"not gzip", {**PROTOBUF, "Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400 and "gzip" in bad_gzip.text
    good_gzip = _post(collector.url, gzip.compress(body), {**PROTOBUF, "Content-Encoding": "gzip"})
    assert good_gzip.status_code == 200


def test_oversized_body_is_413(settings: Settings) -> None:
    small = Settings(**{**settings.__dict__, "max_body_bytes": 200})
    with BackgroundCollector(small) as running:
        big = export_request(*([CHAT] * 20)).SerializeToString()
        response = _post(running.url, big)
        assert response.status_code == 413
        assert "exceeds the limit of 200" in response.text


def test_invalid_spans_are_rejected_by_name_and_valid_ones_kept(collector: BackgroundCollector) -> None:
    request = export_request(
        CHAT,
        {**CHAT, "gen_ai.usage.input_tokens": -5},
        {k: v for k, v in CHAT.items() if k != "gen_ai.request.model"},
        {"http.method": "GET"},  # not a GenAI span: passed over, not rejected
    )
    response = _post(collector.url, request.SerializeToString())
    assert response.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 2
    assert "input tokens is negative: -5" in parsed.partial_success.error_message
    assert "missing model" in parsed.partial_success.error_message
    assert httpx.get(collector.url + "/api/v1/summary").json()["calls"] == 1


def test_unknown_model_is_stored_unpriced_not_zero(collector: BackgroundCollector) -> None:
    request = export_request({**CHAT, "gen_ai.request.model": "my-private-model-7b"})
    assert _post(collector.url, request.SerializeToString()).status_code == 200
    summary = httpx.get(collector.url + "/api/v1/summary").json()
    assert summary["unpriced_calls"] == 1
    assert summary["unpriced_models"] == [{"provider": "openai", "model": "my-private-model-7b", "calls": 1}]
    metrics_text = httpx.get(collector.url + "/metrics").text
    assert 'llmmeter_unpriced_calls_total{feature="",model="my-private-model-7b"' in metrics_text


def test_counters_survive_a_restart(settings: Settings) -> None:
    with BackgroundCollector(settings) as first:
        assert _post(first.url, export_request(CHAT).SerializeToString()).status_code == 200
    with BackgroundCollector(settings) as second:
        text = httpx.get(second.url + "/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("llmmeter_calls_total{"))
    assert line.endswith(" 1.0")
