"""Retention on the real Postgres: raw calls older than N days go by partition, rollups and totals stay,
archives hold exactly the dropped rows, and the collector runs it on its own."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from llmmeter_collector.cli import cli
from llmmeter_collector.config import ConfigError, Settings
from llmmeter_collector.ledger import retention
from llmmeter_collector.ledger.archive import ArchiveError, ArchiveTarget
from llmmeter_collector.service import BackgroundCollector, Collector

from .lifecycle import Call, export, make_spans, totals

NOW = datetime.now(timezone.utc)
AGES = (200, 95, 91, 90, 30, 0)  # days; with 90 days of retention the first three are dropped


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention's today is the test's: a run that crosses midnight UTC still expires the same partitions."""
    monkeypatch.setattr(retention, "utcnow", lambda: NOW)


def _day(age: int) -> date:
    return (NOW - timedelta(days=age)).date()


def _calls() -> list[Call]:
    calls = []
    for age in AGES:
        midnight = datetime.combine(_day(age), datetime.min.time(), tzinfo=timezone.utc)
        at = midnight + (timedelta(hours=12) if age else (NOW - midnight) / 2)
        calls += [Call(at, 1000 + age, 200 + age, "search"), Call(at + timedelta(seconds=1), 10, 5, "support")]
    return calls


def _name(age: int) -> str:
    return f"llm_calls_p{_day(age):%Y%m%d}"


