"""OTLP/gRPC receiver (default port 4317): TraceService and MetricsService on ``grpc.aio``.

It runs the same ``Pipeline`` as OTLP/HTTP, on its own event loop in a background thread, so a slow
HTTP client never delays gRPC exports and the other way round. Refusals map to the gRPC codes the OTLP spec
asks: INVALID_ARGUMENT (not retryable), UNAUTHENTICATED, UNAVAILABLE (retryable: queue full, Postgres
unreachable with no room to spool); messages over the size limit get gRPC's own RESOURCE_EXHAUSTED.
gzip-compressed requests (``grpc-encoding: gzip``) are decompressed by gRPC itself. The key comes from the
``authorization: Bearer …`` or ``x-llmmeter-key`` metadata.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmmeter_collector.access.keys import token_from_headers
from llmmeter_collector.ingest.normalize import Normalized
from llmmeter_collector.ingest.receiver import PROTOBUF, ExportRefused, Pipeline, bad_request, parse_traces

logger = logging.getLogger("llmmeter.collector")

_CODES = {code.value[0]: code for code in grpc.StatusCode}
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"


def _token(context: grpc.aio.ServicerContext) -> str | None:
    metadata = context.invocation_metadata() or ()
    return token_from_headers([(str(k), v if isinstance(v, str) else "") for k, v in metadata])


async def _abort(context: grpc.aio.ServicerContext, exc: ExportRefused, pipeline: Pipeline) -> None:
    pipeline.metrics.exports_refused.labels(exc.reason).inc()
    await context.abort(_CODES.get(exc.grpc_code, grpc.StatusCode.UNKNOWN), str(exc))


class _Services:
    """Handlers taking the raw request bytes: parsing happens here (off the event loop) so a body that does
    not parse gets INVALID_ARGUMENT, as the OTLP spec asks, rather than gRPC's generic deserializer error."""

    def __init__(self, pipeline: Pipeline, executor: ThreadPoolExecutor) -> None:
        self._pipeline = pipeline
        self._executor = executor

    def _prepare(self, body: bytes, token: str | None, client: str) -> tuple[ExportTraceServiceRequest, Normalized]:
        principal = self._pipeline.authenticate(token)
        request = parse_traces(body, PROTOBUF)
        return request, self._pipeline.prepare(request, principal, body, client)

    async def traces(self, body: bytes, context: grpc.aio.ServicerContext) -> ExportTraceServiceResponse:
        loop = asyncio.get_running_loop()
        try:
            client = context.peer().rpartition(":")[0]  # "ipv4:127.0.0.1:5000" -> its address
            request, result = await loop.run_in_executor(self._executor, self._prepare, body, _token(context), client)
            return await self._pipeline.commit(request, result)
        except ExportRefused as exc:
            await _abort(context, exc, self._pipeline)
            raise  # abort() raises; never reached

    def _check_metrics(self, body: bytes, token: str | None) -> None:
        self._pipeline.authenticate(token)
        try:
            ExportMetricsServiceRequest().ParseFromString(body)
        except DecodeError as exc:
            raise bad_request(f"body is not an OTLP ExportMetricsServiceRequest: {exc}") from None

    async def metrics(self, body: bytes, context: grpc.aio.ServicerContext) -> ExportMetricsServiceResponse:
        """GenAI client metrics are accepted so SDK exporters do not error, but not stored: spans are the ledger."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._check_metrics, body, _token(context))
        except ExportRefused as exc:
            await _abort(context, exc, self._pipeline)
        return ExportMetricsServiceResponse()

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def export(handler: Any, response_type: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                handler, request_deserializer=None, response_serializer=response_type.SerializeToString
            )

        return [
            grpc.method_handlers_generic_handler(
                TRACE_SERVICE, {"Export": export(self.traces, ExportTraceServiceResponse)}
            ),
            grpc.method_handlers_generic_handler(
                METRICS_SERVICE, {"Export": export(self.metrics, ExportMetricsServiceResponse)}
            ),
        ]


class GrpcReceiver:
    """The gRPC server on its own thread and event loop."""

    def __init__(self, pipeline: Pipeline, max_message_bytes: int) -> None:
        self._pipeline = pipeline
        self._max = max_message_bytes
        self._loop = asyncio.new_event_loop()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llmmeter-grpc")
        self._server: grpc.aio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="llmmeter-grpc-loop", daemon=True)
        self.port = 0

    def start(self, host: str, port: int) -> int:
        """Bind and serve; returns the bound port (useful with port 0 in tests)."""
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(host, port), self._loop).result(10)
        logger.info("llmmeter collector listening for OTLP/gRPC on %s:%d", host, self.port)
        return self.port

    async def _start(self, host: str, port: int) -> int:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max),
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers(_Services(self._pipeline, self._executor).handlers())
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        bound = server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        await server.start()
        self._server = server
        return bound

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight exports finish (up to ``grace`` seconds), stop the loop."""
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop).result(grace + 5)
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._executor.shutdown(wait=False)
