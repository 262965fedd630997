"""Retention of the raw call ledger: partitions of ``llm_calls`` older than N days are dropped whole.

Partitions are daily, except month-wide ones a backfill of past days gets (``storage.plan_partitions``); a
partition goes when its whole range is older than the cutoff.

Dropping a partition is instant and leaves no bloat, unlike ``DELETE``. Rollups (minute, hour, user-day) are
never touched, so totals, dashboards and budgets over any period stay right after the raw rows are gone.
Partitions for the coming days are created ahead so the first write of a day never waits on DDL.

A partition is expired when its whole day ends at or before the cutoff, the start of the UTC day N days ago:
a row younger than N days is always kept. Each expired partition is detached (``DETACH PARTITION
CONCURRENTLY``: ingest is not blocked), archived when an archive target is configured, then dropped. A run
interrupted between detach and drop leaves a detached table that the next run archives and drops.
Several collectors on one ledger: one run at a time (a Postgres advisory lock per schema); the others skip.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import psycopg
from psycopg import sql

from llmmeter_collector.config import Settings
from llmmeter_collector.ledger import audit, storage
from llmmeter_collector.ledger.archive import ArchivedFile, ArchiveTarget

logger = logging.getLogger("llmmeter.collector")

_NAME_RE = re.compile(r"^llm_calls_p(\d{8})(?:_(\d{8}))?$")  # a day, or a range of days (ledger/storage.py: backfill)
_BOUND_RE = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")
# One lock per schema: llmmeter schemas sharing a server run their retention independently.
LOCK_KEY_SQL = "hashtext('llmmeter.retention ' || current_schema())"
_LOCK_SQL = f"SELECT pg_try_advisory_lock({LOCK_KEY_SQL})"
_UNLOCK_SQL = f"SELECT pg_advisory_unlock({LOCK_KEY_SQL})"


class NoLedger(RuntimeError):
    """The database (schema) has no llmmeter ledger: wrong URL or schema, or no collector has run on it yet."""


@dataclass(frozen=True)
class Partition:
    """One partition of the ledger (a day, or a backfill's range of days): rows with ``start <= ts < end``."""

    name: str
    start: datetime
    end: datetime
    rows: int
    detached: bool = False  # left detached by an interrupted run: archived (if configured) and dropped next


@dataclass
class RetentionPlan:
    """What a run would do: which partitions go, which stay, which days get a partition ahead."""

    cutoff: datetime | None  # None: retention off (LLMMETER_RETENTION_DAYS=0)
    expired: list[Partition]
    kept: list[Partition]
    create: list[date]


@dataclass
class RetentionReport:
    """What a run did."""

    plan: RetentionPlan
    dropped: list[Partition] = field(default_factory=list)
    archived: list[ArchivedFile] = field(default_factory=list)
    created: list[date] = field(default_factory=list)
    skipped: str = ""  # why nothing was done, e.g. another collector is running retention


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def cutoff_for(now: datetime, retention_days: int) -> datetime | None:
    """Start of the UTC day ``retention_days`` ago; partitions ending at or before it are expired."""
    if retention_days <= 0:
        return None
    day = (now.astimezone(timezone.utc) - timedelta(days=retention_days)).date()
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def _timestamp(text: str) -> datetime:
    text = text.strip()
    if re.search(r"[+-]\d\d$", text):  # Postgres prints "+00"; older Pythons want "+00:00"
        text += ":00"
    return datetime.fromisoformat(text)


def _count(conn: psycopg.Connection[Any], table: str, exact: bool = True) -> int:
    if exact:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    else:
        row = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
    return int(row[0]) if row else 0


def list_partitions(conn: psycopg.Connection[Any], count_rows: bool = True) -> list[Partition]:
    """Attached daily partitions of ``llm_calls`` (and ones left detached by an interrupted run), oldest first.

    ``count_rows=False`` reads Postgres' estimate instead of counting (-1 when never analyzed).
    """
    row = conn.execute("SELECT to_regclass('llm_calls'), current_schemas(false)").fetchone()
    if row is None or row[0] is None:
        schemas = ", ".join(row[1]) if row else "?"
        raise NoLedger(f"no llm_calls table in schema {schemas}: wrong database or schema, or no collector ran yet")
    pending = "i.inhdetachpending" if conn.info.server_version >= 140000 else "false"
    attached = conn.execute(
        f"SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), {pending} FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'llm_calls'::regclass"
    ).fetchall()
    found: list[Partition] = []
    for name, bound, detach_pending in attached:
        match = _BOUND_RE.search(bound or "")
        if not match:  # DEFAULT or MINVALUE/MAXVALUE partitions are never dropped by retention
            continue
        start, end = _timestamp(match.group(1)), _timestamp(match.group(2))
        rows = _count(conn, name, exact=count_rows)
        found.append(Partition(name, start, end, rows, detached=bool(detach_pending)))
    leftovers = conn.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition"
        " AND relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'llm_calls'::regclass)"
        " AND relname ~ '^llm_calls_p[0-9]{8}(_[0-9]{8})?$'"
    ).fetchall()
    for (name,) in leftovers:
        match = _NAME_RE.match(name)
        assert match is not None
        day = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=timezone.utc)
        end = day + timedelta(days=1)
        if match.group(2):  # a range of days (a backfill's partition)
            end = datetime.strptime(match.group(2), "%Y%m%d").replace(tzinfo=timezone.utc)
        rows = _count(conn, name, exact=count_rows)
        found.append(Partition(name, day, end, rows, detached=True))
    return sorted(found, key=lambda p: (p.start, p.name))


