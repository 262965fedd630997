"""The Postgres write path (storage.Ledger): exactly-once rows and rollups, exact timestamps."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

import psycopg

from llmmeter_collector import storage
from llmmeter_collector.llmcall import Cost, LlmCall, Usage


def _call(span: int, start_ns: int, input_tokens: int = 100) -> LlmCall:
    return LlmCall(
        trace_id=f"{span:032x}", span_id=f"{span:016x}", start_ns=start_ns, end_ns=start_ns + 10**9,
        provider="openai", operation="chat", request_model="gpt-4o-mini", project="shop", user_id="u1",
        usage=Usage(input_tokens=input_tokens, output_tokens=10),
        cost=Cost(total=Decimal("0.001"), parts={"input": Decimal("0.001")}, price_source="catalog"),
    )  # fmt: skip


def test_a_call_staged_twice_in_one_batch_is_one_row_and_counted_once(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    ledger = storage.Ledger(database_url, pg_schema)
    now = time.time_ns()
    first, again, other = _call(1, now), _call(1, now), _call(2, now)  # a retried export lands in the same batch
    try:
        assert ledger.write([first, again, other]) == [first, other]
        assert ledger.write([_call(1, now), _call(2, now)]) == []  # and a later retry adds nothing
        third = _call(3, now)
        assert ledger.write([third, _call(1, now)]) == [third]  # a batch mixing a new call and a retried one
    finally:
        ledger.close()
    with storage.connect(database_url, pg_schema) as conn:
        assert conn.execute("SELECT count(*) FROM llm_calls").fetchone() == (3,)
        for table in ("llm_rollup_minute", "llm_rollup_hour", "llm_rollup_user_day"):
            calls, tokens, cost = conn.execute(
                f"SELECT sum(calls), sum(input_tokens), sum(cost_usd) FROM {table}"
            ).fetchone()  # type: ignore[misc]
            assert (calls, tokens, cost) == (3, 300, Decimal("0.003")), table


def test_start_times_are_stored_to_the_exact_microsecond(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    ledger = storage.Ledger(database_url, pg_schema)
    start_ns = 1_764_000_000_123_456_789  # 2025-11-24T16:00:00.123456789Z
    try:
        ledger.write([_call(7, start_ns)])
    finally:
        ledger.close()
    with psycopg.connect(database_url, options=f"-c search_path={pg_schema}") as conn:
        (ts,) = conn.execute("SELECT ts FROM llm_calls").fetchone()  # type: ignore[misc]
    assert ts == datetime(2025, 11, 24, 16, 0, 0, 123456, tzinfo=timezone.utc)
