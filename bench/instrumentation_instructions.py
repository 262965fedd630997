"""Overhead counted, not timed: CPU instructions llmmeter adds to a real ``openai`` call, against the official
``opentelemetry-instrumentation-openai-v2``, with valgrind's callgrind.

Each measurement is a process making N chat-completion calls with the real ``openai`` client over an in-process
transport (``bench/instrumentation_overhead.py``'s ``_in_process_client``: no socket), in one of three modes: bare,
``llmmeter.instrument()``, or openai-v2's ``OpenAIInstrumentor().instrument()``. Both instrumentations export to the
same providers (a ``TracerProvider`` with a ``SimpleSpanProcessor`` into an exporter that drops, a ``MeterProvider``
with an ``InMemoryMetricReader``). Counting starts after start-up and a warm-up (a small C helper built here issues
callgrind's start/stop requests) and stops once every span is ended and the metric points are collected: the
recorder's deferred work is inside the measurement. Per call = the difference between two call counts divided by
the difference in calls, so what a run does once (imports, warm-up, the final flush) cancels. The calling thread is
the main thread (callgrind ``--separate-threads=yes``); total is every thread. Streaming: S streams of K chunks
against S streams of 2K chunks gives the instructions per chunk.

Run: ``.venv/bin/python bench/instrumentation_instructions.py`` (3 to 6 minutes; needs ``valgrind`` and ``gcc``,
``apt-get install -y valgrind gcc``). Options: ``--calls 100 300 --streams 20 --chunks 50``.
The wall-clock benchmark (``bench/instrumentation_overhead.py``) is the second opinion; these counts decide.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("bare", "llmmeter", "openai-v2")
# Not an instrumentation: the bare call plus what any GenAI instrumentation emits through the OpenTelemetry SDK, one
# span with the attributes the semantic conventions require and the three metric points (duration, input and
# output tokens). What both instrumentations pay to the SDK, whoever builds the span.
FLOOR = "sdk-floor"
HELPER_C = """
#include <valgrind/callgrind.h>
void llmmeter_bench_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void llmmeter_bench_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""
WARMUP = 20


# --- the measured process ------------------------------------------------------------------------------------
def worker(mode: str, calls: int, chunks: int, helper: str) -> None:
    """``calls`` calls (``chunks`` > 0: streams of that many chunks, read to the end) in ``mode``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from instrumentation_overhead import _in_process_client
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    import llmmeter
    from llmmeter import recorder

    class Drop(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Drop()))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    if mode == "llmmeter":
        llmmeter.instrument(configure_export=False)
    elif mode == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()

    client = _in_process_client(max(chunks, 1))
    messages = [{"role": "user", "content": "Say hi"}]
    tracer = trace.get_tracer("floor")
    meter = metrics.get_meter("floor")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")

    def floor_call() -> None:
        start = time.time_ns()
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        span = tracer.start_span("chat gpt-4o-mini", start_time=start, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "server.address": "bench.invalid", "server.port": 443,
        })  # fmt: skip
        usage = answer.usage
        span.set_attributes({
            "gen_ai.response.model": answer.model, "gen_ai.response.id": answer.id,
            "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
        })  # fmt: skip
        span.end()
        attrs = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": answer.model, "server.address": "bench.invalid", "server.port": 443,
        }  # fmt: skip
        duration.record((time.time_ns() - start) / 1e9, attrs)
        tokens.record(usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
        tokens.record(usage.completion_tokens, {**attrs, "gen_ai.token.type": "output"})

    def call() -> None:
        if mode == FLOOR:
            floor_call()
        elif chunks:
            for _ in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
                pass
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    def hold_recorder(seconds: float) -> None:
        """The recorder thread's interval from now (``restart`` wakes it to take the new one)."""
        recorder.DRAIN_SECONDS = recorder.IDLE_DRAIN_SECONDS = seconds
        recorder.restart()

    def settle() -> None:
        hold_recorder(0.01)
        while recorder._queued():  # the recorder thread ends the spans and records the points on its own
            time.sleep(0.05)
        llmmeter.flush()
        reader.get_metrics_data()

    for _ in range(WARMUP):
        call()
    settle()
    lib = ctypes.CDLL(helper)
    # The recorder thread sleeps through the calls and works them off in settle(): the same work, counted on its
    # thread, without the thread switches that make counts vary between runs (those are the wall-clock bench's).
    hold_recorder(3600.0)
    lib.llmmeter_bench_start()
    for _ in range(calls):
        call()
    settle()
    lib.llmmeter_bench_stop()


