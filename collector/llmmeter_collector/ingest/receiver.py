"""OTLP receivers' shared path and the OTLP/HTTP endpoints (``POST /v1/traces``, ``POST /v1/metrics``).

``Pipeline`` is what every receiver (HTTP here, gRPC in ``grpc_receiver``) runs for an export:
authenticate the key, normalize the spans into calls, stamp the key's project, price, queue for commit,
wait until durable, then hand the export to the forwarder. Refusals are ``ExportRefused`` carrying both the
HTTP status and the gRPC code the OTLP spec asks for:

=================================  ======  ===================
case                               HTTP    gRPC
=================================  ======  ===================
body does not parse                400     INVALID_ARGUMENT
no / unknown / revoked key         401     UNAUTHENTICATED
body over the size limit           413     RESOURCE_EXHAUSTED (gRPC's own max message size)
unknown Content-Type / -Encoding   415     -
queue full, Postgres unreachable   503 +   UNAVAILABLE
(and spool full or off)            Retry-After
some spans invalid                 200 + partial_success (rejected_spans, error_message)
=================================  ======  ===================

A span is invalid when normalize cannot account it or a value it would store breaks a limit (``bounds``);
it is counted by reason and logged at most once a minute per reason. gzip bodies may hold several members
(all are read, as gzip readers do); a truncated stream or bytes after it are a 400.

HTTP bodies are ``application/x-protobuf`` or ``application/json`` (OTLP/JSON), optionally gzip; responses
and error ``Status`` messages are encoded like the request. A success means every accepted call is durable.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
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

from llmmeter_collector.access.keys import KeyStore, Principal, token_from_headers
from llmmeter_collector.access.ratelimit import RateLimiter, retry_after_header
from llmmeter_collector.exporters.forward import Forwarder
from llmmeter_collector.exporters.metrics import Metrics
from llmmeter_collector.ingest import otlp_json
from llmmeter_collector.ingest.bounds import RejectionLog
from llmmeter_collector.ingest.normalize import Normalized, normalize
from llmmeter_collector.ledger.storage import copy_rows
from llmmeter_collector.ledger.writer import Ingestor, Overloaded, StorageUnavailable
from llmmeter_collector.llmcall import LlmCall

logger = logging.getLogger("llmmeter.collector")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RETRY_AFTER_SECONDS = 5
MAX_REJECTION_MESSAGES = 20
MAX_MESSAGE_CHARS = 300  # one rejection message in a partial success; a refusal's message gets 4x that
# Exports decoded at once. Decoding holds the GIL: with every sender's export decoding in its own thread, the
# writer thread would get one GIL turn in N and the commits fall behind; two keep the writer's share up while
# one export's decode waits on another's (decoding is serial anyway).
_PREPARING = threading.BoundedSemaphore(2)


class ExportRefused(Exception):
    """An export (or all of it) is refused; carries the HTTP status and gRPC code to answer with."""

    def __init__(self, status: int, message: str, reason: str, grpc_code: int, retry_after: float = 0.0) -> None:
        super().__init__(printable(message, 4 * MAX_MESSAGE_CHARS))
        self.status = status
        self.reason = reason
        self.grpc_code = grpc_code
        self.retry_after = retry_after  # seconds; 0: RETRY_AFTER_SECONDS

    @property
    def retryable(self) -> bool:
        return self.status in (429, 503)  # 429: per-project ingest rate limit (access/ratelimit.py)


def printable(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters, lone surrogates escaped: safe in a protobuf string and a header."""
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def bad_request(message: str) -> ExportRefused:
    return ExportRefused(400, message, "bad_request", code_pb2.INVALID_ARGUMENT)


def unavailable(message: str, reason: str) -> ExportRefused:
    return ExportRefused(503, message, reason, code_pb2.UNAVAILABLE)


