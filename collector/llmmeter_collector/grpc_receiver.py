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

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from llmmeter_collector.keys import token_from_headers
from llmmeter_collector.normalize import Normalized
from llmmeter_collector.receiver import ExportRefused, Pipeline

logger = logging.getLogger("llmmeter.collector")

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _token(context: grpc.aio.ServicerContext) -> str | None:
    metadata = context.invocation_metadata() or ()
    return token_from_headers([(str(k), v if isinstance(v, str) else "") for k, v in metadata])


async def _abort(context: grpc.aio.ServicerContext, exc: ExportRefused, pipeline: Pipeline) -> None:
    pipeline.metrics.exports_refused.labels(exc.reason).inc()
    await context.abort(_CODES.get(exc.grpc_code, grpc.StatusCode.UNKNOWN), str(exc))


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, pipeline: Pipeline, executor: ThreadPoolExecutor) -> None:
        self._pipeline = pipeline
        self._executor = executor

    def _prepare(self, request: trace_service_pb2.ExportTraceServiceRequest, token: str | None) -> Normalized:
        principal = self._pipeline.authenticate(token)
        return self._pipeline.prepare(request, principal)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._prepare, request, _token(context))
            return await self._pipeline.commit(request, result)
        except ExportRefused as exc:
            await _abort(context, exc, self._pipeline)
            raise  # abort raises; this line is never reached


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    """GenAI client metrics are accepted so SDK exporters do not error, but not stored: spans are the ledger."""

    def __init__(self, pipeline: Pipeline, executor: ThreadPoolExecutor) -> None:
        self._pipeline = pipeline
        self._executor = executor

    async def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: grpc.aio.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._pipeline.authenticate, _token(context))
        except ExportRefused as exc:
            await _abort(context, exc, self._pipeline)
        return metrics_service_pb2.ExportMetricsServiceResponse()


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
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self._pipeline, self._executor), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsService(self._pipeline, self._executor), server
        )
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