# --- the driver ----------------------------------------------------------------------------------------------
def build_helper(directory: str) -> str:
    source, library = os.path.join(directory, "toggle.c"), os.path.join(directory, "toggle.so")
    Path(source).write_text(HELPER_C)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", library, source], check=True)
    return library


def count(mode: str, calls: int, chunks: int, helper: str, directory: str) -> tuple[int, int]:
    """(instructions on the calling thread, instructions in all threads) of one measured process."""
    out = os.path.join(directory, f"cg-{mode}-{calls}-{chunks}")
    for old in glob.glob(out + "*"):
        os.remove(old)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
        f"--callgrind-out-file={out}", sys.executable, __file__,
        "--worker", mode, str(calls), str(chunks), helper,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode}: the measured process failed:\n{done.stderr[-3000:]}")
    threads: dict[int, int] = {}
    for path in glob.glob(out + "-*"):  # --separate-threads: <out>-01 (the main thread), <out>-02, ...
        thread = int(path[len(out) + 1 :])
        for line in Path(path).read_text().splitlines():
            if line.startswith("totals:"):
                threads[thread] = int(line.split()[1])
                break
    if 1 not in threads:
        raise SystemExit(f"{mode}: no callgrind output for the main thread in {directory}")
    return threads[1], sum(threads.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs=2, default=[100, 300], metavar=("N1", "N2"))
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, calls, chunks, helper = args.worker
        worker(mode, int(calls), int(chunks), helper)
        return
    missing = [tool for tool in ("valgrind", "gcc") if shutil.which(tool) is None]
    if missing or not os.path.exists("/usr/include/valgrind/callgrind.h"):
        raise SystemExit(
            f"needs valgrind and gcc (missing: {', '.join(missing) or 'valgrind/callgrind.h'}):"
            " apt-get install -y valgrind gcc"
        )
    n1, n2 = args.calls
    with tempfile.TemporaryDirectory(prefix="llmmeter-callgrind-") as directory:
        helper = build_helper(directory)
        per_call: dict[str, tuple[float, float]] = {}
        for mode in (*MODES, FLOOR):
            low, high = count(mode, n1, 0, helper, directory), count(mode, n2, 0, helper, directory)
            per_call[mode] = ((high[0] - low[0]) / (n2 - n1), (high[1] - low[1]) / (n2 - n1))
        per_chunk: dict[str, tuple[float, float]] = {}
        k, s = args.chunks, args.streams
        for mode in MODES:
            low, high = count(mode, s, k, helper, directory), count(mode, s, 2 * k, helper, directory)
            per_chunk[mode] = ((high[0] - low[0]) / (s * k), (high[1] - low[1]) / (s * k))

    bare = per_call["bare"]
    print(f"instructions per non-streaming call ({n2 - n1} calls between the two counts)")
    print(f"{'mode':<12}{'calling thread':>16}{'total':>14}{'added, calling':>16}{'added, total':>14}")
    for mode in (*MODES, FLOOR):
        caller, total = per_call[mode]
        print(f"{mode:<12}{caller:>16,.0f}{total:>14,.0f}{caller - bare[0]:>16,.0f}{total - bare[1]:>14,.0f}")
    print(f"\ninstructions per streamed chunk ({s} streams of {k} against {2 * k} chunks)")
    for mode in MODES:
        caller, total = per_chunk[mode]
        added = (caller - per_chunk["bare"][0], total - per_chunk["bare"][1])
        print(f"{mode:<12}{caller:>16,.0f}{total:>14,.0f}{added[0]:>16,.0f}{added[1]:>14,.0f}")

    floor = per_call[FLOOR][1] - bare[1]
    ours = (per_call["llmmeter"][0] - bare[0], per_call["llmmeter"][1] - bare[1])
    theirs = (per_call["openai-v2"][0] - bare[0], per_call["openai-v2"][1] - bare[1])
    print()
    for label, index, target in (("calling thread", 0, 0.25), ("total", 1, 0.60)):
        ratio = ours[index] / theirs[index]
        verdict = "met" if ratio <= target else "NOT met"
        print(f"llmmeter adds {ratio:.0%} of openai-v2's instructions per call, {label}", end="")
        print(f" (target <= {target:.0%}): {verdict}")
    print(
        f"the OpenTelemetry SDK's own span and three metric points ({FLOOR}): {floor:,.0f} instructions a call,"
        f" {floor / theirs[1]:.0%} of openai-v2's added total, {floor / ours[1]:.0%} of llmmeter's"
    )


if __name__ == "__main__":
    main()
