"""Query speed of the REST API on a large ledger: summary, budget status, a page of calls, export rows/s.

Generates CALLS (default 10 million) calls over 30 days into a scratch Postgres schema with SQL
(``datagen.bulk_generate``: generate_series per day partition, rollups by GROUP BY), starts a collector on it,
and times the endpoints over HTTP. Targets (issue 8): summary and budget status p95 < 100 ms, a page of calls
< 100 ms, export >= 100k rows/s. Prints a table; writes nothing into the repository; drops the schema.

    LLMMETER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/query_speed.py
    BENCH_CALLS=1000000 ...   # a smaller run
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import psycopg

from llmmeter_collector.config import Settings
from llmmeter_collector.devtools import datagen
from llmmeter_collector.ledger import storage
from llmmeter_collector.pricing import PriceCatalog
from llmmeter_collector.service import BackgroundCollector

DSN = os.environ.get("LLMMETER_BENCH_DATABASE_URL") or os.environ.get(
    "LLMMETER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CALLS = int(os.environ.get("BENCH_CALLS", "10000000"))
RUNS = 40


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]


def _time(fn: Callable[[], object], runs: int = RUNS) -> list[float]:
    fn()  # warm up (plans, caches)
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    rows: list[tuple[str, str, str, str]] = []
    try:
        storage.migrate(DSN, schema)
        start = time.perf_counter()
        with storage.connect(DSN, schema) as conn:
            datagen.bulk_generate(conn, PriceCatalog(), calls=CALLS, days=30)
        generated_s = time.perf_counter() - start
        rows.append(("generate calls + rollups (SQL)", f"{CALLS:,} calls", f"{generated_s:.1f} s", "-"))

        with BackgroundCollector(Settings(database_url=DSN, database_schema=schema, http_port=0)) as running:
            # keys in use, as in production: an admin key, and a viewer key limited to two projects
            admin = running.collector.keys.create("bench-admin", "admin")
            limited = running.collector.keys.create("bench-two-projects", "viewer", ["support", "research"])
            client = httpx.Client(base_url=running.url, timeout=600, headers={"Authorization": f"Bearer {admin}"})
            limited_client = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {limited}"})
            budget = {"name": "shop-month", "limit_usd": "50000", "scope": {"project": "shop"}}
            client.post("/api/v1/budgets", json=budget).raise_for_status()
            client.post("/api/v1/budgets", json={"name": "all-month", "limit_usd": "200000"}).raise_for_status()

            def get(path: str, via: httpx.Client = client, **params: str) -> Callable[[], object]:
                def call() -> object:
                    response = via.get(path, params=params)
                    response.raise_for_status()
                    return response

                return call

            def next_cursor(**params: str) -> str:
                cursor = client.get("/api/v1/calls", params=params).raise_for_status().json()["next_cursor"]
                assert isinstance(cursor, str)
                return cursor

            now = datetime.now(timezone.utc)
            week_ago, two_days_ago = (now - timedelta(days=7)).isoformat(), (now - timedelta(days=2)).isoformat()
            calls = "/api/v1/calls"
            cases = [
                ("summary (month)", get("/api/v1/summary"), 100),
                ("summary (all, project shop)", get("/api/v1/summary", period="all", project="shop"), 100),
                ("budget status", get("/api/v1/budgets/status"), 100),
                ("page of 50 calls, newest", get(calls), 100),
                ("next page (cursor)", get(calls, cursor=next_cursor()), 100),
                ("page of 50 calls, project+feature", get(calls, project="support", feature="triage"), 100),
                ("page of 50 calls, user, last week", get(calls, user="user-007", since=week_ago), 100),
                ("page of 50, most expensive in a week", get(calls, order="cost", since=week_ago), 100),
                ("  ... next page (cursor)", get(calls, order="cost", since=week_ago,
                                                 cursor=next_cursor(order="cost", since=week_ago)), 100),
                ("  ... 7 to 2 days ago", get(calls, order="cost", since=week_ago, until=two_days_ago), 100),
                ("  ... project shop", get(calls, order="cost", since=week_ago, project="shop"), 100),
                ("  ... key limited to 2 projects", get(calls, limited_client, order="cost", since=week_ago), 100),
            ]  # fmt: skip
            for name, fn, target in cases:
                samples = _time(fn)
                p95 = _p95(samples)
                verdict = "ok" if p95 < target else "SLOW"
                rows.append(
                    (name, f"p50 {statistics.median(samples):.1f} ms", f"p95 {p95:.1f} ms", f"< {target} ms {verdict}")
                )

            for fmt in ("csv", "jsonl"):
                since = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
                start = time.perf_counter()
                lines = size = 0
                with client.stream("GET", "/api/v1/export", params={"format": fmt, "since": since}) as response:
                    for chunk in response.iter_bytes():
                        lines += chunk.count(b"\n")
                        size += len(chunk)
                seconds = time.perf_counter() - start
                rate = lines / seconds
                verdict = "ok" if rate >= 100_000 else "SLOW"
                rows.append(
                    (f"export {fmt} (last 3 days)", f"{lines:,} rows, {size / 1e6:.0f} MB", f"{rate:,.0f} rows/s",
                     f">= 100,000 {verdict}")
                )  # fmt: skip
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"query speed on {CALLS:,} stored calls (Postgres {DSN.rsplit('@', 1)[-1]})")
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