def _rows(dsn: str, schema: str, table: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, options=f"-c search_path={schema} -c timezone=UTC", row_factory=dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY ts, trace_id, span_id").fetchall()


def _partition_names(dsn: str, schema: str) -> set[str]:
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        return {p.name for p in retention.list_partitions(conn, count_rows=False) if not p.detached}


def _same_row(db_row: dict[str, Any], archived: dict[str, Any]) -> None:
    """A JSON-lines row equals the database row it came from, value by value (money exactly)."""
    assert set(archived) == set(db_row)
    for column, value in db_row.items():
        got = archived[column]
        if isinstance(value, datetime):
            got = datetime.fromisoformat(got)
        elif isinstance(value, Decimal):
            got = Decimal(str(got))
        assert got == value, (column, got, value)


def _ingest(settings: Settings) -> tuple[list[Call], str]:
    calls = _calls()
    with BackgroundCollector(settings) as running:
        export(running.url, make_spans(calls))
        spend = httpx.get(running.url + "/api/v1/summary", params={"period": "all"}).json()["spend"]["all"]
    assert Decimal(spend) == sum(c.cost for c in calls)
    return calls, spend


@pytest.fixture
def keep_forever(settings: Settings) -> Settings:
    return dataclasses.replace(settings, retention_days=0, retention_interval_seconds=0)


def test_cli_lists_then_drops_old_partitions_archives_them_and_keeps_rollups(
    keep_forever: Settings, database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    calls, spend = _ingest(keep_forever)
    before = totals(database_url, pg_schema)
    rows_before = {age: _rows(database_url, pg_schema, _name(age)) for age in AGES}
    env = {"LLMMETER_DATABASE_URL": database_url, "LLMMETER_DATABASE_SCHEMA": pg_schema}

    dry = CliRunner().invoke(cli, ["db", "retention", "--dry-run", "--days", "90", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert [p["name"] for p in planned["expired"]] == [_name(200), _name(95), _name(91)]
    assert [p["rows"] for p in planned["expired"]] == [2, 2, 2]
    assert {_name(a) for a in (90, 30, 0)} <= {p["name"] for p in planned["kept"]}
    assert planned["dropped"] == [] and totals(database_url, pg_schema) == before  # a dry run changes nothing

    table = CliRunner().invoke(cli, ["db", "retention", "--dry-run", "--days", "90"], env={**env, "COLUMNS": "120"})
    assert table.exit_code == 0, table.output
    assert "Would drop 3 partitions" in table.output and _name(91) in table.output

    archive_dir = tmp_path / "archive"
    result = CliRunner().invoke(
        cli, ["db", "retention", "--days", "90"], env={**env, "LLMMETER_ARCHIVE_URL": str(archive_dir)}
    )
    assert result.exit_code == 0, result.output
    assert "Dropped 3 partitions" in result.output

    names = _partition_names(database_url, pg_schema)
    assert not names & {_name(200), _name(95), _name(91)}
    assert {_name(90), _name(30), _name(0)} <= names
    after = totals(database_url, pg_schema)
    kept = [c for c in calls if c.at.date() >= _day(90)]
    assert after["llm_calls"] == (len(kept), sum(c.input_tokens for c in kept), sum(c.output_tokens for c in kept),
                                  sum(c.cost for c in kept))  # fmt: skip
    for rollup in ("llm_rollup_minute", "llm_rollup_hour", "llm_rollup_user_day"):
        assert after[rollup] == before[rollup]  # rollups are kept forever
    with psycopg.connect(database_url, options=f"-c search_path={pg_schema}") as conn:
        held = conn.execute("SELECT count(*) FROM llm_call_identity").fetchone()
    assert held == (len(kept),)  # which span holds a call is kept exactly as long as the call
    # partitions for today and the next 7 days exist (created ahead)
    assert {f"llm_calls_p{NOW.date() + timedelta(days=n):%Y%m%d}" for n in range(8)} <= names

    # each archive file holds exactly the rows of its partition
    files = sorted(archive_dir.iterdir())
    assert [f.name for f in files] == sorted(f"{_name(a)}.jsonl.gz" for a in (200, 95, 91))
    for age in (200, 95, 91):
        with gzip.open(archive_dir / f"{_name(age)}.jsonl.gz", "rt", encoding="utf-8") as fh:
            archived = [json.loads(line, parse_float=Decimal) for line in fh]
        assert len(archived) == len(rows_before[age]) == 2
        for db_row, arch_row in zip(rows_before[age], archived, strict=True):
            _same_row(db_row, arch_row)

    # the collector's all-time spend (from rollups) is what it was before retention
    with BackgroundCollector(keep_forever) as running:
        summary = httpx.get(running.url + "/api/v1/summary", params={"period": "all"}).json()
    assert Decimal(summary["spend"]["all"]) == Decimal(spend)

    again = CliRunner().invoke(cli, ["db", "retention", "--days", "90"], env=env)
    assert again.exit_code == 0 and "Dropped nothing" in again.output


def test_the_collector_runs_retention_on_its_schedule(
    keep_forever: Settings, database_url: str, pg_schema: str
) -> None:
    calls, spend = _ingest(keep_forever)
    rollups = totals(database_url, pg_schema)["llm_rollup_hour"]
    settings = dataclasses.replace(keep_forever, retention_days=60, retention_interval_seconds=3600)
    with BackgroundCollector(settings) as running:
        scheduler = running.collector.retention
        assert scheduler is not None and scheduler.wait_for_run(1)
        assert scheduler.last_error is None
        assert scheduler.last_report is not None
        assert [p.name for p in scheduler.last_report.dropped] == [_name(a) for a in (200, 95, 91, 90)]
        assert not _partition_names(database_url, pg_schema) & {_name(a) for a in (200, 95, 91, 90)}
        summary = httpx.get(running.url + "/api/v1/summary", params={"period": "all"}).json()
        assert Decimal(summary["spend"]["all"]) == Decimal(spend)

        # a late export for a day retention already dropped is stored (until the next run), also when this
        # collector had written to that day's partition before retention dropped it
        late = datetime.combine(_day(95), datetime.min.time(), tzinfo=timezone.utc)
        export(running.url, make_spans([Call(late, 7, 3)]))
        assert len(_rows(database_url, pg_schema, _name(95))) == 1
        assert [p.name for p in scheduler.run_once().dropped] == [_name(95)]
        export(running.url, make_spans([Call(late + timedelta(hours=1), 7, 3)]))
        assert len(_rows(database_url, pg_schema, _name(95))) == 1
    after = totals(database_url, pg_schema)
    assert after["llm_rollup_hour"][0] == rollups[0] + 2
    assert after["llm_calls"][0] == sum(1 for c in calls if c.at.date() >= _day(60)) + 1


def test_a_failed_archive_drops_nothing_and_the_next_run_finishes(
    keep_forever: Settings, database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    _ingest(keep_forever)
    rows = _rows(database_url, pg_schema, _name(200))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the archive directory should be")
    bad = ArchiveTarget.from_settings(dataclasses.replace(keep_forever, archive_url=str(blocker / "sub")))
    with pytest.raises(ArchiveError, match="cannot write the archive of " + _name(200)):
        retention.run(database_url, pg_schema, retention_days=90, days_ahead=1, archive=bad)
    # the partition was detached but not dropped: its rows still exist, and the next run picks it up
    assert len(_rows(database_url, pg_schema, _name(200))) == 2
    with psycopg.connect(database_url, options=f"-c search_path={pg_schema}") as conn:
        leftover = [p for p in retention.list_partitions(conn) if p.detached]
    assert [(p.name, p.rows) for p in leftover] == [(_name(200), 2)]

    good = ArchiveTarget.from_settings(
        dataclasses.replace(keep_forever, archive_url=str(tmp_path / "ok"), archive_format="parquet")
    )
    report = retention.run(database_url, pg_schema, retention_days=90, days_ahead=1, archive=good)
    assert [p.name for p in report.dropped] == [_name(200), _name(95), _name(91)]
    assert [a.rows for a in report.archived] == [2, 2, 2]

    import pyarrow.parquet as pq

    archived = pq.read_table(tmp_path / "ok" / f"{_name(200)}.parquet").to_pylist()
    assert len(archived) == 2
    for db_row, arch_row in zip(rows, archived, strict=True):
        arch_row["tags"] = json.loads(arch_row["tags"])
        assert arch_row == db_row


def test_one_retention_run_at_a_time(keep_forever: Settings, database_url: str, pg_schema: str) -> None:
    _ingest(keep_forever)
    args = ["db", "retention", "--days", "90", "--database-url", database_url, "--schema", pg_schema]
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SET search_path = t_another_ledger")  # a run on another schema of the server
        other.execute(f"SELECT pg_advisory_lock({retention.LOCK_KEY_SQL})")
        with psycopg.connect(database_url, autocommit=True, options=f"-c search_path={pg_schema}") as same:
            held = same.execute(f"SELECT pg_try_advisory_lock({retention.LOCK_KEY_SQL})").fetchone()
            assert held == (True,), "another schema's run holds this ledger's retention lock"
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 0, result.output
            assert "Skipped: another process is running retention" in result.output
            assert _name(200) in _partition_names(database_url, pg_schema)
        result = CliRunner().invoke(cli, args)  # only the other schema's run is going on: this one is not held up
        assert result.exit_code == 0, result.output
        assert "Skipped" not in result.output
        assert _name(200) not in _partition_names(database_url, pg_schema)


def test_retention_zero_keeps_everything(keep_forever: Settings, database_url: str, pg_schema: str) -> None:
    _ingest(keep_forever)
    before = totals(database_url, pg_schema)
    report = retention.run(database_url, pg_schema, retention_days=0, days_ahead=2)
    assert report.plan.cutoff is None and report.dropped == []
    assert totals(database_url, pg_schema) == before


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLMMETER_ARCHIVE_FORMAT": "csv"}, "LLMMETER_ARCHIVE_FORMAT must be one of jsonl, parquet, got 'csv'"),
        ({"LLMMETER_ARCHIVE_URL": "s3://"}, "LLMMETER_ARCHIVE_URL: no bucket in 's3://'"),
        ({"LLMMETER_ARCHIVE_URL": "ftp://host/x"}, "LLMMETER_ARCHIVE_URL must be a directory or s3://bucket/prefix"),
        ({"LLMMETER_RETENTION_DAYS": "-1"}, "LLMMETER_RETENTION_DAYS is out of range: -1"),
    ],
)
def test_bad_lifecycle_settings_are_named(env: dict[str, str], message: str, database_url: str) -> None:
    result = CliRunner().invoke(cli, ["db", "retention", "--dry-run", "--database-url", database_url], env=env)
    assert result.exit_code == 2
    assert message in result.output


def test_the_collector_refuses_to_start_with_a_bad_archive_setting(settings: Settings) -> None:
    collector = Collector(dataclasses.replace(settings, archive_format="xml"))
    with pytest.raises(ConfigError, match="LLMMETER_ARCHIVE_FORMAT"):
        collector.start()
    collector.close()


def test_cli_names_a_database_without_a_ledger(database_url: str, pg_schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
    result = CliRunner().invoke(cli, ["db", "partitions", "--database-url", database_url, "--schema", pg_schema])
    assert result.exit_code == 1
    assert f"no llm_calls table in schema {pg_schema}" in result.output
