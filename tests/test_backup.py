"""Backups with the real pg_dump / pg_restore against the real Postgres: a round trip into a fresh database
gives back every call and every rollup, exactly, and a collector started on it reports the same spend."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from llmmeter_collector.cli import cli
from llmmeter_collector.config import Settings
from llmmeter_collector.ledger.backup import BackupError, find_tool
from llmmeter_collector.service import BackgroundCollector

from .lifecycle import Call, export, make_spans, totals


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the same server; dropped afterwards."""
    name = f"llmmeter_restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(database_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _fill(settings: Settings) -> Decimal:
    now = datetime.now(timezone.utc)
    calls = [Call(now - timedelta(days=d, minutes=m), 100 * d + m, 7 * m + 1) for d in (0, 1, 40) for m in range(5)]
    with BackgroundCollector(settings) as running:
        export(running.url, make_spans(calls))
    return sum((c.cost for c in calls), Decimal(0))


def test_backup_and_restore_round_trip_into_a_fresh_database(
    settings: Settings, database_url: str, pg_schema: str, fresh_database: str, tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings, retention_interval_seconds=0)
    spend = _fill(settings)
    source = totals(database_url, pg_schema)
    assert source["llm_calls"][0] == 15

    dump = tmp_path / "llmmeter.dump"
    result = CliRunner().invoke(
        cli,
        ["db", "backup", str(dump)],
        env={"LLMMETER_DATABASE_URL": database_url, "LLMMETER_DATABASE_SCHEMA": pg_schema},
    )
    assert result.exit_code == 0, result.output
    assert f"Backed up schema {pg_schema} to {dump}" in result.output
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert not dump.with_name(dump.name + ".partial").exists()

    result = CliRunner().invoke(cli, ["db", "restore", str(dump), "--database-url", fresh_database])
    assert result.exit_code == 0, result.output
    assert totals(fresh_database, pg_schema) == source  # every call and every rollup, exactly

    with psycopg.connect(fresh_database, options=f"-c search_path={pg_schema}") as conn:
        partitions = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'llm_calls'::regclass").fetchone()
    assert partitions is not None and partitions[0] >= 3  # the ledger is still partitioned by day

    # a collector on the restored database reports the same spend and keeps ingesting
    restored = dataclasses.replace(settings, database_url=fresh_database)
    with BackgroundCollector(restored) as running:
        summary = httpx.get(running.url + "/api/v1/summary", params={"period": "all"}).json()
        assert Decimal(summary["spend"]["all"]) == spend
        export(running.url, make_spans([Call(datetime.now(timezone.utc), 10, 10)]))
    assert totals(fresh_database, pg_schema)["llm_calls"][0] == 16


def test_restore_is_all_or_nothing_and_clean_replaces(
    settings: Settings, database_url: str, pg_schema: str, fresh_database: str, tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings, retention_interval_seconds=0)
    _fill(settings)
    dump = tmp_path / "a.dump"
    env = {"LLMMETER_DATABASE_URL": database_url, "LLMMETER_DATABASE_SCHEMA": pg_schema}
    assert CliRunner().invoke(cli, ["db", "backup", str(dump)], env=env).exit_code == 0
    assert CliRunner().invoke(cli, ["db", "restore", str(dump), "--database-url", fresh_database]).exit_code == 0
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {pg_schema}.llm_rollup_hour")

    # restoring over existing objects fails as a whole and changes nothing
    again = CliRunner().invoke(cli, ["db", "restore", str(dump), "--database-url", fresh_database])
    assert again.exit_code == 1
    assert "pg_restore failed" in again.output and "already exists" in again.output
    assert totals(fresh_database, pg_schema)["llm_rollup_hour"][0] == 0

    # --clean drops llmmeter's objects first and restores the backup exactly
    clean = CliRunner().invoke(cli, ["db", "restore", "--clean", str(dump), "--database-url", fresh_database])
    assert clean.exit_code == 0, clean.output
    assert totals(fresh_database, pg_schema) == totals(database_url, pg_schema)


def test_backup_errors_are_clear(database_url: str, tmp_path: Path) -> None:
    missing = CliRunner().invoke(cli, ["db", "restore", str(tmp_path / "nope.dump"), "--database-url", database_url])
    assert missing.exit_code == 1
    assert "no such backup file" in missing.output

    with pytest.raises(BackupError, match=r"older than the PostgreSQL 99 server: install postgresql-client-99"):
        find_tool("pg_dump", 99)

    no_tool = CliRunner().invoke(
        cli, ["db", "backup", str(tmp_path / "x.dump"), "--database-url", database_url, "--pg-bin-dir", str(tmp_path)]
    )
    assert no_tool.exit_code == 1
    assert f"pg_dump not found in {tmp_path}" in no_tool.output

    host = conninfo_to_dict(database_url).get("host", "127.0.0.1")
    unreachable = CliRunner().invoke(
        cli, ["db", "backup", str(tmp_path / "x.dump"), "--database-url", f"postgresql://postgres@{host}:1/x"]
    )
    assert unreachable.exit_code == 1
    assert "cannot connect to Postgres" in unreachable.output
    assert not (tmp_path / "x.dump").exists()