@dataclass
class Pipeline:
    """Authenticate → normalize → price → commit (or spool) → forward; shared by the HTTP and gRPC receivers."""

    ingestor: Ingestor
    metrics: Metrics
    price: Callable[[LlmCall], None]  # attaches call.cost
    keys: KeyStore | None = None
    forwarder: Forwarder | None = None
    rate_limiter: RateLimiter | None = None  # ingest limit per key, or per address without keys (access/ratelimit.py)
    rejection_log: RejectionLog = field(default_factory=lambda: RejectionLog(logger))

    def authenticate(self, token: str | None) -> Principal | None:
        """The key's principal; None when keys are not in use. Raises ExportRefused (401, or 503 without DB)."""
        if self.keys is None:
            return None
        try:
            if not self.keys.required():
                return None
            principal = self.keys.verify(token) if token else None
        except Exception as exc:  # Postgres unreachable and nothing cached: the sender should retry
            raise unavailable(f"cannot check the key now: {exc}", "auth_unavailable") from None
        if principal is None:
            why = "an ingest key is required" if not token else "the key is unknown or revoked"
            raise ExportRefused(
                401, f"{why}: send Authorization: Bearer <key> or x-llmmeter-key", "unauthenticated",
                code_pb2.UNAUTHENTICATED,
            )  # fmt: skip
        if not principal.allows("ingest"):
            raise ExportRefused(
                401, f"a {principal.role} key cannot send data; use an ingest key", "unauthenticated",
                code_pb2.UNAUTHENTICATED,
            )  # fmt: skip
        return principal

    def prepare(
        self,
        request: ExportTraceServiceRequest,
        principal: Principal | None,
        body: bytes | None = None,
        client: str = "",
    ) -> Normalized:
        """Normalize and price (CPU work: run it off the event loop). ``body``: the protobuf ``request`` came
        from, when it came as protobuf; ``client``: the sender's address (its rate-limit bucket without keys)."""
        with _PREPARING:
            result = normalize(request, keep_spans=self.forwarder is not None, body=body)
            result.sender = f"key {principal.key_id}" if principal is not None else f"address {client}"
            forced = principal.forced_project if principal is not None else None
            price = self.price
            for call in result.calls:
                if forced is not None:
                    call.project = forced
                price(call)
            try:
                result.rows = copy_rows(result.calls)
            except psycopg.DataError:  # a value COPY cannot carry (a NUL): the writer isolates and rejects it
                result.rows = None
        m = self.metrics
        m.spans_received.labels("genai").inc(len(result.calls) + result.rejected_count)
        if result.other_spans:
            m.spans_received.labels("other").inc(result.other_spans)
        for reason, count in result.reasons.items():  # spans rejected by normalize / bounds
            m.spans_rejected.labels(reason).inc(count)
            self.rejection_log.note(reason, count, printable(result.examples.get(reason, "")))
        if result.scopes:
            m.observe_scopes(result.scopes)  # by instrumentation scope: calls, GenAI-looking spans not counted
        return result

    async def commit(self, request: ExportTraceServiceRequest, result: Normalized) -> ExportTraceServiceResponse:
        """Wait until the calls are durable; raises ExportRefused(503) when they cannot be (the receiver counts it)."""
        if self.rate_limiter is not None and result.calls:  # per key (or address): 429 + Retry-After (ratelimit)
            wait = self.rate_limiter.take(result.sender, len(result.calls))
            if wait > 0:
                raise ExportRefused(
                    429, "ingest rate limit of this sender exceeded", "rate_limited", code_pb2.RESOURCE_EXHAUSTED, wait
                )
        try:
            future = self.ingestor.submit(result.calls, result.rows)
        except Overloaded as exc:
            raise unavailable(str(exc), "overloaded") from None
        try:
            written = await asyncio.wrap_future(future)
        except StorageUnavailable as exc:
            raise unavailable(f"storage unavailable: {exc}", "storage") from None
        if self.forwarder is not None:
            self.forwarder.submit(request, list(zip(result.spans, result.calls, strict=True)), result.total_spans)
        response = ExportTraceServiceResponse()
        # spans refused at the edge (normalize), then calls Postgres refused for their data (dead-lettered)
        rejected = result.rejected_count + len(written.rejected)
        if rejected:
            reasons = result.rejected + [f"span {r.call.span_id[:32]}: {r.reason}" for r in written.rejected]
            _partial_success(response, rejected, reasons)
        return response


def _partial_success(response: ExportTraceServiceResponse, rejected: int, messages: list[str]) -> None:
    """Tell the sender how many spans were not stored and why (the first MAX_REJECTION_MESSAGES reasons)."""
    response.partial_success.rejected_spans = rejected
    more = rejected - MAX_REJECTION_MESSAGES
    message = "; ".join(printable(m) for m in messages[:MAX_REJECTION_MESSAGES])
    response.partial_success.error_message = message + (f"; and {more} more" if more > 0 else "")


