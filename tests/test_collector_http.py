"""OTLP/HTTP beyond protobuf: OTLP/JSON, gzip, keys, 503 + Retry-After under load, error bodies per the spec."""

from __future__ import annotations

import gzip
import json
import threading
import time

import httpx
import psycopg
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF, export_request

JSON = {"Content-Type": "application/json"}


def _json_export(start_ns: int, *, tokens: str = "1000") -> dict[str, object]:
    """An OTLP/JSON body as the spec shows it: hex ids, int64 as strings, enums as integers, camelCase."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop-api"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat gpt-4o-mini",
                                "kind": 3,
                                "startTimeUnixNano": str(start_ns),
                                "endTimeUnixNano": str(start_ns + 800_000_000),
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": tokens}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 200}},
                                    {"key": "llmmeter.feature", "value": {"stringValue": "search"}},
                                ],
                                "status": {"code": 1},
                                "someFieldFromTheFuture": True,
                            },
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "0000000000000002",
                                "name": "chat",
                                "startTimeUnixNano": str(start_ns),
                                "endTimeUnixNano": str(start_ns),
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_is_accepted_gzip_too_and_answered_in_json(collector: BackgroundCollector) -> None:
    body = json.dumps(_json_export(time.time_ns())).encode()
    response = httpx.post(
        collector.url + "/v1/traces", content=gzip.compress(body), headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "span 0000000000000002: missing model (gen_ai.request.model / gen_ai.response.model)",
        }
    }
    summary = httpx.get(collector.url + "/api/v1/summary").json()
    assert summary["calls"] == 1
    assert summary["by_model"][0]["input_tokens"] == 1000 and summary["by_model"][0]["output_tokens"] == 200
    with psycopg.connect(collector.collector.dsn, options=f"-c search_path={collector.collector.schema}") as conn:
        row = conn.execute("SELECT trace_id, span_id, service_name, feature FROM llm_calls").fetchone()
    assert row == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "shop-api", "search")


def test_bad_json_gets_400_with_a_json_status_naming_the_field(collector: BackgroundCollector) -> None:
    export = _json_export(time.time_ns())
    export["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "not-hex"  # type: ignore[index]
    response = httpx.post(collector.url + "/v1/traces", content=json.dumps(export), headers=JSON)
    assert response.status_code == 400
    status = response.json()
    assert status["code"] == 3
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId: 'not-hex' is not hex" in status["message"]
    not_json = httpx.post(collector.url + "/v1/traces", content=b"{nope", headers=JSON)
    assert not_json.status_code == 400 and "body is not JSON" in not_json.json()["message"]
    bad_proto = httpx.post(collector.url + "/v1/traces", content=b"\xff\xff", headers=PROTOBUF)
    assert bad_proto.status_code == 400
    assert "not an OTLP ExportTraceServiceRequest" in status_pb2.Status.FromString(bad_proto.content).message
    assert httpx.get(collector.url + "/api/v1/summary").json()["calls"] == 0


def test_http_exports_need_a_valid_ingest_key_once_keys_exist(collector: BackgroundCollector) -> None:
    body = export_request(CHAT).SerializeToString()
    assert httpx.post(collector.url + "/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    key = collector.collector.keys.create("ingest-all", "ingest")
    collector.collector.keys.create("another", "ingest")
    refused = httpx.post(collector.url + "/v1/traces", content=body, headers=PROTOBUF)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "ingest key is required" in status_pb2.Status.FromString(refused.content).message
    ok = httpx.post(collector.url + "/v1/traces", content=body, headers={**PROTOBUF, "x-llmmeter-key": key})
    assert ok.status_code == 200
    collector.collector.keys.revoke(
        next(k.key_id for k in collector.collector.keys.list_keys() if k.name == "ingest-all")
    )
    assert (
        httpx.post(
            collector.url + "/v1/traces", content=body, headers={**PROTOBUF, "Authorization": f"Bearer {key}"}
        ).status_code
        == 401
    )
    metrics = httpx.get(collector.url + "/metrics").text
    assert 'llmmeter_collector_exports_refused_total{reason="unauthenticated"} 2.0' in metrics


def test_a_full_queue_gets_503_with_retry_after_and_the_queued_export_still_commits(settings: Settings) -> None:
    tight = Settings(**{**settings.__dict__, "max_queued_calls": 2})
    with BackgroundCollector(tight) as running:
        dsn, schema = running.collector.dsn, running.collector.schema
        with psycopg.connect(dsn, options=f"-c search_path={schema}") as blocker:
            blocker.execute("LOCK TABLE llm_rollup_minute IN ACCESS EXCLUSIVE MODE")  # the writer stalls here
            first: dict[str, httpx.Response] = {}
            body = export_request(CHAT, {**CHAT, "gen_ai.request.model": "gpt-4o"}).SerializeToString()
            sender = threading.Thread(
                target=lambda: first.update(
                    r=httpx.post(running.url + "/v1/traces", content=body, headers=PROTOBUF, timeout=30)
                )
            )
            sender.start()
            while running.collector.pipeline is not None and running.collector.pipeline.ingestor.queued_calls < 2:
                time.sleep(0.01)
            other = export_request({**CHAT, "llmmeter.feature": "x"}, start_ns=time.time_ns() + 1).SerializeToString()
            refused = httpx.post(running.url + "/v1/traces", content=other, headers=PROTOBUF)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "write queue full" in status_pb2.Status.FromString(refused.content).message
            blocker.rollback()  # release the lock
        sender.join(30)
        assert first["r"].status_code == 200
        assert ExportTraceServiceResponse.FromString(first["r"].content).partial_success.rejected_spans == 0
        assert httpx.get(running.url + "/api/v1/summary").json()["calls"] == 2
        assert 'reason="overloaded"} 1.0' in httpx.get(running.url + "/metrics").text


def test_require_keys_refuses_exports_before_any_key_exists(settings: Settings) -> None:
    strict = Settings(**{**settings.__dict__, "require_keys": True})
    with BackgroundCollector(strict) as running:
        body = export_request(CHAT).SerializeToString()
        assert httpx.post(running.url + "/v1/traces", content=body, headers=PROTOBUF).status_code == 401
