"""Forwarding: every received span goes on to another OTLP/HTTP backend, GenAI spans with their cost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmmeter_collector.config import Settings
from llmmeter_collector.ingest.normalize import attributes_dict
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF, export_request


class OtlpSink:
    """A minimal real OTLP/HTTP trace receiver: answers 200 and keeps every export it got."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.paths.append(self.path)
                sink.headers.append(dict(self.headers))
                sink.exports.append(ExportTraceServiceRequest.FromString(body))
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    s = OtlpSink()
    yield s
    s.close()


def test_every_span_is_forwarded_and_genai_spans_carry_their_cost(settings: Settings, sink: OtlpSink) -> None:
    forwarding = Settings(**{**settings.__dict__, "forward_endpoint": sink.url, "forward_headers": "x-tenant=acme"})
    request = export_request(
        CHAT,  # gpt-4o-mini: 1000 input at $0.15/M + 100 output at $0.60/M
        {**CHAT, "gen_ai.request.model": "my-private-model", "gen_ai.usage.cost": 0.5},
        {"http.request.method": "GET", "url.path": "/search"},
    )
    with BackgroundCollector(forwarding) as running:
        response = httpx.post(running.url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
        assert response.status_code == 200
        deadline = time.monotonic() + 20
        while not sink.exports and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "llmmeter_collector_forwarded_spans_total 3.0" in httpx.get(running.url + "/metrics").text
    assert sink.paths == ["/v1/traces"]
    assert sink.headers[0]["x-tenant"] == "acme"
    spans = sink.exports[0].resource_spans[0].scope_spans[0].spans
    assert len(spans) == 3
    priced, unpriced, plain = (attributes_dict(s.attributes) for s in spans)
    expected = Decimal(1000) * Decimal("0.15") / 10**6 + Decimal(100) * Decimal("0.60") / 10**6
    assert priced["llmmeter.cost.usd"] == pytest.approx(float(expected))
    assert priced["gen_ai.usage.cost"] == pytest.approx(float(expected))
    assert priced["llmmeter.cost.input_usd"] == pytest.approx(0.00015)
    assert priced["llmmeter.cost.output_usd"] == pytest.approx(0.00006)
    assert priced["gen_ai.request.model"] == "gpt-4o-mini"  # the original attributes are kept
    assert unpriced["llmmeter.cost.unpriced"] is True
    assert "gen_ai.usage.cost" in unpriced and unpriced["gen_ai.usage.cost"] == "0.5"  # the sender's own, untouched
    assert "llmmeter.cost.usd" not in unpriced
    assert plain == {"http.request.method": "GET", "url.path": "/search"}


def test_a_refused_export_is_not_forwarded(settings: Settings, sink: OtlpSink) -> None:
    forwarding = Settings(**{**settings.__dict__, "forward_endpoint": sink.url + "/v1/traces", "require_keys": True})
    with BackgroundCollector(forwarding) as running:
        body = export_request(CHAT).SerializeToString()
        assert httpx.post(running.url + "/v1/traces", content=body, headers=PROTOBUF).status_code == 401
        key = running.collector.keys.create("app", "ingest")
        ok = httpx.post(running.url + "/v1/traces", content=body, headers={**PROTOBUF, "x-llmmeter-key": key})
        assert ok.status_code == 200
    # closing the collector flushes the forward queue
    assert len(sink.exports) == 1
