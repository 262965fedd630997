"""Optional OTLP/HTTP forwarding of every received span to another tracing backend, GenAI spans priced.

Each export is forwarded after it was acknowledged (so a refused export that the sender retries is not
forwarded twice), from a background thread, as OTLP/HTTP protobuf. GenAI spans get the cost attributes
``llmmeter.cost.usd``, ``llmmeter.cost.<class>_usd`` (per token class), ``gen_ai.usage.cost`` (the name
OpenLIT-reading tools use) or, without a price, ``llmmeter.cost.unpriced=true``. Values are doubles for the
tracing backend; the exact amounts are in the ledger. Forwarding is best effort: the queue is bounded,
retryable failures are retried a few times, and whatever is dropped is counted in
``llmmeter_collector_forward_dropped_spans_total``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from llmmeter_collector import semconv as sc
from llmmeter_collector.exporters.metrics import Metrics
from llmmeter_collector.llmcall import LlmCall

logger = logging.getLogger("llmmeter.collector")

REPORTED_COST_ATTRIBUTE = "gen_ai.usage.cost"
_RETRYABLE = {429, 502, 503, 504}
_ATTEMPTS = 4
_Item = tuple[ExportTraceServiceRequest, Sequence[tuple[Span, LlmCall]], int]


def cost_attributes(call: LlmCall) -> list[KeyValue]:
    """The attributes a priced (or unpriced) GenAI span carries when forwarded."""
    if call.cost is None:
        return [KeyValue(key=sc.COST_UNPRICED, value=AnyValue(bool_value=True))]
    total = float(call.cost.total)
    out = [
        KeyValue(key=sc.COST_USD, value=AnyValue(double_value=total)),
        KeyValue(key=REPORTED_COST_ATTRIBUTE, value=AnyValue(double_value=total)),
    ]
    out.extend(
        KeyValue(key=f"{sc.COST_PART_PREFIX}{cls}_usd", value=AnyValue(double_value=float(amount)))
        for cls, amount in call.cost.parts.items()
    )
    return out


def annotate(span: Span, call: LlmCall) -> None:
    """Attach the cost attributes to ``span``, replacing any value it carried under the same names."""
    added = cost_attributes(call)
    names = {kv.key for kv in added}
    kept = [kv for kv in span.attributes if kv.key not in names]
    if len(kept) != len(span.attributes):
        del span.attributes[:]
        span.attributes.extend(kept)
    span.attributes.extend(added)


def traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def parse_headers(raw: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (the OTEL_EXPORTER_OTLP_HEADERS format)."""
    headers = {}
    for part in raw.split(","):
        if "=" in part:
            key, _, value = part.partition("=")
            headers[key.strip()] = value.strip()
    return headers


class Forwarder:
    """A bounded queue of exports and the thread that sends them on."""

    def __init__(self, endpoint: str, metrics: Metrics, headers: str = "", max_queued_exports: int = 1000) -> None:
        self.url = traces_url(endpoint)
        self._metrics = metrics
        self._queue: queue.Queue[_Item | None] = queue.Queue(max_queued_exports)
        self._client = httpx.Client(
            timeout=10.0, headers={"Content-Type": "application/x-protobuf", **parse_headers(headers)}
        )
        self._thread = threading.Thread(target=self._run, name="llmmeter-forward", daemon=True)
        self._thread.start()

    def submit(self, request: ExportTraceServiceRequest, priced: Sequence[tuple[Span, LlmCall]], spans: int) -> None:
        """Queue an acknowledged export; dropped (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((request, priced, spans))
        except queue.Full:
            self._metrics.forward_dropped.inc(spans)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, priced, spans = item
            try:
                for span, call in priced:
                    annotate(span, call)
                body = request.SerializeToString()
            except Exception:
                logger.exception("could not prepare an export for forwarding")
                self._metrics.forward_dropped.inc(spans)
                continue
            if self._send(body):
                self._metrics.forwarded.inc(spans)
            else:
                self._metrics.forward_dropped.inc(spans)

    def _send(self, body: bytes) -> bool:
        delay = 0.2
        for attempt in range(_ATTEMPTS):
            try:
                response = self._client.post(self.url, content=body)
            except httpx.HTTPError as exc:
                problem = repr(exc)
            else:
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in _RETRYABLE:
                    logger.warning("forwarding to %s refused: %s", self.url, problem)
                    return False
            if attempt + 1 < _ATTEMPTS:
                time.sleep(delay)
                delay *= 2
        logger.warning("forwarding to %s failed after %d attempts: %s", self.url, _ATTEMPTS, problem)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (within ``timeout``), then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._client.close()
