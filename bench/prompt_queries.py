"""Prompt, prompt-family and experiment queries on a large ledger: the dashboard budget is p95 < 500 ms.

Generates CALLS (default 10 million) calls over 30 days into a scratch Postgres schema (``datagen.bulk_generate``:
a new prompt version every 10 days, a third of the calls in experiments with two variants, every call signed: its
feature's family signature with up to 3 bits flipped: 179,326 distinct signatures in 10 million calls), starts a
collector on it and times the endpoints over HTTP with an admin key. Checks that the generated rollups agree with
the calls. Prints a table; writes nothing into the repository; drops the schema.

    LLMMETER_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/prompt_queries.py
    BENCH_CALLS=1000000 ...   # a smaller run (BENCH_USERS, BENCH_FAMILIES: cardinalities)
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable

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
USERS = int(os.environ.get("BENCH_USERS", "20000"))  # distinct end users (experiments' per-user test)
FAMILIES = int(os.environ.get("BENCH_FAMILIES", "3"))  # prompt families per project (a signature per call)
RUNS = 40
TARGET_MS = 500


def _time(fn: Callable[[], object]) -> list[float]:
    fn()
    out = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _agree(conn: psycopg.Connection) -> bool:  # type: ignore[type-arg]
    calls = conn.execute(
        "SELECT count(*) FILTER (WHERE experiment <> ''), coalesce(sum(cost_usd) FILTER (WHERE experiment <> ''), 0),"
        " count(*) FILTER (WHERE prompt_simhash <> '') FROM llm_calls"
    ).fetchone()
    rolled = (
        conn.execute("SELECT sum(calls), sum(cost_usd) FROM llm_rollup_experiment_day").fetchone(),
        conn.execute(
            "SELECT sum(s) FROM (SELECT (SELECT sum(x) FROM unnest(hist) x) AS s FROM llm_rollup_experiment_day) t"
        ).fetchone(),
        conn.execute("SELECT sum(calls) FROM llm_rollup_signature_day").fetchone(),
        conn.execute("SELECT sum(calls) FROM llm_rollup_prompt_day").fetchone(),
    )
    assert calls is not None
    return (rolled[0] == (calls[0], calls[1]) and rolled[1] == (calls[0],) and rolled[2] == (calls[2],)
            and rolled[3] == (CALLS,))  # fmt: skip


def main() -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    rows: list[tuple[str, str, str, str]] = []
    try:
        storage.migrate(DSN, schema)
        start = time.perf_counter()
        with storage.connect(DSN, schema) as conn:
            datagen.bulk_generate(conn, PriceCatalog(), calls=CALLS, days=30, users=USERS, families=FAMILIES)
            agree = _agree(conn)
            sizes = {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in (
                    "llm_rollup_prompt_day",
                    "llm_rollup_experiment_day",
                    "llm_rollup_experiment_user",
                    "llm_rollup_signature_day",
                )
            }
            (distinct,) = conn.execute("SELECT count(DISTINCT prompt_simhash) FROM llm_calls").fetchone()  # type: ignore[misc]
        print(f"generated {CALLS:,} calls + rollups in {time.perf_counter() - start:.0f} s; {distinct:,} distinct"
              f" prompt signatures; rollup rows {sizes};"
              f" rollups agree with the calls: {'yes' if agree else 'NO'}")  # fmt: skip
        with BackgroundCollector(Settings(database_url=DSN, database_schema=schema, http_port=0)) as running:
            admin = running.collector.keys.create("bench-admin", "admin")
            client = httpx.Client(base_url=running.url, timeout=600, headers={"Authorization": f"Bearer {admin}"})

            def get(path: str, **params: str) -> Callable[[], object]:
                def call() -> object:
                    response = client.get(path, params=params)
                    response.raise_for_status()
                    return response

                return call

            prompt = client.get("/api/v1/prompts").json()["prompts"][0]["prompt"]
            experiment = client.get("/api/v1/experiments").json()["experiments"][0]["experiment"]
            for label, fn in (
                ("prompts (30 days)", get("/api/v1/prompts")),
                (f"prompts/{prompt} (versions, changes, series)", get(f"/api/v1/prompts/{prompt}")),
                ("prompt-families (max_distance 3)", get("/api/v1/prompt-families")),
                ("prompt-families (max_distance 6)", get("/api/v1/prompt-families", max_distance="6")),
                ("experiments", get("/api/v1/experiments")),
                (f"experiments/{experiment} (tests)", get(f"/api/v1/experiments/{experiment}")),
            ):
                samples = _time(fn)
                p95 = statistics.quantiles(samples, n=20)[-1]
                rows.append((label, f"{statistics.median(samples):.0f} ms", f"{p95:.0f} ms",
                             "ok" if p95 < TARGET_MS else "OVER"))  # fmt: skip
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print(f"\n{CALLS:,} calls over 30 days, {USERS:,} users, {FAMILIES} prompt families a project;"
          f" target p95 < {TARGET_MS} ms")  # fmt: skip
    print(f"{'query':<52} {'p50':>8} {'p95':>8}  target")
    for label, p50, p95, verdict in rows:
        print(f"{label:<52} {p50:>8} {p95:>8}  {verdict}")


if __name__ == "__main__":
    main()
