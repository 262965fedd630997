"""Backfill is a feature: one export over years of past days commits whole, with about one partition per month
(never one per day), and retention still drops old data by partition afterwards."""

from __future__ import annotations

import dataclasses
import time
from datetime import date, datetime, timedelta, timezone

import httpx
import psycopg

from llmmeter_collector.config import Settings
from llmmeter_collector.ledger import retention, storage
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF, export_request

DAYS = 2_100  # distinct past days in one export: back to 2021 (spans since 2020-01-01 are accepted)
NS_PER_DAY = 86_400 * 10**9


def _partitions(dsn: str, schema: str) -> list[retention.Partition]:
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        return [p for p in retention.list_partitions(conn, count_rows=False) if not p.detached]


def _count(dsn: str, schema: str, sql: str) -> int:
    with storage.connect(dsn, schema) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_one_export_over_two_thousand_past_days_commits_with_a_bounded_partition_count(
    settings: Settings, database_url: str, pg_schema: str
) -> None:
    keep = dataclasses.replace(settings, retention_days=0, retention_interval_seconds=0)
    noon_today = (time.time_ns() // NS_PER_DAY) * NS_PER_DAY + NS_PER_DAY // 2
    request = export_request(*[{**CHAT, "llmmeter.feature": f"day{n}"} for n in range(DAYS)])
    for n, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        span.start_time_unix_nano = noon_today - (n + 3) * NS_PER_DAY  # 3 .. 2,102 days ago, one span a day
        span.end_time_unix_nano = span.start_time_unix_nano + 10**9
    with BackgroundCollector(keep) as running:
        answer = httpx.post(
            running.url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF, timeout=120
        )
        assert answer.status_code == 200, answer.text
        assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == DAYS
        assert _count(database_url, pg_schema, "SELECT count(DISTINCT ts::date) FROM llm_calls") == DAYS
        assert _count(database_url, pg_schema, "SELECT sum(calls) FROM llm_rollup_hour") == DAYS
        parts = _partitions(database_url, pg_schema)
        months = DAYS // 28 + 2
        assert len(parts) <= months + 8 + 3, [p.name for p in parts]  # months + days ahead + recent days
        page = httpx.get(running.url + "/api/v1/calls", params={"limit": "50"}, timeout=30)
        assert page.status_code == 200 and len(page.json()["calls"]) == 50
        # a later export of more old days lands in the partitions made for the backfill: none is added
        again = export_request(CHAT)
        late = again.resource_spans[0].scope_spans[0].spans[0]
        late.start_time_unix_nano = noon_today - 1000 * NS_PER_DAY + 1
        late.end_time_unix_nano = late.start_time_unix_nano + 10**9  # a call of a second (not of 1,000 days)
        late.span_id = (99_999).to_bytes(8, "big")
        assert httpx.post(running.url + "/v1/traces", content=again.SerializeToString(), headers=PROTOBUF).is_success
        assert len(_partitions(database_url, pg_schema)) == len(parts)
        assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == DAYS + 1
    # retention keeps working: a partition goes when its whole range is older than the cutoff
    report = retention.run(database_url, pg_schema, retention_days=365, days_ahead=1)
    cutoff = report.plan.cutoff
    assert cutoff is not None and report.dropped
    assert all(p.end <= cutoff for p in report.dropped)
    kept = _partitions(database_url, pg_schema)
    assert all(p.end > cutoff for p in kept)
    with storage.connect(database_url, pg_schema) as conn:
        oldest = conn.execute("SELECT min(ts) FROM llm_calls").fetchone()
    assert oldest is not None and oldest[0] >= min(p.start for p in kept)
    younger = sum(1 for n in range(DAYS) if _day(noon_today, n + 3) >= cutoff)
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") >= younger  # nothing young dropped


def _day(noon_today: int, days_ago: int) -> datetime:
    return datetime.fromtimestamp((noon_today - days_ago * NS_PER_DAY) / 1e9, timezone.utc)


def test_late_data_stays_in_daily_partitions_and_a_backfill_fills_the_rest_of_its_month() -> None:
    today = date(2026, 12, 3)
    ahead = [(today + timedelta(days=n), today + timedelta(days=n + 1)) for n in range(8)]
    # a late call of one past day: a daily partition (retention drops it day by day)
    late = storage.plan_partitions([date(2026, 9, 4)], ahead, today)
    assert late == [(date(2026, 9, 4), date(2026, 9, 5))]
    # a backfill of a whole past month: one partition around the daily one that exists
    existing = sorted(ahead + late)
    month = [date(2026, 9, 1) + timedelta(days=n) for n in range(30)]
    filled = storage.plan_partitions(month, existing, today)
    assert filled == [(date(2026, 9, 1), date(2026, 9, 4)), (date(2026, 9, 5), date(2026, 10, 1))]
    # the recent days are always daily, and a month-wide partition never reaches into them
    recent = storage.plan_partitions([date(2026, 11, 20), date(2026, 12, 1), date(2026, 11, 21),
                                      date(2026, 11, 22), date(2026, 11, 23)], ahead, today)  # fmt: skip
    assert (date(2026, 12, 1), date(2026, 12, 2)) in recent
    assert all(end <= date(2026, 12, 1) or end - start == timedelta(days=1) for start, end in recent)
    assert (date(2026, 11, 1), date(2026, 12, 1)) in recent