def plan(
    conn: psycopg.Connection[Any], retention_days: int, days_ahead: int, now: datetime | None = None
) -> RetentionPlan:
    """Decide what a run does, without changing anything (``llmmeter db retention --dry-run``)."""
    now = now or utcnow()
    cutoff = cutoff_for(now, retention_days)
    # Exact row counts only for what goes: counting every kept partition would scan the whole ledger daily.
    partitions = list_partitions(conn, count_rows=False)
    expired = [
        dataclasses.replace(p, rows=_count(conn, p.name)) for p in partitions if cutoff is not None and p.end <= cutoff
    ]
    kept = [p for p in partitions if cutoff is None or p.end > cutoff]
    existing = {p.name for p in partitions if not p.detached}
    today = now.astimezone(timezone.utc).date()
    ahead = [today + timedelta(days=n) for n in range(days_ahead + 1)]
    create = [d for d in ahead if f"llm_calls_p{d:%Y%m%d}" not in existing]
    return RetentionPlan(cutoff, expired, kept, create)


def _drop_one(conn: psycopg.Connection[Any], part: Partition, archive: ArchiveTarget | None) -> ArchivedFile | None:
    name = sql.Identifier(part.name)
    if part.detached:
        pending = conn.execute(
            "SELECT 1 FROM pg_inherits WHERE inhrelid = %s::regclass AND inhparent = 'llm_calls'::regclass",
            (part.name,),
        ).fetchone()
        if pending:  # DETACH ... CONCURRENTLY was interrupted: finish it
            conn.execute(sql.SQL("ALTER TABLE llm_calls DETACH PARTITION {} FINALIZE").format(name))
    elif conn.info.server_version >= 140000:
        # CONCURRENTLY: waits for running transactions instead of blocking new inserts into llm_calls.
        conn.execute(sql.SQL("ALTER TABLE llm_calls DETACH PARTITION {} CONCURRENTLY").format(name))
    else:
        conn.execute(sql.SQL("ALTER TABLE llm_calls DETACH PARTITION {}").format(name))
    archived = None
    if archive is not None:
        # Detached, the table takes no more rows: the archive is exactly what is dropped.
        archived = archive.archive(conn, part.name)
        logger.info("retention: archived %s (%d rows) to %s", part.name, archived.rows, archived.location)
    conn.execute(sql.SQL("DROP TABLE {}").format(name))
    return archived


