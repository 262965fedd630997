"""Retroactive repricing speed: a month of calls repriced after a discount, with ingest running meanwhile.

Fills a scratch schema with ``--calls`` generated calls over 30 days (``datagen.bulk_generate``), then applies a
10 % discount on every model from the overrides file and reprices the whole month (``ledger/reprice.py``), while a
writer thread keeps ingesting priced calls through the ledger's normal write path. Prints the reprice time and
rate, and the ingest rate and worst write latency before and during the reprice; checks that the rollups agree
with the calls afterwards. Writes nothing into the repository.

Run: ``.venv/bin/python bench/reprice_speed.py [--calls 1000000]`` (Postgres from LLMMETER_BENCH_DATABASE_URL or
LLMMETER_TEST_DATABASE_URL, else an embedded one in a temporary directory).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from llmmeter_collector.devtools import datagen
from llmmeter_collector.ledger import reprice, storage
from llmmeter_collector.pricing import PriceCatalog

INGEST_BATCH = 500


class Ingest(threading.Thread):
    """Writes priced calls in batches, as the collector's writer does, recording each batch's latency."""

    def __init__(self, dsn: str, schema: str, catalog: PriceCatalog) -> None:
        super().__init__(daemon=True)
        self.ledger = storage.Ledger(dsn, schema)
        self.catalog = catalog
        self.stop = threading.Event()
        self.log: list[tuple[float, float, int]] = []  # (end time, seconds, calls)

    def run(self) -> None:
        seed = 1000
        while not self.stop.is_set():
            seed += 1
            batch = list(datagen.calls(INGEST_BATCH, days=1, seed=seed))
            now_ns = time.time_ns()
            for call in batch:  # arriving now, as live traffic does
                call.end_ns, call.start_ns = now_ns + call.end_ns - call.start_ns, now_ns
                call.cost = self.catalog.price(call)
            started = time.perf_counter()
            written = self.ledger.write(batch)
            ended = time.perf_counter()
            self.log.append((ended, ended - started, len(written)))
        self.ledger.close()

    def window(self, start: float, end: float) -> tuple[float, float]:
        """Calls per second and the worst batch latency (ms) within [start, end)."""
        inside = [(t, s, n) for t, s, n in self.log if start <= t < end]
        calls = sum(n for _, _, n in inside)
        return calls / max(end - start, 1e-9), max((s for _, s, _ in inside), default=0.0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls in the month to reprice")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of ingest measured before the reprice")
    args = parser.parse_args()
    embedded = None
    dsn = os.environ.get("LLMMETER_BENCH_DATABASE_URL") or os.environ.get("LLMMETER_TEST_DATABASE_URL")
    tmp = Path(tempfile.mkdtemp(prefix="llmmeter-bench-"))
    if not dsn:
        from llmmeter_collector.ledger.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(tmp)
        dsn = embedded.start()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    prices = tmp / "prices.yaml"
    prices.write_text("version: 1\ndiscounts:\n  - percent: 10\n    note: negotiated from the start of the month\n")
    now = datetime.now(timezone.utc)
    try:
        storage.migrate(dsn, schema)
        started = time.perf_counter()
        with storage.connect(dsn, schema) as conn:
            datagen.bulk_generate(conn, PriceCatalog(), calls=args.calls, days=30, now=now)
        print(f"generated {args.calls:,} calls over 30 days in {time.perf_counter() - started:.0f} s")

        catalog = PriceCatalog(prices)
        ingest = Ingest(dsn, schema, catalog)
        ingest.start()
        time.sleep(args.baseline)
        before = ingest.window(time.perf_counter() - args.baseline, time.perf_counter())

        spec = reprice.RepriceSpec(now - timedelta(days=31), now + timedelta(minutes=1), reason="manual")
        repricer = reprice.Repricer(dsn, schema, catalog)
        started = time.perf_counter()
        run_id = repricer.run(spec, "bench")
        ended = time.perf_counter()
        during = ingest.window(started, ended)
        ingest.stop.set()
        ingest.join()

        with storage.connect(dsn, schema) as conn:
            run = reprice.get_run(conn, run_id, None)
            calls_total, calls_unpriced = conn.execute(
                "SELECT coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL) FROM llm_calls"
            ).fetchone()  # type: ignore[misc]
            rollup_total, rollup_unpriced = conn.execute(
                "SELECT sum(cost_usd), sum(unpriced_calls) FROM llm_rollup_hour"
            ).fetchone()  # type: ignore[misc]
        assert run is not None and run["status"] == "done", run
        agree = calls_total == rollup_total and calls_unpriced == rollup_unpriced
        seconds = ended - started
        print(f"\nreprice of {run['examined']:,} calls (10 % discount), ingest running meanwhile")
        print(f"{'':<34} {'value':>14}")
        print(f"{'reprice time':<34} {seconds:>12.1f} s")
        print(f"{'calls examined / s':<34} {run['examined'] / seconds:>14,.0f}")
        print(f"{'calls changed':<34} {run['changed']:>14,}")
        print(f"{'USD before -> after':<34} {run['usd_before'][:12]:>6} -> {run['usd_after'][:12]}")
        print(f"{'ingest before: calls/s':<34} {before[0]:>14,.0f}")
        print(f"{'ingest during: calls/s':<34} {during[0]:>14,.0f}")
        print(f"{'ingest worst batch before / during':<34} {before[1]:>8.0f} / {during[1]:.0f} ms")
        print(f"{'rollups agree with the calls':<34} {'yes' if agree else 'NO':>14}")
        if not agree:
            raise SystemExit("rollups disagree with the calls after the reprice")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
