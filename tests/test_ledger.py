"""The Postgres write path (storage.Ledger): exactly-once rows and rollups, exact timestamps."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pytest

from llmmeter_collector.ledger import storage
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


def _tricky(span: int, start_ns: int) -> LlmCall:
    call = _call(span, start_ns)
    call.feature = "tab\there, newline\nthere, cr\r, backslash \\ and \\N, émoji 🚀"
    call.user_id = "\\"
    call.tags = {"note": 'quote " and \\ and \t'}
    call.ttfc_s = 0.1 + 0.2  # a float that needs all its digits
    call.reported_cost = Decimal("1E-9")
    return call


def test_copy_rows_without_psycopgs_private_formatter_are_byte_identical() -> None:
    assert storage._format_rows is not storage._format_rows_python  # psycopg's C formatter is in use here
    calls = [_tricky(1, time.time_ns()), _call(2, time.time_ns())]
    rows = [storage._row(c) for c in calls]
    fallback = bytearray()
    storage._format_rows_python(rows, fallback)
    assert bytes(fallback) == storage.copy_rows(calls)


def test_text_with_tabs_newlines_and_backslashes_reads_back_unchanged(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    ledger = storage.Ledger(database_url, pg_schema)
    now = time.time_ns()
    by_python, by_psycopg = _tricky(1, now), _tricky(2, now)
    fallback = bytearray()
    storage._format_rows_python([storage._row(by_python)], fallback)
    try:
        assert ledger.write([by_python], bytes(fallback)) == [by_python]
        assert ledger.write([by_psycopg]) == [by_psycopg]
    finally:
        ledger.close()
    with storage.connect(database_url, pg_schema) as conn:
        rows = conn.execute("SELECT feature, user_id, tags, ttfc_s, reported_cost_usd FROM llm_calls").fetchall()
    expected = (by_python.feature, "\\", by_python.tags, 0.1 + 0.2, Decimal("1E-9"))
    assert rows == [expected, expected]


def test_writers_setting_is_checked() -> None:
    from llmmeter_collector.config import ConfigError, Settings

    assert Settings.from_env({"LLMMETER_WRITERS": "3"}).writers == 3
    with pytest.raises(ConfigError, match="LLMMETER_WRITERS must be at least 1"):
        Settings.from_env({"LLMMETER_WRITERS": "0"})


def test_a_batch_postgres_rolls_back_as_a_deadlock_is_written_again(database_url: str, pg_schema: str) -> None:
    """Another writer holds one of the batch's calls uncommitted and then waits for one the batch inserted:
    Postgres rolls the batch back as a deadlock, and the write runs it again instead of failing the export."""
    storage.migrate(database_url, pg_schema)
    now = time.time_ns()
    first, second = _call(1, now), _call(2, now)
    ledger, other = storage.Ledger(database_url, pg_schema), storage.Ledger(database_url, pg_schema)
    ledger.write([_call(9, now)])  # partitions made, connection open
    conn = other._connection()
    conn.execute("SET deadlock_timeout = '20s'")  # the batch's session detects the deadlock: it is the victim
    conn.commit()
    result: list[object] = []
    writer = threading.Thread(target=lambda: result.append(_write_or_error(ledger, [first, second])))
    try:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(storage._COPY_SQL) as copy:
                copy.write(storage.copy_rows([second]))
            cur.execute(storage._INSERT_SQL)  # holds `second`, uncommitted
            writer.start()  # inserts `first`, then waits for `second`
            with psycopg.connect(database_url, autocommit=True) as watch:
                deadline = time.monotonic() + 10
                waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                while not watch.execute(waiting).fetchone()[0]:  # type: ignore[index]
                    assert time.monotonic() < deadline, "the batch never waited for the other writer"
                    time.sleep(0.01)
            cur.execute("DELETE FROM llm_calls_staging")
            with cur.copy(storage._COPY_SQL) as copy:
                copy.write(storage.copy_rows([first]))
            cur.execute(storage._INSERT_SQL)  # waits for the batch's `first`: a deadlock, the batch is rolled back
        writer.join(30)
    finally:
        ledger.close()
        other.close()
    assert result == [[]]  # run again after the other writer committed: both calls were already there
    with storage.connect(database_url, pg_schema) as check:
        assert check.execute("SELECT count(*) FROM llm_calls").fetchone() == (3,)
        assert check.execute("SELECT sum(calls) FROM llm_rollup_minute").fetchone() == (3,)


def _write_or_error(ledger: storage.Ledger, calls: list[LlmCall]) -> object:
    try:
        return ledger.write(calls)
    except Exception as exc:
        return exc