def parse_traces(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    if content_type == JSON:
        try:
            return otlp_json.parse_traces(body)
        except otlp_json.JsonBodyError as exc:
            raise bad_request(f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise bad_request(f"body is not an OTLP ExportTraceServiceRequest: {exc}") from None
    return request


GZIP_MAGIC = b"\x1f\x8b"
MAX_GZIP_MEMBERS = 1000
_GZIP_CHUNK = 64 * 1024  # fed to zlib at a time: what it copies as a member's unused data stays small


def gunzip(body: bytes, limit: int) -> bytes:
    """Every member of a gzip body, concatenated (as gzip readers do); 400 when it is not gzip, is truncated,
    has bytes after its last member or more than MAX_GZIP_MEMBERS members; 413 past ``limit`` bytes inflated."""
    out: list[bytes] = []
    size = pos = 0
    view = memoryview(body)
    for member in range(1, MAX_GZIP_MEMBERS + 1):
        decompressor = zlib.decompressobj(wbits=31)
        while not decompressor.eof:
            if pos >= len(body):
                raise bad_request("body is not valid gzip: the stream is truncated")
            piece = view[pos : pos + _GZIP_CHUNK]
            pos += len(piece)
            try:
                chunk = decompressor.decompress(piece, limit + 1 - size)
            except zlib.error as exc:
                where = f" (member {member})" if member > 1 else ""
                raise bad_request(f"body is not valid gzip{where}: {exc}") from None
            size += len(chunk)
            if size > limit:
                raise ExportRefused(
                    413, f"decompressed body exceeds the limit of {limit} bytes", "too_large",
                    code_pb2.RESOURCE_EXHAUSTED,
                )  # fmt: skip
            out.append(chunk)
        pos -= len(decompressor.unused_data)  # the next member starts there
        if pos == len(body):
            return out[0] if len(out) == 1 else b"".join(out)
        if body[pos : pos + 2] != GZIP_MAGIC:
            raise bad_request(f"body is not valid gzip: {len(body) - pos} bytes of trailing data after the gzip stream")
    raise bad_request(f"body has more than {MAX_GZIP_MEMBERS} gzip members")


@dataclass
class Receiver:
    """The OTLP/HTTP endpoints."""

    pipeline: Pipeline
    max_body_bytes: int

    @property
    def metrics(self) -> Metrics:
        return self.pipeline.metrics

    async def _body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ExportRefused(
                413, f"body of {declared} bytes exceeds the limit of {limit}", "too_large", code_pb2.RESOURCE_EXHAUSTED
            )
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ExportRefused(
                    413, f"body exceeds the limit of {limit} bytes", "too_large", code_pb2.RESOURCE_EXHAUSTED
                )
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            body = gunzip(body, limit)
        elif encoding not in ("", "identity"):
            raise ExportRefused(
                415,
                f"unsupported Content-Encoding {encoding!r}; send gzip or none",
                "bad_request",
                code_pb2.INVALID_ARGUMENT,
            )
        return body

    @staticmethod
    def _content_type(request: Request) -> str:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in (PROTOBUF, JSON):
            raise ExportRefused(
                415,
                f"unsupported Content-Type {ctype!r}; send {PROTOBUF} or {JSON}",
                "bad_request",
                code_pb2.INVALID_ARGUMENT,
            )
        return ctype

    def _refusal(self, exc: ExportRefused, ctype: str | None) -> Response:
        self.metrics.exports_refused.labels(exc.reason).inc()
        wait = retry_after_header(exc.retry_after) if exc.retry_after else str(RETRY_AFTER_SECONDS)
        headers = {"Retry-After": wait} if exc.retryable else {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if ctype is None:  # the body's encoding is unknown: plain text
            return Response(str(exc), status_code=exc.status, headers=headers, media_type="text/plain")
        status = status_pb2.Status(code=exc.grpc_code, message=str(exc))
        body = otlp_json.dumps(status) if ctype == JSON else status.SerializeToString()
        return Response(body, status_code=exc.status, headers=headers, media_type=ctype)

    def _decode(
        self, body: bytes, ctype: str, token: str | None, client: str
    ) -> tuple[ExportTraceServiceRequest, Normalized]:
        principal = self.pipeline.authenticate(token)
        request = parse_traces(body, ctype)
        return request, self.pipeline.prepare(request, principal, body if ctype == PROTOBUF else None, client)

    async def traces(self, request: Request) -> Response:
        ctype: str | None = None
        try:
            ctype = self._content_type(request)
            body = await self._body(request)
            token = token_from_headers(request.headers)
            client = request.client.host if request.client else ""
            export, result = await run_in_threadpool(self._decode, body, ctype, token, client)
            response = await self.pipeline.commit(export, result)
        except ExportRefused as exc:
            return self._refusal(exc, ctype)
        if ctype == JSON:
            return Response(otlp_json.dumps(response), media_type=JSON)
        return Response(response.SerializeToString(), media_type=PROTOBUF)

    async def metrics_export(self, request: Request) -> Response:
        """GenAI client metrics are accepted (so SDK exporters do not error) but not stored: spans are the ledger."""
        ctype: str | None = None
        try:
            ctype = self._content_type(request)
            body = await self._body(request)
            token = token_from_headers(request.headers)
            await run_in_threadpool(self._decode_metrics, body, ctype, token)
        except ExportRefused as exc:
            return self._refusal(exc, ctype)
        if ctype == JSON:
            return Response(otlp_json.dumps(ExportMetricsServiceResponse()), media_type=JSON)
        return Response(ExportMetricsServiceResponse().SerializeToString(), media_type=PROTOBUF)

    def _decode_metrics(self, body: bytes, ctype: str, token: str | None) -> None:
        self.pipeline.authenticate(token)
        if ctype == JSON:
            try:
                otlp_json.parse_metrics(body)
            except otlp_json.JsonBodyError as exc:
                raise bad_request(f"body is not an OTLP/JSON ExportMetricsServiceRequest: {exc}") from None
            return
        try:
            ExportMetricsServiceRequest().ParseFromString(body)
        except DecodeError as exc:
            raise bad_request(f"body is not an OTLP ExportMetricsServiceRequest: {exc}") from None
