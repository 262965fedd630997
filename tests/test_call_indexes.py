"""The indexes of the call ledger: the benchmark loader building them on every day partition, as a partition the
collector creates gets them."""

from __future__ import annotations

from typing import Any

import psycopg

from llmmeter_collector import datagen, storage
from llmmeter_collector.pricing import PriceCatalog


def _indexes(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    """Name -> definition of the indexes of ``table``; every one of them valid."""
    rows = conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid), x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass",
        (table,),
    ).fetchall()
    assert all(valid for _, _, valid in rows), rows
    return {name: definition for name, definition, _ in rows}


def test_the_bulk_loader_builds_every_index_on_every_partition(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    with storage.connect(database_url, pg_schema) as conn:
        migrated = _indexes(conn, "llm_calls")
        datagen.bulk_generate(conn, PriceCatalog(), calls=3000, days=2)
        partitions = conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'llm_calls'::regclass"
        ).fetchall()
        assert len(partitions) == 3
        assert set(_indexes(conn, "llm_calls")) == set(migrated)
        for (partition,) in partitions:
            assert len(_indexes(conn, partition)) == len(migrated), partition
