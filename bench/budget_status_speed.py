"""How long one budget evaluation takes, per kind of scope, on a month of generated calls.

Generates CALLS calls over the last 30 days (10k users, 20 features, 6 models, a third tagged) into a
scratch schema of the Postgres at LLMMETER_BENCH_DATABASE_URL (default: the local test server), builds the
rollups from them, then times ``evaluate`` (spend + forecast) for a monthly budget of each scope kind.
Prints a table; drops the schema; writes nothing into the repo.
Run: .venv/bin/python bench/budget_status_speed.py [CALLS]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from datetime import date, datetime, timezone

import psycopg

from llmmeter_collector.budgets import definition as b
from llmmeter_collector.budgets.status import evaluate, source_of
from llmmeter_collector.ledger import storage

DSN = os.environ.get("LLMMETER_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCOPES = {
    "everything": {},
    "feature": {"feature": "f7"},
    "project + model": {"project": "p1", "model": "m2"},
    "user": {"user": "u42"},
    "user + model": {"user": "u42", "model": "m2"},
    "tag": {"tags": {"team": "t3"}},
}

FILL = """
WITH gen AS (
  SELECT g, now() - random() * interval '30 days' AS ts FROM generate_series(1, %(n)s) g
)
INSERT INTO llm_calls (ts, trace_id, span_id, project, feature, user_id, tags, provider, operation,
                       request_model, model, input_tokens, output_tokens, cost_usd)
SELECT ts, md5(g::text), substr(md5(g::text || 's'), 1, 16), 'p' || (g %% 5), 'f' || (g %% 20), 'u' || (g %% 10000),
       CASE WHEN g %% 3 = 0 THEN jsonb_build_object('team', 't' || (g %% 7)) ELSE '{}'::jsonb END,
       'openai', 'chat', 'm' || (g %% 6), 'm' || (g %% 6), 100, 50,
       CASE WHEN g %% 50 = 0 THEN NULL ELSE round((random() / 100)::numeric, 8) END
FROM gen
"""
ROLLUP = """
INSERT INTO {table} (bucket, project, environment, provider, model, feature, operation, status, calls,
    unpriced_calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    cost_usd, duration_s)
SELECT date_trunc('{unit}', ts), project, environment, provider, model, feature, operation, status, count(*),
       count(*) FILTER (WHERE cost_usd IS NULL), sum(input_tokens), sum(output_tokens), 0, 0, 0,
       coalesce(sum(cost_usd), 0), 0
FROM llm_calls GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""
USER_ROLLUP = """
INSERT INTO llm_rollup_user_day (bucket, project, user_id, feature, calls, unpriced_calls, input_tokens,
    output_tokens, cost_usd)
SELECT date_trunc('day', ts), project, user_id, feature, count(*), count(*) FILTER (WHERE cost_usd IS NULL),
       sum(input_tokens), sum(output_tokens), coalesce(sum(cost_usd), 0)
FROM llm_calls GROUP BY 1, 2, 3, 4
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    storage.migrate(DSN, schema)
    try:
        ledger = storage.Ledger(DSN, schema)
        today = datetime.now(timezone.utc).date()
        ledger.ensure_partitions({date.fromordinal(today.toordinal() - d) for d in range(0, 32)})
        ledger.close()
        t0 = time.perf_counter()
        with storage.connect(DSN, schema) as conn:
            conn.execute(FILL, {"n": n})
            conn.execute(ROLLUP.format(table="llm_rollup_hour", unit="hour"))
            conn.execute(USER_ROLLUP)
            conn.execute("ANALYZE")
        print(f"generated {n:,} calls over 30 days in {time.perf_counter() - t0:.1f} s (schema {schema})\n")
        pool = storage.create_pool(DSN, schema)
        now = datetime.now(timezone.utc)
        print(f"{'scope':<18} {'source':<9} {'median':>9} {'p95':>9}  spent")
        for name, scope in SCOPES.items():
            budget = b.parse_budget({"name": "x", "limit": 100, "scope": scope, "timezone": "Asia/Kolkata"})
            times, status = [], None
            for _ in range(15):
                start = time.perf_counter()
                status = evaluate(pool, budget, now)
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            assert status is not None
            p95 = times[int(len(times) * 0.95) - 1]
            print(
                f"{name:<18} {source_of(budget.scope):<9} {statistics.median(times):7.1f}ms {p95:7.1f}ms"
                f"  ${status.spent:.2f}"
            )
        pool.close()
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
