"""OTLP/HTTP receiver: ``POST /v1/traces`` and ``/v1/metrics`` with the status codes the OTLP spec asks.

400 for a body that does not parse, 413 for an oversized one, 415 for an unknown content type,
503 with ``Retry-After`` when the collector cannot take more or cannot commit, and ``partial_success``
naming individually rejected spans. A 200 means every accepted call is durable in Postgres.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from llmmeter_collector.ingest import Ingestor, Overloaded, StorageUnavailable
from llmmeter_collector.llmcall import LlmCall
from llmmeter_collector.metrics import Metrics
from llmmeter_collector.normalize import Normalized, normalize

logger = logging.getLogger("llmmeter.collector")

PROTOBUF = "application/x-protobuf"
RETRY_AFTER_SECONDS = 5


class BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Receiver:
    ingestor: Ingestor
    metrics: Metrics
    price: Callable[[LlmCall], None]  # attaches call.cost
    max_body_bytes: int

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyError(413, f"body of {declared} bytes exceeds the limit of {self.max_body_bytes}")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyError(413, f"body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            try:
                decompressor = zlib.decompressobj(wbits=31)
                body = decompressor.decompress(body, self.max_body_bytes + 1)
            except (zlib.error, gzip.BadGzipFile) as exc:
                raise BodyError(400, f"body is not valid gzip: {exc}") from None
            if len(body) > self.max_body_bytes or decompressor.unconsumed_tail:
                raise BodyError(413, f"decompressed body exceeds the limit of {self.max_body_bytes} bytes")
        elif encoding not in ("", "identity"):
            raise BodyError(415, f"unsupported Content-Encoding {encoding!r}")
        return body

    @staticmethod
    def _content_type(request: Request) -> str:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != PROTOBUF:
            raise BodyError(415, f"unsupported Content-Type {ctype!r}; send {PROTOBUF}")
        return ctype

    def _parse_and_price(self, body: bytes) -> Normalized:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BodyError(400, f"body is not an OTLP ExportTraceServiceRequest: {exc}") from None
        result = normalize(request)
        for call in result.calls:
            self.price(call)
        return result

    async def traces(self, request: Request) -> Response:
        try:
            self._content_type(request)
            body = await self._body(request)
            result = await run_in_threadpool(self._parse_and_price, body)
        except BodyError as exc:
            self.metrics.exports_refused.labels("bad_request" if exc.status == 400 else str(exc.status)).inc()
            return Response(str(exc), status_code=exc.status, media_type="text/plain")
        m = self.metrics
        m.spans_received.labels("genai").inc(len(result.calls) + len(result.rejected))
        m.spans_received.labels("other").inc(result.other_spans)
        if result.rejected:
            m.spans_rejected.inc(len(result.rejected))
        try:
            future = self.ingestor.submit(result.calls)
        except Overloaded as exc:
            m.exports_refused.labels("overloaded").inc()
            return _unavailable(str(exc))
        m.queue_depth.set(self.ingestor.queued_calls)
        try:
            await asyncio.wrap_future(future)
        except StorageUnavailable as exc:
            m.exports_refused.labels("storage").inc()
            return _unavailable(f"storage unavailable: {exc}")
        response = ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.rejected_spans = len(result.rejected)
            response.partial_success.error_message = "; ".join(result.rejected[:20])
        return Response(response.SerializeToString(), media_type=PROTOBUF)

    async def metrics_export(self, request: Request) -> Response:
        """GenAI client metrics are accepted (so SDK exporters do not error) but not stored: spans are the ledger."""
        try:
            self._content_type(request)
            body = await self._body(request)
            ExportMetricsServiceRequest().ParseFromString(body)
        except BodyError as exc:
            return Response(str(exc), status_code=exc.status, media_type="text/plain")
        except DecodeError as exc:
            return Response(f"body is not an OTLP ExportMetricsServiceRequest: {exc}", status_code=400)
        return Response(ExportMetricsServiceResponse().SerializeToString(), media_type=PROTOBUF)


def _unavailable(message: str) -> Response:
    return Response(
        message, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, media_type="text/plain"
    )
