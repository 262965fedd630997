"""What llmmeter's instrumentation adds to an OpenAI call: latency per non-streaming call and per streamed chunk,
CPU per call including the recorder thread, and memory after 100k calls.

Same process, real ``openai`` SDK, interleaved blocks of bare and instrumented calls (``uninstrument()`` /
``instrument()`` between blocks, outside the timed region). Two transports:

- fake server: ``python -m llmmeter_collector.devtools.fakeprovider`` in its own process (its work does not share this
  process's GIL), over loopback HTTP with keep-alive;
- in-process: the SDK over an ``httpx`` mock transport (no socket, far less noise).

Latency added = how much longer the calling thread waits: per round, the median instrumented call minus the
median bare call of the block run just before or after it (the order alternates), then the median over rounds
(pairing adjacent blocks keeps a shared host's slow drifts, which move both, out of the difference); "pooled" is
the median of all instrumented calls minus the median of all bare calls, for comparison.
Caller CPU added = the calling thread's CPU time per call, instrumented - bare, paired like the latency:
llmmeter's work on the call path (on a quiet host the latency added is about this).
CPU added = process CPU time (every thread, so the recorder thread that ends spans and records metric points
off the call path is counted; what it still owes at the end of a block is done then, untimed, and counted in
the block's CPU: at 1.7 ms a call, about 6% of a 500-call block's work) per call, instrumented - bare.
Per chunk: streams of ``--chunks`` chunks; (added per stream - added per call) / chunks.
Spans go to a real ``BatchSpanProcessor`` whose exporter drops them, metrics to a real ``MeterProvider`` with a
``PeriodicExportingMetricReader`` whose exporter drops them: recording is counted, network export is not.
Memory: ``--calls`` instrumented calls in-process, RSS and pymalloc blocks in use (``sys.getallocatedblocks()``)
after 10k and after all of them, each after a flush and a full collection. Writes nothing.
Host reference: the CPU model and the best of 5 runs of a fixed pure-Python loop (``_reference_ms``), at the start
and at the end. Every figure here is CPU time of Python code, so it scales with the host: compare runs by their
reference (the README gives it with its figures).

Usage: python bench/instrumentation_overhead.py [--rounds 40] [--block 500] [--chunks 1000] [--stream-rounds 30]
       [--stream-block 8] [--calls 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import httpx2
import openai
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import llmmeter
from llmmeter import recorder


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


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _chunk(i: int, last: bool) -> bytes:
    chunk = {
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": "stop" if last else None}],
    }  # fmt: skip
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _reference_ms() -> float:
    """Best of 5 runs of a fixed pure-Python workload (a 1M-iteration loop of attribute and dict work, the kind
    of code the SDK and llmmeter run), in ms: how fast this host runs Python right now."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        d: dict[int, int] = {}
        for i in range(1_000_000):
            d[i & 1023] = d.get(i & 255, 0) + i
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


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

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    return openai.OpenAI(api_key="x", base_url="http://bench.invalid/v1", http_client=http)


def _fake_server() -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "llmmeter_collector.devtools.fakeprovider", "--port", str(port)], stdout=subprocess.PIPE
    )
    assert server.stdout is not None
    server.stdout.readline()  # "fake provider listening on ..."
    return server, port


class _Samples:
    def __init__(self) -> None:
        self.latency: list[float] = []  # seconds per operation
        self.medians: list[float] = []  # median seconds per operation, one value per block
        self.cpu: list[float] = []  # process CPU seconds per operation, one value per block
        self.caller_cpu: list[float] = []  # the calling thread's CPU seconds per operation, one value per block

    def block(self, fn: Callable[[], None], n: int) -> None:
        cpu, caller_cpu = time.process_time(), time.thread_time()
        latency = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            latency.append(time.perf_counter() - t0)
        self.latency += latency
        self.medians.append(statistics.median(latency))
        self.caller_cpu.append((time.thread_time() - caller_cpu) / n)
        recorder.drain()  # what the recorder thread still owes for this block is counted in it
        self.cpu.append((time.process_time() - cpu) / n)


WARM_SECONDS = 0.25  # untimed calls before each block: the recorder thread is at its pace for this call rate


def _interleaved(fn: Callable[[], None], rounds: int, block: int) -> tuple[_Samples, _Samples]:
    """``rounds`` pairs of adjacent blocks, bare first in even rounds and instrumented first in odd ones (so
    neither always runs second, e.g. always after a toggle of the patches). Each block follows
    ``WARM_SECONDS`` of untimed calls of its kind, so an instrumented block runs with the recorder thread working
    at the pace it settles at for that call rate (every 0.1 s here), as in an app that keeps calling."""
    bare, inst = _Samples(), _Samples()
    for round_ in range(rounds):
        for instrumented in (False, True) if round_ % 2 == 0 else (True, False):
            if instrumented:
                llmmeter.instrument(configure_export=False)
            else:
                llmmeter.uninstrument()
            warm = time.perf_counter() + WARM_SECONDS
            while time.perf_counter() < warm:
                fn()
            (inst if instrumented else bare).block(fn, block)
    llmmeter.uninstrument()
    return bare, inst


