"""Overload: a sender offering twice what one collector can commit. The collector must shed with 503 +
Retry-After and keep its memory flat (the write queue is bounded by LLMMETER_MAX_QUEUED_CALLS).

Run: ``.venv/bin/python bench/overload_memory.py [--seconds 30]``. Measures the collector's capacity first,
then offers 2x that rate of 512-span OTLP/HTTP batches and samples the collector's RSS every second.
Prints a table; writes nothing (the schema it uses is dropped).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from ingest_throughput import SPANS_PER_BATCH, bench_dsn, free_port, make_batch, start_collectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--max-queued-calls", type=int, default=20_000)
    args = parser.parse_args()
    dsn, embedded = bench_dsn()
    os.environ["LLMMETER_MAX_QUEUED_CALLS"] = str(args.max_queued_calls)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    rng = random.Random(3)
    bodies = [make_batch(n, rng) for n in range(1, 201)]  # reused: retries of the same spans change nothing
    port = free_port()
    [proc] = start_collectors(dsn, schema, port, 1)
    url = f"http://127.0.0.1:{port}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    collector = psutil.Process(proc.pid)
    stats = {"ok": 0, "503": 0, "other": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def sender(rate_per_thread: float, counter: list[int]) -> None:
        with httpx.Client(timeout=60, headers=headers) as client:
            next_at = time.perf_counter()
            while not stop.is_set():
                i = counter[0] % len(bodies)
                counter[0] += 1
                r = client.post(url, content=bodies[i])
                key = "ok" if r.status_code == 200 else "503" if r.status_code == 503 else "other"
                with lock:
                    stats[key] += 1
                if rate_per_thread:
                    next_at += 1 / rate_per_thread
                    time.sleep(max(0.0, next_at - time.perf_counter()))

    def phase(threads: int, rate: float, seconds: float) -> tuple[list[tuple[float, float, int, int]], float]:
        for k in stats:
            stats[k] = 0
        stop.clear()
        ts = [threading.Thread(target=sender, args=(rate / threads if rate else 0, [t * 37])) for t in range(threads)]
        started = time.perf_counter()
        for t in ts:
            t.start()
        samples = []
        while time.perf_counter() - started < seconds:
            time.sleep(1)
            with lock:
                samples.append(
                    (time.perf_counter() - started, collector.memory_info().rss / 2**20, stats["ok"], stats["503"])
                )
        stop.set()
        for t in ts:
            t.join()
        return samples, time.perf_counter() - started

    try:
        samples, elapsed = phase(16, 0, 8)  # capacity: as fast as it commits
        capacity = stats["ok"] * SPANS_PER_BATCH / elapsed
        print(
            f"capacity: {capacity:.0f} spans/s committed; offering {2 * capacity:.0f} spans/s for {args.seconds:.0f} s"
        )
        samples, elapsed = phase(64, 2 * capacity / SPANS_PER_BATCH, args.seconds)
        print(f"{'t (s)':>6} {'RSS MiB':>8} {'acked batches':>14} {'503 batches':>12}")
        for t, rss, ok, refused in samples:
            print(f"{t:>6.0f} {rss:>8.1f} {ok:>14} {refused:>12}")
        half = len(samples) // 2
        first, second = samples[:half], samples[half:]
        print(
            f"RSS max first half {max(s[1] for s in first):.1f} MiB, second half {max(s[1] for s in second):.1f} MiB;"
            f" committed {stats['ok'] * SPANS_PER_BATCH / elapsed:.0f} spans/s, 503 share"
            f" {stats['503'] / max(1, stats['ok'] + stats['503']):.0%}, other errors {stats['other']}"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if embedded is not None:
            embedded.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
