"""The audit log: every read of call-level data and every change is recorded once (who, what, from where, the
answer), refused attempts included; only an admin key of every project reads it; nobody can alter it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.ledger import retention, storage
from llmmeter_collector.service import BackgroundCollector


def test_each_audited_action_leaves_exactly_one_record(collector: BackgroundCollector) -> None:
    url = collector.url
    store = collector.collector.keys
    root = store.create("root", "admin", ())
    viewer = store.create("reader", "viewer", ())
    limited = store.create("shop-admin", "admin", ("shop",))
    as_root = {"Authorization": f"Bearer {root}"}
    steps = [
        ("GET", "/api/v1/calls", viewer, None, 200),
        ("GET", "/api/v1/export", viewer, None, 200),
        ("POST", "/api/v1/keys", root, {"name": "ci", "role": "ingest", "projects": ["shop"]}, 201),
        ("POST", "/api/v1/budgets", root, {"name": "monthly", "limit_usd": "100"}, 201),
        ("POST", "/api/v1/prices/reload", root, None, 200),
        ("POST", "/api/v1/keys", viewer, {"name": "sneaky", "role": "admin"}, 403),  # refused: recorded too
        ("GET", "/api/v1/calls", None, None, 401),
    ]
    for method, path, key, body, expected in steps:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        assert httpx.request(method, url + path, json=body, headers=headers).status_code == expected
    new_key = next(k.key_id for k in store.list_keys() if k.name == "ci")
    assert httpx.delete(f"{url}/api/v1/keys/{new_key}", headers=as_root).status_code == 200
    for path in ("/api/v1/summary", "/api/v1/prices", "/api/v1/budgets"):  # aggregate reads: not audited
        assert httpx.get(url + path, headers=as_root).status_code == 200
    entries = httpx.get(url + "/api/v1/audit", headers=as_root).json()["entries"]
    assert [(e["action"], e["actor"], e["status"]) for e in reversed(entries)] == [
        ("retention", "collector", 0),  # the collector's own retention run at start
        ("GET /api/v1/calls", "key 2 (reader)", 200),
        ("GET /api/v1/export", "key 2 (reader)", 200),
        ("POST /api/v1/keys", "key 1 (root)", 201),
        ("POST /api/v1/budgets", "key 1 (root)", 201),
        ("POST /api/v1/prices/reload", "key 1 (root)", 200),
        ("POST /api/v1/keys", "key 2 (reader)", 403),
        ("GET /api/v1/calls", "no valid key", 401),
        ("DELETE /api/v1/keys/{id}", "key 1 (root)", 200),
    ]
    assert entries[0]["target"] == f"/api/v1/keys/{new_key}" and entries[0]["client"] == "127.0.0.1"
    assert entries[0]["role"] == "admin" and entries[0]["projects"] is None
    again = httpx.get(url + "/api/v1/audit", headers=as_root).json()["entries"]
    assert [e["action"] for e in again[:2]] == ["GET /api/v1/audit", "DELETE /api/v1/keys/{id}"]  # reading is recorded
    # a viewer cannot read it, nor an admin limited to projects; both attempts are recorded
    assert httpx.get(url + "/api/v1/audit", headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    assert httpx.get(url + "/api/v1/audit", headers={"Authorization": f"Bearer {limited}"}).status_code == 403
    # filters, and the CLI's exports
    only_keys = httpx.get(url + "/api/v1/audit", params={"action": "/api/v1/keys"}, headers=as_root).json()
    assert len(only_keys["entries"]) == 3
    lines = CliRunner().invoke(cli, ["audit", "--format", "jsonl", "--actor", "key 2 (reader)", "--url", url,
                                     "--api-key", root]).output.splitlines()  # fmt: skip
    assert [json.loads(line)["status"] for line in lines] == [403, 403, 200, 200]  # audit read, key, export, calls
    csv_out = CliRunner().invoke(cli, ["audit", "--format", "csv", "--url", url, "--api-key", root]).output
    assert csv_out.startswith("id,at,actor,role,projects,action,target,client,status\n")
    denied = CliRunner().invoke(cli, ["audit", "--url", url, "--api-key", viewer])
    assert denied.exit_code == 1 and "admin key is required" in denied.output


def test_nobody_can_alter_the_log_and_retention_expires_old_entries(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    with storage.connect(database_url, pg_schema) as conn:
        conn.execute(
            "INSERT INTO llm_audit_log (at, actor, action, status) VALUES"
            " (now() - interval '400 days', 'key 1 (root)', 'POST /api/v1/keys', 201),"
            " (now(), 'key 1 (root)', 'GET /api/v1/calls', 200)"
        )
        conn.commit()
        for statement in ("UPDATE llm_audit_log SET actor = 'someone else'", "DELETE FROM llm_audit_log",
                          "TRUNCATE llm_audit_log"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
            conn.rollback()
    report = retention.run(database_url, pg_schema, retention_days=90, days_ahead=1, audit_retention_days=365,
                           now=datetime.now(timezone.utc))  # fmt: skip
    assert not report.skipped
    with storage.connect(database_url, pg_schema) as conn:
        rows = conn.execute("SELECT action, actor, target FROM llm_audit_log ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["GET /api/v1/calls", "retention"]  # the old one expired; the run is recorded
    assert rows[1][1] == "collector" and "1 audit entries expired" in rows[1][2]
