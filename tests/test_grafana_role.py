"""Migration 0040: the read-only ``llmmeter_grafana`` role Grafana's Postgres datasource logs in as."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from importlib import resources

import psycopg
import pytest

from llmmeter_collector.ledger.storage import migrate


@pytest.fixture
def two_schemas(database_url: str) -> Iterator[list[str]]:
    names = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    yield names
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def grafana(database_url: str, schema: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url, user="llmmeter_grafana", options=f"-c search_path={schema}", autocommit=True)


def test_role_reads_the_ledger_of_every_schema_and_writes_nothing(database_url: str, two_schemas: list[str]) -> None:
    for schema in two_schemas:  # the second migration finds the role already there and only grants
        assert 40 in migrate(database_url, schema)
    for schema in two_schemas:
        with grafana(database_url, schema) as conn:
            for table in ("llm_calls", "llm_rollup_minute", "llm_rollup_hour", "llm_rollup_user_day", "llm_budgets"):
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM llm_rollup_hour")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM llmmeter_api_keys")  # key hashes are not Grafana's business
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE mine (x int)")
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'llmmeter_grafana'"
        ).fetchone()
    assert row == (True, False, False, False)


def test_migration_is_idempotent(database_url: str, two_schemas: list[str]) -> None:
    schema = two_schemas[0]
    migrate(database_url, schema)
    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
        sql = resources.files("llmmeter_collector.ledger.migrations") / "0040_grafana_role.sql"
        conn.execute(sql.read_text().encode())  # run again on an up-to-date schema: no error
    with grafana(database_url, schema) as conn:
        assert conn.execute("SELECT count(*) FROM llm_calls").fetchone() == (0,)
