"""Sustained ingest: one collector process, OTLP/HTTP protobuf batches of 512 GenAI spans, to committed rows
and rollups. Reports spans/s and the export → acknowledged (= committed, queryable) latency percentiles.

Run: ``.venv/bin/python bench/ingest_throughput.py`` (Postgres from LLMMETER_BENCH_DATABASE_URL or
LLMMETER_TEST_DATABASE_URL, else an embedded one in a temporary directory).
Options: ``--batches 300 --senders 4 --workers 1 2``.
The collector runs as a separate process (``python -m llmmeter_collector``) on a fresh schema that is
dropped afterwards; the load generator runs in this process and shares the machine's cores with the collector
and Postgres. Writes nothing.

``--workers N`` starts N collector processes on one port (SO_REUSEPORT, Linux): the kernel spreads the
senders' connections across them; each has its own writer and Postgres connection.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

import httpx
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SPANS_PER_BATCH = 512
MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
]
FEATURES = ["search", "support", "summarise", "chat", "classify", "extract"]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def make_batch(n: int, rng: random.Random) -> bytes:
    """512 spans shaped like the llmmeter SDK's (about 22 attributes each, a third in an experiment, half with a
    prompt signature), unique ids."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "shop-api"), _kv("deployment.environment.name", "prod")])
    scope = rs.scope_spans.add()
    scope.scope.name = "llmmeter"
    now = time.time_ns()
    for i in range(SPANS_PER_BATCH):
        provider, model = rng.choice(MODELS)
        span = scope.spans.add()
        span.trace_id = n.to_bytes(8, "big") + i.to_bytes(8, "big")
        span.span_id = (n * SPANS_PER_BATCH + i + 1).to_bytes(8, "big")
        span.name = f"chat {model}"
        span.kind = 3
        span.start_time_unix_nano = now - rng.randint(0, 10**9)
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(2 * 10**8, 4 * 10**9)
        inp = rng.randint(50, 20000)
        feature = rng.randrange(len(FEATURES))
        span.attributes.extend(
            [
                _kv("gen_ai.operation.name", "chat"),
                _kv("gen_ai.provider.name", provider),
                _kv("gen_ai.request.model", model),
                _kv("gen_ai.response.model", model),
                _kv("gen_ai.response.id", f"resp-{n}-{i}"),
                _kv("gen_ai.usage.input_tokens", inp),
                _kv("gen_ai.usage.output_tokens", rng.randint(10, 2000)),
                _kv("gen_ai.usage.cache_read.input_tokens", inp // 3),
                _kv("gen_ai.request.max_tokens", 4096),
                _kv("gen_ai.request.temperature", 0.2),
                _kv("gen_ai.response.finish_reasons", "stop"),
                _kv("gen_ai.request.stream", i % 2 == 0),
                _kv("gen_ai.response.time_to_first_chunk", 0.3),
                _kv("server.address", "api.example.com"),
                _kv("server.port", 443),
                _kv("llmmeter.project", "shop"),
                _kv("llmmeter.feature", FEATURES[feature]),
                _kv("user.id", f"user-{rng.randint(1, 5000)}"),
                _kv("session.id", f"s-{rng.randint(1, 20000)}"),
                _kv("llmmeter.tag.team", "growth"),
                _kv("llmmeter.prompt.fingerprint", f"{rng.getrandbits(64):016x}"),
                # a feature's prompt template, two versions of it live at once (a rollout), as the SDK sends them
                _kv("llmmeter.prompt.template_fingerprint", f"{feature * 2 + rng.randint(1, 2):016x}"),
            ]
        )
        if i % 3 == 0:  # a third of the calls in an experiment, half of them with a prompt signature
            span.attributes.extend([_kv("llmmeter.experiment", "shorter-prompt"), _kv("llmmeter.variant", "ab"[i % 2])])
        if i % 2 == 0:
            span.attributes.append(_kv("llmmeter.prompt.simhash", f"{rng.randint(1, 200):016x}"))
    return request.SerializeToString()


def bench_dsn() -> tuple[str, object | None]:
    """LLMMETER_BENCH_DATABASE_URL or LLMMETER_TEST_DATABASE_URL, else an embedded Postgres in a temp dir."""
    url = os.environ.get("LLMMETER_BENCH_DATABASE_URL") or os.environ.get("LLMMETER_TEST_DATABASE_URL")
    if url:
        return url, None
    import tempfile
    from pathlib import Path

    from llmmeter_collector.ledger.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="llmmeter-bench-")))
    return embedded.start(), embedded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collectors(dsn: str, schema: str, port: int, workers: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "LLMMETER_DATABASE_URL": dsn,
        "LLMMETER_DATABASE_SCHEMA": schema,
        "LLMMETER_HTTP_PORT": str(port),
        "LLMMETER_GRPC_PORT": "0",
        "LLMMETER_SPOOL": "false",
        "LLMMETER_LOG_LEVEL": "WARNING",
        "LLMMETER_REUSE_PORT": "true" if workers > 1 else "false",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "llmmeter_collector"], env=env, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                time.sleep(1.0 if workers > 1 else 0)  # let every worker bind
                return procs
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("collector did not start")


