"""The audit log: who read call-level data or changed something, when, from where, and with what result.

Recorded by the REST API's middleware for every request to an audited route (``AUDITED_READS`` and every change:
POST, PUT, PATCH, DELETE), whatever its answer (a refused attempt is recorded too), before the answer leaves, and by
the collector's own changes (retention runs, reprices of unpriced calls). The table is append-only (a trigger
refuses UPDATE, DELETE and TRUNCATE); only the retention run deletes rows older than
``LLMMETER_AUDIT_RETENTION_DAYS``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

logger = logging.getLogger("llmmeter.collector")

# Reads of call-level data (one row per call, user ids, trace ids) and of the audit log itself.
AUDITED_READS = frozenset({"/api/v1/calls", "/api/v1/export", "/api/v1/export/focus", "/api/v1/audit"})
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_TARGET_CHARS = 2000
COLUMNS = ("id", "at", "actor", "role", "projects", "action", "target", "client", "status")


def audited(method: str, path: str) -> bool:
    return path.startswith("/api/") and (method in CHANGES or (method == "GET" and path in AUDITED_READS))


def record(
    conn: psycopg.Connection[Any],
    *,
    actor: str,
    action: str,
    status: int,
    role: str = "",
    projects: Sequence[str] | None = None,
    target: str = "",
    client: str = "",
) -> None:
    """Append one entry (committed with the connection's transaction)."""
    conn.execute(
        "INSERT INTO llm_audit_log (actor, role, projects, action, target, client, status)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (actor, role, list(projects) if projects else None, action, target[:MAX_TARGET_CHARS], client[:200], status),
    )


def record_with(pool: ConnectionPool, **entry: Any) -> None:
    """Append one entry on a pooled connection; a failure is logged (the request it records has been answered)."""
    try:
        with pool.connection() as conn:
            record(conn, **entry)
    except psycopg.Error as exc:
        logger.error("audit log: could not record %s by %s: %s", entry.get("action"), entry.get("actor"), exc)


def entries(
    pool: ConnectionPool,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The newest entries first."""
    parts, params = ["TRUE"], dict[str, Any]()
    for column, op, value in (("at", ">=", since), ("at", "<", until), ("actor", "=", actor)):
        if value is not None:
            parts.append(f"{column} {op} %({column}{op == '<'})s")
            params[f"{column}{op == '<'}"] = value
    if action is not None:
        parts.append("action LIKE %(action)s")
        params["action"] = f"%{action}%"
    with pool.connection() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM llm_audit_log WHERE {' AND '.join(parts)} ORDER BY id DESC LIMIT %(n)s",
            {**params, "n": limit},
        ).fetchall()
    return [{**dict(zip(COLUMNS, r, strict=True)), "at": r[1].isoformat()} for r in rows]


def expire(conn: psycopg.Connection[Any], before: datetime) -> int:
    """Delete the entries older than ``before`` (the only deletion the table allows); how many."""
    with conn.transaction():
        conn.execute("SET LOCAL llmmeter.audit_retention = 'on'")
        cursor = conn.execute("DELETE FROM llm_audit_log WHERE at < %s", (before,))
    return cursor.rowcount
