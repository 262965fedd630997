"""Data lifecycle speed: dropping a day of raw calls by partition vs DELETE, archiving it (JSON lines, Parquet),
and a pg_dump / pg_restore round trip. Prints a table; writes nothing into the repository.

Run: ``.venv/bin/python bench/retention_speed.py [--rows 200000]`` (Postgres from LLMMETER_BENCH_DATABASE_URL or
LLMMETER_TEST_DATABASE_URL, else an embedded one in a temporary directory). Works in fresh schemas and
databases that are dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from llmmeter_collector.config import Settings
from llmmeter_collector.ledger import backup, retention, storage
from llmmeter_collector.ledger.archive import ArchiveTarget

DAY = date(2024, 1, 1)


def _fill(dsn: str, schema: str, day: date, rows: int) -> None:
    ledger = storage.Ledger(dsn, schema)
    ledger.ensure_partitions([day])
    ledger.close()
    with storage.connect(dsn, schema, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO llm_calls (ts, trace_id, span_id, provider, operation, request_model, model, feature,"
            " user_id, input_tokens, output_tokens, cost_usd, tags)"
            " SELECT %s::timestamptz + (i * interval '86399 seconds' / %s), md5(i::text), to_hex(i), 'openai', 'chat',"
            " 'gpt-4o-mini', 'gpt-4o-mini', 'f' || (i %% 7), 'u' || (i %% 1000), 1000 + i %% 500, 200 + i %% 300,"
            ' (1000 + i %% 500) * 0.00000015 + (200 + i %% 300) * 0.0000006, \'{"team": "growth"}\''
            " FROM generate_series(1, %s) AS i",
            (datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc), rows, rows),
        )
        conn.execute("ANALYZE llm_calls")


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in one day's partition")
    args = parser.parse_args()
    embedded = None
    dsn = os.environ.get("LLMMETER_BENCH_DATABASE_URL") or os.environ.get("LLMMETER_TEST_DATABASE_URL")
    tmp = Path(tempfile.mkdtemp(prefix="llmmeter-bench-"))
    if not dsn:
        from llmmeter_collector.ledger.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(tmp)
        dsn = embedded.start()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    restore_db = f"bench_restore_{uuid.uuid4().hex[:10]}"
    results: list[tuple[str, float, str]] = []
    n = args.rows
    try:
        storage.migrate(dsn, schema)
        now = datetime.combine(DAY + timedelta(days=100), datetime.min.time(), tzinfo=timezone.utc)

        _fill(dsn, schema, DAY, n)
        with storage.connect(dsn, schema, autocommit=True) as conn:
            t = _timed(lambda: conn.execute("DELETE FROM llm_calls WHERE ts < %s", (now,)))
        results.append(("DELETE one day (then still needs VACUUM)", t, f"{n / t:,.0f} rows/s"))

        for fmt in ("none", "jsonl", "parquet"):
            _fill(dsn, schema, DAY, n)
            target = None
            if fmt != "none":
                target = ArchiveTarget.from_settings(
                    Settings(archive_url=str(tmp / f"archive-{fmt}"), archive_format=fmt)
                )
            started = time.perf_counter()
            retention.run(dsn, schema, retention_days=90, days_ahead=0, archive=target, now=now)
            t = time.perf_counter() - started
            size = sum(f.stat().st_size for f in (tmp / f"archive-{fmt}").glob("*")) if target else 0
            label = "retention: detach + drop the partition" if fmt == "none" else f"retention with {fmt} archive"
            extra = f"{n / t:,.0f} rows/s, {size / n:.1f} bytes/row" if target else "counts the rows, drops the table"
            results.append((label, t, extra))

        _fill(dsn, schema, DAY, n)
        dump = tmp / "bench.dump"
        t = _timed(lambda: backup.backup(dsn, schema, dump))
        results.append(
            ("llmmeter db backup (pg_dump -Fc)", t, f"{n / t:,.0f} rows/s, {dump.stat().st_size / n:.1f} bytes/row")
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {restore_db}")
        target_dsn = make_conninfo(dsn, dbname=restore_db)
        t = _timed(lambda: backup.restore(target_dsn, dump))
        results.append(("llmmeter db restore (pg_restore, one transaction)", t, f"{n / t:,.0f} rows/s"))
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"DROP DATABASE IF EXISTS {restore_db}")
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nOne day of {n:,} raw calls")
    print(f"{'operation':<52} {'seconds':>8}  rate")
    for label, seconds, extra in results:
        print(f"{label:<52} {seconds:>8.3f}  {extra}")


if __name__ == "__main__":
    main()
