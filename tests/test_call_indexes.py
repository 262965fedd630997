"""The indexes of the call ledger: the set the migrations leave (each one costs every ingested call), and the
benchmark loader building them on every day partition, as a partition the collector creates gets them."""

from __future__ import annotations

from typing import Any

import psycopg

from llmmeter_collector.devtools import datagen
from llmmeter_collector.ledger import storage
from llmmeter_collector.pricing import PriceCatalog

# Index name -> how its definition ends. What each is for: migrations/0022_fewer_call_indexes.sql.
CALL_INDEXES = {
    "llm_calls_ts_trace_id_span_id_key": "btree (ts, trace_id, span_id)",  # the UNIQUE constraint
    "llm_calls_cost_page_idx": "btree (cost_usd DESC NULLS LAST, ts DESC, span_id DESC, trace_id DESC)",
    "llm_calls_project_page_idx": "btree (project, ts DESC, span_id DESC, trace_id DESC)",
    "llm_calls_user_ts_idx": "btree (user_id, ts)",
    "llm_calls_tags_idx": "gin (tags jsonb_path_ops) WHERE (tags <> '{}'::jsonb)",
}


def _indexes(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    """Name -> definition of the indexes of ``table``; every one of them valid."""
    rows = conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid), x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass",
        (table,),
    ).fetchall()
    assert all(valid for _, _, valid in rows), rows
    return {name: definition for name, definition, _ in rows}


def test_the_ledger_carries_only_the_indexes_its_queries_need(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    with storage.connect(database_url, pg_schema) as conn:
        found = _indexes(conn, "llm_calls")
    assert set(found) == set(CALL_INDEXES)
    for name, ending in CALL_INDEXES.items():
        assert found[name].endswith(ending), found[name]


def test_the_bulk_loader_builds_every_index_on_every_partition(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    with storage.connect(database_url, pg_schema) as conn:
        datagen.bulk_generate(conn, PriceCatalog(), calls=3000, days=2)
        partitions = conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'llm_calls'::regclass"
        ).fetchall()
        assert len(partitions) == 3
        assert set(_indexes(conn, "llm_calls")) == set(CALL_INDEXES)
        for (partition,) in partitions:
            assert len(_indexes(conn, partition)) == len(CALL_INDEXES), partition