def run(
    dsn: str,
    schema: str | None,
    *,
    retention_days: int,
    days_ahead: int,
    archive: ArchiveTarget | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    audit_retention_days: int = 0,
    actor: str = "collector",
) -> RetentionReport:
    """Plan and (unless ``dry_run``) apply retention: create partitions ahead, archive and drop expired ones, and
    delete audit log entries older than ``audit_retention_days`` (0: none). The run is recorded in the audit log."""
    with storage.connect(dsn, schema, autocommit=True) as conn:
        if dry_run:
            return RetentionReport(plan(conn, retention_days, days_ahead, now))
        row = conn.execute(_LOCK_SQL).fetchone()
        if not (row and row[0]):
            report = RetentionReport(RetentionPlan(cutoff_for(now or utcnow(), retention_days), [], [], []))
            report.skipped = "another process is running retention on this ledger"
            return report
        try:
            the_plan = plan(conn, retention_days, days_ahead, now)  # under the lock: no other run changes it
            report = RetentionReport(the_plan)
            if the_plan.create:
                ledger = storage.Ledger(dsn, schema)
                try:
                    ledger.ensure_partitions(the_plan.create)
                finally:
                    ledger.close()
                report.created = list(the_plan.create)
            for part in the_plan.expired:
                archived = _drop_one(conn, part, archive)
                if archived is not None:
                    report.archived.append(archived)
                report.dropped.append(part)
                logger.info("retention: dropped %s (%d rows, before %s)", part.name, part.rows, the_plan.cutoff)
            if the_plan.cutoff is not None:  # which span holds a call, and the duplicates: as long as raw calls
                for table in ("llm_call_identity", "llm_call_duplicates"):
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE ts < %s").format(sql.Identifier(table)), (the_plan.cutoff,)
                    )
            expired_entries = 0
            if audit_retention_days:
                expired_entries = audit.expire(conn, (now or utcnow()) - timedelta(days=audit_retention_days))
            audit.record(
                conn,
                actor=actor,
                action="retention",
                status=0,
                target=f"dropped {len(report.dropped)} partitions before {the_plan.cutoff or 'never'}, archived"
                f" {len(report.archived)}, created {len(report.created)}; {expired_entries} audit entries expired",
            )
        finally:
            conn.execute(_UNLOCK_SQL)
    return report


class RetentionScheduler:
    """Runs retention inside the collector: once at start, then every ``retention_interval_seconds``."""

    def __init__(self, dsn: str, schema: str | None, settings: Settings, now: Callable[[], datetime] = utcnow) -> None:
        self.archive = ArchiveTarget.from_settings(settings)  # a bad archive setting fails the start
        self._dsn = dsn
        self._schema = schema
        self._settings = settings
        self._now = now
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_report: RetentionReport | None = None
        self.last_error: BaseException | None = None

    def run_once(self) -> RetentionReport:
        report = run(
            self._dsn,
            self._schema,
            retention_days=self._settings.retention_days,
            days_ahead=self._settings.partition_days_ahead,
            archive=self.archive,
            now=self._now(),
            audit_retention_days=self._settings.audit_retention_days,
        )
        if report.skipped:
            logger.info("retention skipped: %s", report.skipped)
        return report

    def _loop(self) -> None:
        interval = float(self._settings.retention_interval_seconds)
        while not self._stop.is_set():
            wait = interval
            try:
                report, error = self.run_once(), None
            except Exception as exc:  # log and retry: a failed run must not stop the collector
                logger.exception("retention run failed; retrying in %.0f s", min(interval, 3600.0))
                report, error, wait = None, exc, min(interval, 3600.0)
            with self._done:
                self.runs += 1
                self.last_report, self.last_error = report, error
                self._done.notify_all()
            self._stop.wait(wait)

    def start(self) -> None:
        """Start the schedule; a zero interval means retention runs only from the CLI."""
        if self._settings.retention_interval_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="llmmeter-retention", daemon=True)
        self._thread.start()

    def wait_for_run(self, runs: int = 1, timeout: float = 30.0) -> bool:
        """Block until at least ``runs`` runs have finished (for tests and the CLI); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.runs >= runs, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
