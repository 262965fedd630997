"""What llmmeter's instrumentation adds to an OpenAI call: per non-streaming call, per streamed chunk, and
memory after many calls.

Same process, real `openai` SDK against the local fake provider, interleaved blocks of bare and instrumented
calls (uninstrument/instrument between blocks, outside the timed region), medians. Spans go to a real
BatchSpanProcessor whose exporter drops them, metrics to a real MeterProvider with a periodic reader whose
exporter drops them: the SDK's span/metric recording is counted, network export is not.
Memory: 100k instrumented calls through the real SDK with an in-process HTTP transport (no server), RSS
after 10k and after 100k calls. Usage: python bench/instrumentation_overhead.py [--rounds 20] [--calls 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import time

import httpx2
import openai
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import llmmeter
from llmmeter_collector.fakeprovider import FakeProvider


class _DropSpans(SpanExporter):
    def export(self, spans):  # type: ignore[no-untyped-def]
        return SpanExportResult.SUCCESS


class _DropMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__()

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):  # type: ignore[no-untyped-def]
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:  # type: ignore[no-untyped-def]
        pass


MSG = [{"role": "user", "content": "hello there"}]


def _timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _interleaved(fn, rounds: int, block: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    bare: list[float] = []
    inst: list[float] = []
    for _ in range(rounds):
        llmmeter.uninstrument()
        bare += _timed(fn, block)
        llmmeter.instrument(configure_export=False)
        inst += _timed(fn, block)
    llmmeter.uninstrument()
    return statistics.median(bare), statistics.median(inst)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _chunk(i: int, last: bool) -> bytes:
    chunk = {
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": "stop" if last else None}],
    }  # fmt: skip
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _in_process_client(chunks: int) -> openai.OpenAI:
    """The real SDK over an in-process transport: no socket, so the figures are not network noise."""
    body = {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }  # fmt: skip
    payload = json.dumps(body).encode()
    sse = b"".join(_chunk(i, i == chunks - 1) for i in range(chunks)) + b"data: [DONE]\n\n"

    def answer(request: httpx2.Request) -> httpx2.Response:
        if b'"stream":true' in request.content.replace(b" ", b""):
            return httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, content=payload, headers={"content-type": "application/json"})

    transport = httpx2.MockTransport(answer)
    return openai.OpenAI(
        api_key="x", base_url="http://bench.invalid/v1", http_client=httpx2.Client(transport=transport)
    )


def _memory(calls: int) -> tuple[float, float]:
    client = _in_process_client(1)
    llmmeter.instrument(configure_export=False)
    with llmmeter.attributes(feature="bench"):
        for _ in range(10_000):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        gc.collect()
        after_warmup = _rss_mb()
        for _ in range(calls - 10_000):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        gc.collect()
    llmmeter.uninstrument()
    return after_warmup, _rss_mb()


def _measure(where: str, client: openai.OpenAI, rounds: int, block: int, chunks: int, fake: bool) -> list[tuple]:  # type: ignore[type-arg]
    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)

    long = {"x-fake-usage": json.dumps({"output_tokens": chunks}), "x-fake-tool-call": "0"} if fake else {}

    def stream() -> None:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                max_tokens=chunks, extra_headers=long):  # fmt: skip
            pass

    call()
    bare, inst = _interleaved(call, rounds, block)
    sbare, sinst = _interleaved(stream, max(rounds // 2, 3), 5)
    per_chunk = ((sinst - sbare) - (inst - bare)) / chunks * 1e6
    return [
        (f"{where}: non-streaming call", bare * 1e6, inst * 1e6, (inst - bare) * 1e6, "µs/call", 50),
        (f"{where}: stream, {chunks} chunks", sbare * 1e6, sinst * 1e6, per_chunk, "µs/chunk", 2),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DropSpans()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(
        MeterProvider(metric_readers=[PeriodicExportingMetricReader(_DropMetrics(), export_interval_millis=60_000)])
    )
    rows = []
    chunks = 1000
    with FakeProvider() as fake:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
        rows += _measure("fake server", client, args.rounds, args.block, chunks, fake=True)
    rows += _measure("in-process", _in_process_client(chunks), args.rounds * 4, args.block * 4, chunks, fake=False)
    warm, end = _memory(args.calls)
    print(f"{'what':<40}{'bare':>12}{'instrumented':>14}{'added':>10}  unit      target")
    for what, b, i, added, unit, target in rows:
        print(f"{what:<40}{b:>10.1f}µs{i:>12.1f}µs{added:>10.2f}  {unit:<9} <= {target}")
    print(f"{'RSS after 10k calls':<26}{warm:>10.1f}MB")
    print(f"{'RSS after ' + str(args.calls // 1000) + 'k calls':<26}{end:>10.1f}MB  growth {end - warm:+.1f} MB")


if __name__ == "__main__":
    main()
