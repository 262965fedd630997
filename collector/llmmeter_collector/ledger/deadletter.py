"""The dead-letter table: calls Postgres refused for their data, kept to inspect and to replay after a fix.

The writer puts a call here when Postgres refuses it for what it holds (SQLSTATE class 22, 23 or 54, e.g. a
value too big for an index row) instead of letting it block its batch. ``replay`` writes each kept call again
through the ledger (idempotent on the call's key): a call that now commits leaves the table, one still refused
stays with the new error. A user fixes a call by editing its JSON (``UPDATE llm_calls_dead_letter SET call =
...``) or by changing what refused it, then replays: ``llmmeter db dead-letter replay``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from llmmeter_collector.ledger import storage
from llmmeter_collector.ledger.spool import call_from_json


@dataclass(frozen=True)
class DeadLetter:
    """One kept call: when it failed, why, and its JSON."""

    id: int
    ts: datetime
    project: str
    error: str
    sqlstate: str
    failed_at: datetime
    attempts: int
    call: str

    def summary(self) -> dict[str, Any]:
        """What ``llmmeter db dead-letter list`` shows of it (the JSON's ids, not the whole call)."""
        try:
            data = json.loads(self.call)
        except ValueError:
            data = {}
        return {
            "id": self.id, "ts": self.ts.isoformat(), "project": self.project[:80],
            "trace_id": str(data.get("trace_id", ""))[:64], "span_id": str(data.get("span_id", ""))[:32],
            "error": self.error, "sqlstate": self.sqlstate, "failed_at": self.failed_at.isoformat(),
            "attempts": self.attempts,
        }  # fmt: skip


@dataclass
class ReplayReport:
    """What a replay did: calls now in the ledger, and the ones Postgres still refuses."""

    replayed: int = 0
    still_refused: int = 0
    unreadable: int = 0  # JSON edited into something that is not a call: left in place


def list_dead_letters(conn: psycopg.Connection[Any], limit: int = 100) -> list[DeadLetter]:
    """The most recently failed calls first."""
    rows = conn.execute(
        "SELECT id, ts, project, error, sqlstate, failed_at, attempts, call FROM llm_calls_dead_letter"
        " ORDER BY failed_at DESC, id DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [DeadLetter(*row) for row in rows]


def replay(dsn: str, schema: str | None) -> ReplayReport:
    """Write every kept call again; remove the ones that are now in the ledger."""
    report = ReplayReport()
    ledger = storage.Ledger(dsn, schema)
    try:
        with storage.connect(dsn, schema, autocommit=True) as conn:
            for row_id, text in conn.execute("SELECT id, call FROM llm_calls_dead_letter ORDER BY id").fetchall():
                try:
                    call = call_from_json(text)
                except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                    report.unreadable += 1
                    conn.execute(
                        "UPDATE llm_calls_dead_letter SET error = %s, failed_at = now() WHERE id = %s",
                        (f"not a call: {exc!r}"[:500], row_id),
                    )
                    continue
                if ledger.write_salvaging([call]).rejected:  # refused again: its row has the new error
                    report.still_refused += 1
                    continue
                # in the ledger now (or already was): the kept copy goes, unless it was edited meanwhile
                conn.execute("DELETE FROM llm_calls_dead_letter WHERE id = %s AND call = %s", (row_id, text))
                report.replayed += 1
    finally:
        ledger.close()
    return report
