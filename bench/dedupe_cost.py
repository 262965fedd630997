"""What one priced call per provider call costs the ledger: Postgres CPU per call written with an identity key
(a response id: every llmmeter span has one) against the same calls without one, and per duplicate span.

Measured as the writer's Postgres backend CPU time (/proc/<pid>/stat, utime + stime), not wall time: a shared
machine's other load does not count, only the work the backend did for the statements. Blocks alternate so drifts
cancel; the median of the per-call differences is printed.

Run: ``.venv/bin/python bench/dedupe_cost.py`` (Postgres on this machine from LLMMETER_BENCH_DATABASE_URL or
LLMMETER_TEST_DATABASE_URL, else an embedded one). Options: ``--calls 5000 --rounds 7``. Writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from ingest_throughput import bench_dsn

from llmmeter_collector.devtools import datagen
from llmmeter_collector.ledger.storage import Ledger, copy_rows, migrate
from llmmeter_collector.llmcall import LlmCall
from llmmeter_collector.pricing import PriceCatalog

_TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    """The Postgres backend's CPU seconds so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def batch(catalog: PriceCatalog, count: int, seed: int, keyed: bool) -> list[LlmCall]:
    calls = []
    for i, call in enumerate(datagen.calls(count, now=datetime.now(timezone.utc), days=2, seed=seed)):
        call = dataclasses.replace(call, response_id=f"resp-{seed}-{i}" if keyed else "")
        call.call_key = f"{call.provider}:{call.response_id}" if keyed else ""
        call.completeness = 2
        call.cost = catalog.price(call)
        calls.append(call)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    dsn, embedded = bench_dsn()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    migrate(dsn, schema)
    ledger = Ledger(dsn, schema)
    try:
        conn = ledger._connection()
        pid = conn.info.backend_pid
        per_call: dict[str, list[float]] = {"no key": [], "keyed": [], "duplicate": []}
        catalog = PriceCatalog(None)
        seed = 0
        kinds = ["no key", "keyed", "duplicate"]
        for round_ in range(args.rounds):
            for kind in kinds[round_ % 3 :] + kinds[: round_ % 3]:  # each kind first, second and last in turn
                seed += 1
                calls = batch(catalog, args.calls, seed, keyed=kind != "no key")
                if kind == "duplicate":  # the same calls again under new span ids: a second instrumentation
                    ledger.write(calls, copy_rows(calls))
                    calls = [dataclasses.replace(c, span_id=uuid.uuid4().hex[:16]) for c in calls]
                rows = copy_rows(calls)
                ledger.ensure_partitions({datetime.fromtimestamp(c.start_ns / 1e9, timezone.utc).date() for c in calls})
                before = backend_cpu(pid)
                ledger.write(calls, rows)
                per_call[kind].append((backend_cpu(pid) - before) / len(calls) * 1e6)
        base = statistics.median(per_call["no key"])
        print(f"Postgres backend CPU per call, {args.calls} calls per write, median of {args.rounds} rounds")
        print("rounds:", {kind: [round(v, 1) for v in values] for kind, values in per_call.items()})
        print(f"{'write':<34}{'µs per call':>12}{'vs no key':>12}")
        for kind, label in (
            ("no key", "calls without an identity key"),
            ("keyed", "calls with a key (new)"),
            ("duplicate", "second spans of stored calls"),
        ):
            value = statistics.median(per_call[kind])
            print(f"{label:<34}{value:>12.1f}{value - base:>+12.1f}")
    finally:
        ledger.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if embedded is not None:
            embedded.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