def _measure(where: str, client: openai.OpenAI, args: argparse.Namespace, headers: dict[str, str]) -> list[tuple]:  # type: ignore[type-arg]
    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)

    def stream() -> None:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True, extra_headers=headers):
            pass

    bare, inst = _interleaved(call, args.rounds, args.block)
    sbare, sinst = _interleaved(stream, args.stream_rounds, args.stream_block)
    med = statistics.median

    def p90(samples: list[float]) -> float:
        return statistics.quantiles(samples, n=10)[-1]

    def paired(inst: list[float], bare: list[float]) -> float:
        return med(i - b for i, b in zip(inst, bare, strict=True))

    added = paired(inst.medians, bare.medians)
    pooled = med(inst.latency) - med(bare.latency)
    cpu_added = med(inst.cpu) - med(bare.cpu)
    caller = paired(inst.caller_cpu, bare.caller_cpu)
    per_chunk = (paired(sinst.medians, sbare.medians) - added) / args.chunks
    caller_chunk = (paired(sinst.caller_cpu, sbare.caller_cpu) - caller) / args.chunks
    cpu_chunk = ((med(sinst.cpu) - med(sbare.cpu)) - cpu_added) / args.chunks
    p90_added = p90(inst.latency) - p90(bare.latency)
    return [
        (f"{where}: non-streaming call", med(bare.latency), med(inst.latency), added, pooled, p90_added,
         caller, cpu_added, "µs/call", 50),
        (f"{where}: stream of {args.chunks} chunks", med(sbare.latency), med(sinst.latency), per_chunk,
         ((med(sinst.latency) - med(sbare.latency)) - pooled) / args.chunks, None, caller_chunk, cpu_chunk,
         "µs/chunk", 2),
    ]  # fmt: skip


def _memory(calls: int) -> tuple[tuple[float, int], tuple[float, int]]:
    """(RSS MB, pymalloc blocks in use) after 10k calls and after ``calls``: RSS includes what the allocator
    keeps from earlier peaks; the blocks in use are what the process still holds."""
    client = _in_process_client(1)
    llmmeter.instrument(configure_export=False)
    with llmmeter.attributes(feature="bench"):
        for _ in range(10_000):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        llmmeter.flush()
        gc.collect()
        after_warmup = _rss_mb(), sys.getallocatedblocks()
        for _ in range(calls - 10_000):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        llmmeter.flush()
        gc.collect()
        after_all = _rss_mb(), sys.getallocatedblocks()
    llmmeter.uninstrument()
    return after_warmup, after_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=1000)
    # A stream records one span for its 1000 chunks; the recorder thread, at few calls a second, wakes about
    # once a second: blocks of 8 streams (~1.2 s) hold a wake-up, as a streaming app's would.
    parser.add_argument("--stream-rounds", type=int, default=30)
    parser.add_argument("--stream-block", type=int, default=8)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DropSpans(), max_queue_size=65_536, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    reader = PeriodicExportingMetricReader(_DropMetrics(), export_interval_millis=60_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    reference_start = _reference_ms()
    rows = []
    server, port = _fake_server()
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        long = {"x-fake-usage": json.dumps({"output_tokens": args.chunks}), "x-fake-tool-call": "0"}
        rows += _measure("fake server", client, args, long)
    finally:
        server.terminate()
        server.wait()
    rows += _measure("in-process", _in_process_client(args.chunks), args, {})
    memory = _memory(args.calls)
    reference_end = _reference_ms()

    print(f"host: {_cpu_model()}, {os.cpu_count()} CPUs; reference loop {reference_start:.1f} ms at the start,")
    print(f"{reference_end:.1f} ms at the end (lower is faster; the figures below scale with it)")
    print("medians; latency added = median over rounds of (instrumented block - bare block), the issue's figure;")
    print("pooled = median of all instrumented - median of all bare; p90 added likewise, pooled;")
    print("caller CPU added = the calling thread's CPU, paired like the latency; CPU added = every thread of the")
    print("process, the recorder's included")
    header = f"{'what':<38}{'bare':>11}{'instrumented':>14}{'latency added':>15}{'pooled':>9}{'p90 added':>11}"
    print(f"{header}{'caller CPU':>12}{'CPU added':>11}  unit      target")
    for what, b, i, added, pooled, p90_added, caller, cpu, unit, target in rows:
        tail = f"{p90_added * 1e6:>11.2f}" if p90_added is not None else f"{'':>11}"
        print(
            f"{what:<38}{b * 1e6:>9.1f}µs{i * 1e6:>12.1f}µs{added * 1e6:>15.2f}{pooled * 1e6:>9.2f}{tail}"
            f"{caller * 1e6:>12.2f}{cpu * 1e6:>11.2f}  {unit:<9} <= {target}"
        )
    (warm, warm_blocks), (end, end_blocks) = memory
    after = f"after {args.calls // 1000}k calls"
    print(f"{'RSS after 10k calls':<32}{warm:>10.1f} MB")
    print(f"{'RSS ' + after:<32}{end:>10.1f} MB  growth {end - warm:+.1f} MB")
    print(f"{'heap blocks after 10k calls':<32}{warm_blocks:>10}")
    print(f"{'heap blocks ' + after:<32}{end_blocks:>10}     growth {end_blocks - warm_blocks:+} blocks")


if __name__ == "__main__":
    main()
