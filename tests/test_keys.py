"""The key store: keys are stored hashed, verified, limited to projects, and revocable."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from llmmeter_collector.access.keys import KeyStore, KeyStoreError, token_from_headers
from llmmeter_collector.ledger import storage


@pytest.fixture
def store(database_url: str, pg_schema: str):  # type: ignore[no-untyped-def]
    storage.migrate(database_url, pg_schema)
    pool = storage.create_pool(database_url, pg_schema)
    yield KeyStore(pool, cache_seconds=0)
    pool.close()


def test_a_key_is_stored_only_as_its_hash_and_verifies(store: KeyStore, database_url: str, pg_schema: str) -> None:
    assert not store.required()
    key = store.create("shop-prod", "ingest", ["shop"])
    assert key.startswith("llmm_") and len(key) > 40
    with storage.connect(database_url, pg_schema) as conn:
        rows = conn.execute("SELECT key_hash, key_prefix, role, projects FROM llmmeter_api_keys").fetchall()
    assert rows == [(hashlib.sha256(key.encode()).hexdigest(), key[:12], "ingest", ["shop"])]
    with storage.connect(database_url, pg_schema) as conn:
        dumped = conn.execute("SELECT row_to_json(k)::text FROM llmmeter_api_keys k").fetchone()
    assert dumped is not None and key not in dumped[0]
    principal = store.verify(key)
    assert principal is not None
    assert (principal.name, principal.role, principal.projects, principal.forced_project) == (
        "shop-prod",
        "ingest",
        ("shop",),
        "shop",
    )
    assert principal.allows("ingest") and not principal.allows("viewer")
    assert store.required()
    assert store.verify(key + "x") is None
    assert store.verify("not-a-key") is None
    assert store.verify(None) is None


def test_revoked_keys_stop_working_and_roles_are_checked(store: KeyStore) -> None:
    admin = store.create("ops", "admin")
    p = store.verify(admin)
    assert p is not None and p.allows("ingest") and p.allows("viewer") and p.allows("admin")
    assert p.forced_project is None and p.may_see("anything")
    with pytest.raises(KeyStoreError, match="role: must be one of ingest, viewer, admin"):
        store.create("x", "root")
    with pytest.raises(KeyStoreError, match="already exists"):
        store.create("ops", "viewer")
    [info] = store.list_keys()
    assert info.name == "ops" and info.prefix == admin[:12] and info.revoked_at is None
    assert store.revoke(info.key_id)
    assert not store.revoke(info.key_id)
    assert store.verify(admin) is None
    assert store.list_keys() == [] and len(store.list_keys(include_revoked=True)) == 1
    assert not store.required()


def test_the_key_is_read_from_either_header() -> None:
    assert token_from_headers({"Authorization": "Bearer llmm_abc"}) == "llmm_abc"
    assert token_from_headers([("x-llmmeter-key", "llmm_def")]) == "llmm_def"
    assert token_from_headers({"Authorization": "Basic Zm9v"}) is None
    assert token_from_headers({}) is None


def test_the_migration_refuses_an_unknown_role(store: KeyStore, database_url: str, pg_schema: str) -> None:
    with storage.connect(database_url, pg_schema) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO llmmeter_api_keys (name, key_hash, key_prefix, role) VALUES ('a', 'h', 'p', 'root')")