def _cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU time the collector processes used so far (Linux /proc)."""
    ticks = 0
    for p in procs:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run(dsn: str, batches: int, senders: int, workers: int) -> dict[str, float]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    bodies = [make_batch(n, rng) for n in range(1, batches + 1)]
    port = free_port()
    procs = start_collectors(dsn, schema, port, workers)
    url = f"http://127.0.0.1:{port}/v1/traces"
    latencies: list[float] = []
    refused = 0
    lock = threading.Lock()
    queue = list(range(len(bodies)))

    def sender() -> None:
        nonlocal refused
        with httpx.Client(timeout=60, headers={"Content-Type": "application/x-protobuf"}) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                while True:
                    t0 = time.perf_counter()
                    r = client.post(url, content=bodies[i])
                    if r.status_code == 200:
                        with lock:
                            latencies.append(time.perf_counter() - t0)
                        break
                    with lock:
                        refused += 1
                    time.sleep(0.05)

    try:
        # warm-up: prices cached, partitions and connections ready
        httpx.post(url, content=make_batch(10**6, rng), headers={"Content-Type": "application/x-protobuf"}, timeout=60)
        threads = [threading.Thread(target=sender) for _ in range(senders)]
        cpu_before = _cpu_seconds(procs)
        started = time.perf_counter()
        sender_cpu = time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        sender_cpu = time.process_time() - sender_cpu
        with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
            rows = conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0]  # type: ignore[index]
            rolled = conn.execute("SELECT sum(calls) FROM llm_rollup_minute").fetchone()[0]  # type: ignore[index]
        collector_cpu = _cpu_seconds(procs) - cpu_before
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    spans = batches * SPANS_PER_BATCH
    assert rows == spans + SPANS_PER_BATCH and rolled == rows, (rows, rolled)
    latencies.sort()
    return {
        "spans": spans,
        "seconds": elapsed,
        "spans_per_s": spans / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "refused_503": refused,
        "collector_cpu_us": collector_cpu / spans * 1e6,
        "sender_cpu_us": sender_cpu / spans * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="*", default=[1])
    args = parser.parse_args()
    dsn, embedded = bench_dsn()
    print(f"{os.cpu_count()} CPUs shared by the load generator, the collector(s) and Postgres")
    print(
        f"{'workers':>7} {'senders':>7} {'spans':>8} {'seconds':>8} {'spans/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'503s':>5} {'collector CPU µs/span':>22} {'sender CPU µs/span':>18}"
    )
    try:
        for workers in args.workers:
            r = run(dsn, args.batches, args.senders, workers)
            print(
                f"{workers:>7} {args.senders:>7} {r['spans']:>8} {r['seconds']:>8.2f} {r['spans_per_s']:>9.0f}"
                f" {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {r['refused_503']:>5} {r['collector_cpu_us']:>22.1f}"
                f" {r['sender_cpu_us']:>18.1f}"
            )
    finally:
        if embedded is not None:
            embedded.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
