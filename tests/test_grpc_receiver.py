"""OTLP/gRPC: the same pipeline as OTLP/HTTP, with gRPC status codes (real grpc client, real Postgres)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, export_request

# gRPC turns a call's timeout into a deadline on the real clock: under LLMMETER_TEST_CLOCK it must keep that clock
pytestmark = pytest.mark.real_clock


@pytest.fixture
def channel(collector: BackgroundCollector) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(collector.grpc_target) as ch:
        yield ch


def _calls(collector: BackgroundCollector) -> int:
    return int(httpx.get(collector.url + "/api/v1/summary").json()["calls"])


def test_a_grpc_export_is_stored_and_invalid_spans_are_reported(
    collector: BackgroundCollector, channel: grpc.Channel
) -> None:
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    request = export_request(CHAT, {**CHAT, "gen_ai.usage.output_tokens": -1}, {"http.route": "/x"})
    response = stub.Export(request, compression=grpc.Compression.Gzip, timeout=10)
    assert response.partial_success.rejected_spans == 1
    assert "output tokens is negative: -1" in response.partial_success.error_message
    assert _calls(collector) == 1
    again = stub.Export(request, timeout=10)  # a retry with the same span ids changes nothing
    assert again.partial_success.rejected_spans == 1
    assert _calls(collector) == 1
    metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)
    assert metrics.Export(metrics_service_pb2.ExportMetricsServiceRequest(), timeout=10) is not None


def test_a_body_that_does_not_parse_is_invalid_argument(collector: BackgroundCollector, channel: grpc.Channel) -> None:
    raw = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda b: b,
        response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff not protobuf", timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an OTLP ExportTraceServiceRequest" in (err.value.details() or "")
    assert _calls(collector) == 0


def test_keys_are_required_once_one_exists_and_a_single_project_key_stamps_its_project(
    collector: BackgroundCollector, channel: grpc.Channel
) -> None:
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    key = collector.collector.keys.create("shop", "ingest", ["shop"])
    viewer = collector.collector.keys.create("dash", "viewer")
    with pytest.raises(grpc.RpcError) as err:
        stub.Export(export_request(CHAT), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "ingest key is required" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as bad:
        stub.Export(export_request(CHAT), metadata=[("authorization", "Bearer llmm_wrong")], timeout=10)
    assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as wrong_role:
        stub.Export(export_request(CHAT), metadata=[("x-llmmeter-key", viewer)], timeout=10)
    assert wrong_role.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "viewer key cannot send data" in (wrong_role.value.details() or "")
    stub.Export(
        export_request({**CHAT, "llmmeter.project": "someone-else"}),
        metadata=[("authorization", f"Bearer {key}")],
        timeout=10,
    )
    admin = collector.collector.keys.create("ops", "admin")
    summary = httpx.get(collector.url + "/api/v1/summary", headers={"Authorization": f"Bearer {admin}"}).json()
    assert [row["project"] for row in summary["by_project"]] == ["shop"]


def test_oversized_message_is_refused_by_grpc(settings: Settings) -> None:
    small = Settings(**{**settings.__dict__, "max_body_bytes": 300})
    with BackgroundCollector(small) as running, grpc.insecure_channel(running.grpc_target) as ch:
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(export_request(*([CHAT] * 20)), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_full_queue_is_unavailable_over_grpc_and_the_queued_export_still_commits(settings: Settings) -> None:
    import threading
    import time

    import psycopg

    tight = Settings(**{**settings.__dict__, "max_queued_calls": 2})
    with BackgroundCollector(tight) as running, grpc.insecure_channel(running.grpc_target) as ch:
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        pipeline = running.collector.pipeline
        assert pipeline is not None
        with psycopg.connect(running.collector.dsn, options=f"-c search_path={running.collector.schema}") as blocker:
            blocker.execute("LOCK TABLE llm_rollup_minute IN ACCESS EXCLUSIVE MODE")  # the writer stalls here
            done: list[object] = []
            first = threading.Thread(
                target=lambda: done.append(
                    stub.Export(export_request(CHAT, {**CHAT, "llmmeter.feature": "b"}), timeout=30)
                )
            )
            first.start()
            deadline = time.monotonic() + 30
            while pipeline.ingestor.queued_calls < 2:
                assert time.monotonic() < deadline and not done, f"the first export did not queue: {done}"
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(export_request({**CHAT, "llmmeter.feature": "x"}, start_ns=time.time_ns() + 7), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "write queue full" in (err.value.details() or "")
            blocker.rollback()
        first.join(30)
        assert len(done) == 1
        assert _calls(running) == 2
