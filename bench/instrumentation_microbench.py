"""What llmmeter's OpenAI wrappers add, isolated from HTTP and SDK noise: per call, per streamed chunk, memory.

The end-to-end benchmark (instrumentation_overhead.py) times real SDK calls, whose own cost (~1.7 ms in
process, ~50 ms against the fake server) varies by far more than the microseconds llmmeter adds. Here the
patched ``Completions.create`` wrapper runs exactly as in production (guard, span start with request
attributes, attribution, context attach, response usage extraction, metrics, span end into a real
BatchSpanProcessor whose exporter drops spans) around a ``wrapped`` function that returns a pre-built
``ChatCompletion`` (or an ``openai.Stream`` over pre-built chunks). Added time = wrapped path minus the
bare function, medians of interleaved rounds. Memory: RSS and tracemalloc after 10k and 100k wrapped calls.
Usage: python bench/instrumentation_microbench.py [--rounds 15] [--calls 2000] [--chunks 2000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import openai
import openai.resources.chat.completions as chat_completions
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import llmmeter

KWARGS = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 50}
RESULT = ChatCompletion.model_validate(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
)


class _DropSpans(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _ListStream(openai.Stream[ChatCompletionChunk]):
    """An ``openai.Stream`` over pre-built chunks (no HTTP, no SSE parsing)."""

    def __init__(self, chunks: list[ChatCompletionChunk]) -> None:  # no super().__init__: nothing to read
        self._chunks = iter(chunks)

    def __next__(self) -> ChatCompletionChunk:
        return next(self._chunks)

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def close(self) -> None:
        pass


def _chunks(n: int) -> list[ChatCompletionChunk]:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    out = [
        ChatCompletionChunk.model_validate({**body, "choices": [{"index": 0, "delta": {"content": "w"}}]})
        for _ in range(n - 1)
    ]
    out.append(
        ChatCompletionChunk.model_validate(
            {**body, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}}
        )
    )
    return out


def _per_op(fn: Any, n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n / 1000  # µs


def _otel_floor(calls: int) -> float:
    """What the OpenTelemetry SDK alone costs for what one instrumented call records: a span with 18
    attributes (14 at start, 4 at end) and three histogram points. llmmeter cannot go below this."""
    tracer = trace.get_tracer("floor")
    histogram = metrics.get_meter("floor").create_histogram("floor")
    start_attrs = {f"gen_ai.attr{i}": "value" for i in range(14)}
    metric_attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "m"}

    def one() -> None:
        span = tracer.start_span("chat gpt-4o-mini", attributes=start_attrs)
        span.set_attributes({"a": 1, "b": 2, "c": "x", "d": ["stop"]})
        span.end()
        histogram.record(1.0, metric_attrs)
        histogram.record(12, {**metric_attrs, "gen_ai.token.type": "input"})
        histogram.record(5, {**metric_attrs, "gen_ai.token.type": "output"})

    return statistics.median(_per_op(one, calls) for _ in range(5))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DropSpans(), max_queue_size=65536))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider())
    llmmeter.instrument(configure_export=False)
    wrapper = chat_completions.Completions.__dict__["create"]._self_wrapper
    instance = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1").chat.completions

    def bare_call() -> Any:
        return (lambda **k: RESULT)(**KWARGS)

    def wrapped_call() -> Any:
        return wrapper(lambda *a, **k: RESULT, instance, (), dict(KWARGS))

    chunks = _chunks(args.chunks)
    stream_kwargs = {**KWARGS, "stream": True}

    def bare_stream() -> int:
        return sum(1 for _ in _ListStream(chunks))

    def wrapped_stream() -> int:
        stream = wrapper(lambda *a, **k: _ListStream(chunks), instance, (), dict(stream_kwargs))
        return sum(1 for _ in stream)

    assert wrapped_call() is RESULT and wrapped_stream() == args.chunks
    call_deltas, stream_deltas = [], []
    for _ in range(args.rounds):
        call_deltas.append(_per_op(wrapped_call, args.calls) - _per_op(bare_call, args.calls))
        stream_us = _per_op(wrapped_stream, 3) - _per_op(bare_stream, 3)
        stream_deltas.append(stream_us)
    per_call = statistics.median(call_deltas)
    per_chunk = (statistics.median(stream_deltas) - per_call) / args.chunks
    floor = _otel_floor(args.calls)

    gc.collect()
    tracemalloc.start()
    rss = []
    for total in (10_000, 100_000):
        while len(rss) < total:
            wrapped_call()
            rss.append(0)
        gc.collect()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        traced_mb = tracemalloc.get_traced_memory()[0] / 2**20
        print(f"after {total:>7,} calls: max RSS {rss_mb:7.1f} MB, traced heap {traced_mb:6.2f} MB")
    provider.shutdown()

    print()
    print("| what | added by llmmeter | target |")
    print("| --- | --- | --- |")
    spread = f"rounds {min(call_deltas):.1f}–{max(call_deltas):.1f}"
    print(f"| non-streaming chat call | {per_call:.1f} µs ({spread}) | ≤ 50 µs |")
    print(f"| of which the OpenTelemetry SDK's own span + 3 metric points | {floor:.1f} µs | |")
    print(f"| streamed chunk ({args.chunks} per stream) | {per_chunk:.2f} µs | ≤ 2 µs |")


if __name__ == "__main__":
    main()
