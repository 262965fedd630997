"""Retroactive repricing: the stored calls' costs recomputed from their stored usage with the current prices.

A run walks the matching calls in ``(ts, trace_id, span_id)`` order, in batches. Each batch is one transaction:
it updates the calls whose cost changed, moves the minute, hour and user-day rollups by exactly the difference,
and records the run's progress (cursor, counts, dollars per day and model) — so at every commit the rollups
agree with the calls, and a run that was cut off (a restart, a crash) resumes from its cursor with nothing
counted twice. A call is updated only if its cost is still the one the batch read: two runs over the same calls
never move a rollup twice. Running the same reprice again changes nothing: it computes the same costs.

Batches are short and lock only the calls they change and the rollup rows they move (in key order, as the
writers do), so ingest goes on meanwhile. A dry run walks the same way and records what it would change.
Calls stored unpriced are priced by a run of their own when a price for their model appears (``price_new_models``,
after a catalog upgrade or an overrides reload).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from llmmeter_collector.ledger import audit
from llmmeter_collector.ledger.storage import (
    MAX_ROLLBACK_RETRIES,
    ROLLED_BACK,
    SIGNATURE_BITS,
    SIGNATURE_KEYS,
    connect,
)
from llmmeter_collector.llmcall import COST_CLASSES, Cost, LlmCall, Usage
from llmmeter_collector.pricing import PriceCatalog

logger = logging.getLogger("llmmeter.collector")

BATCH_CALLS = 5_000
REASONS = ("manual", "new_price")
_LOCK_CLASS = 0x11AA  # pg_advisory_lock(class, run id): the worker running a run holds it
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ZERO = Decimal(0)
_DIMS = "project, environment, provider, model, feature, operation, status"
_USAGE = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "reasoning_tokens", "input_audio_tokens", "output_audio_tokens",
)  # fmt: skip
_COSTS = ("cost_usd", *(f"cost_{c}_usd" for c in COST_CLASSES))
_READ = (
    "ts", "trace_id", "span_id", "provider", "operation", "request_model", "response_model", "model", "batch",
    "service_tier", "duration_s", *_USAGE, *_COSTS, "price_source",
)  # fmt: skip


@dataclass(frozen=True)
class RepriceSpec:
    """Which calls a run reprices: ``start`` <= ts < ``end`` and the filters ('' = any)."""

    start: datetime
    end: datetime
    provider: str = ""
    model: str = ""
    project: str = ""
    projects: tuple[str, ...] | None = None  # the asking key's projects (None: every project)
    only_unpriced: bool = False
    dry_run: bool = False
    reason: str = "manual"


@dataclass
class _Tally:
    calls: int = 0
    newly_priced: int = 0
    newly_unpriced: int = 0
    before: Decimal = _ZERO
    after: Decimal = _ZERO

    def add(self, old: Decimal | None, new: Decimal | None) -> None:
        self.calls += 1
        self.newly_priced += old is None and new is not None
        self.newly_unpriced += old is not None and new is None
        self.before += old or _ZERO
        self.after += new or _ZERO


@dataclass
class _Batch:
    examined: int = 0
    last: tuple[datetime, str, str] | None = None
    per_day: dict[tuple[Any, str, str], _Tally] = field(default_factory=dict)

    def change(self, ts: datetime, provider: str, model: str, old: Decimal | None, new: Decimal | None) -> None:
        self.per_day.setdefault((ts.date(), provider, model), _Tally()).add(old, new)

    def total(self) -> _Tally:
        out = _Tally()
        for t in self.per_day.values():
            out.calls += t.calls
            out.newly_priced += t.newly_priced
            out.newly_unpriced += t.newly_unpriced
            out.before += t.before
            out.after += t.after
        return out


# The changed calls of a batch: each updated only if its cost is still the one read (another run may have repriced
# it meanwhile), and exactly the updated ones move the rollups, in key order like the writers' upserts.
_PART_SETS = ", ".join(f"cost_{c}_usd = n.c_{c}" for c in COST_CLASSES)


def _delta_upsert(table: str, keys: str, select: str) -> str:
    """Move a rollup's cost and unpriced count by a batch's differences (``select``: keys, then the sums in the
    table's column order, calls and tokens 0)."""
    sums = "calls, unpriced_calls, input_tokens, output_tokens, cost_usd"
    if table != "llm_rollup_user_day":
        sums += ", cache_read_tokens, cache_write_tokens, reasoning_tokens, duration_s"
    return f"""INSERT INTO {table} AS r ({keys}, {sums})
    {select}
    ON CONFLICT ({keys}) DO UPDATE
        SET unpriced_calls = r.unpriced_calls + EXCLUDED.unpriced_calls, cost_usd = r.cost_usd + EXCLUDED.cost_usd
    RETURNING 1"""


_PROMPT_KEYS = "project, feature, prompt_name, prompt_version, template_fingerprint, model"
_EXPERIMENT_KEYS = "project, experiment, variant"
_EXPERIMENT_USER_KEYS = "experiment, variant, project, user_id"
_SIGNATURE_KEYS = SIGNATURE_KEYS


def _daily_delta(
    table: str, keys: str, where: str, *, squares: bool = False, unpriced: bool = True, unit: str = "day"
) -> str:
    """Move a daily rollup's cost (and unpriced count, and sum of squared costs) by the batch's differences; the
    row exists (its calls are there), so the insert never adds one, only locks it in key order."""
    source = keys
    sums = ["calls", "input_tokens", "output_tokens", "duration_s"]
    sums += ["errors"] if table != "llm_rollup_signature_day" else ["errors", "cache_read_tokens", "bits"]
    sums += ["first_seen", "last_seen"] if table == "llm_rollup_prompt_day" else []
    sums += ["duration_sq", "hist"] if squares else []
    fill = {
        "first_seen": "min(ts)",
        "last_seen": "max(ts)",
        "hist": "array_fill(0::bigint, ARRAY[1])",
        "bits": f"array_fill(0::bigint, ARRAY[{SIGNATURE_BITS}])",
    }
    zeros = ", ".join(fill.get(c, "0") for c in sums)
    moved = {"cost_usd": "coalesce(sum(new_cost), 0) - coalesce(sum(old_cost), 0)"}
    if unpriced:
        moved["unpriced_calls"] = "sum((new_cost IS NULL)::int - (old_cost IS NULL)::int)"
    if squares:
        moved["cost_sq"] = "coalesce(sum(new_cost * new_cost), 0) - coalesce(sum(old_cost * old_cost), 0)"
    return f"""INSERT INTO {table} AS r (bucket, {keys}, {", ".join(sums)}, {", ".join(moved)})
    SELECT date_trunc('{unit}', ts), {source}, {zeros}, {", ".join(moved.values())}
    FROM upd WHERE {where} GROUP BY 1, {source} ORDER BY 1, {source}
    ON CONFLICT (bucket, {keys}) DO UPDATE SET {", ".join(f"{c} = r.{c} + EXCLUDED.{c}" for c in moved)}
    RETURNING 1"""


_RETURNED = ", ".join("c." + d.strip() for d in _DIMS.split(","))
# The changed calls of a batch are copied into a temporary table (COPY: far cheaper than query parameters).
_STAGING = "llm_reprice_staging"
_STAGING_SQL = f"""CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (ts timestamptz, trace_id text, span_id text,
    old_cost numeric, old_source text, cost numeric, {", ".join(f"c_{c} numeric" for c in COST_CLASSES)}, source text)
    ON COMMIT DELETE ROWS"""
_UPDATE_SQL = f"""
WITH upd AS (
    UPDATE llm_calls c SET cost_usd = n.cost, {_PART_SETS}, price_source = n.source
    FROM {_STAGING} n
    WHERE c.ts BETWEEN %s AND %s AND c.ts = n.ts AND c.trace_id = n.trace_id AND c.span_id = n.span_id
      AND c.cost_usd IS NOT DISTINCT FROM n.old_cost AND c.price_source = n.old_source
    RETURNING c.ts, {_RETURNED}, c.user_id, c.experiment, c.variant, c.prompt_name, c.prompt_version,
              c.template_fingerprint, c.prompt_simhash, n.old_cost, c.cost_usd AS new_cost
), g AS (
    SELECT date_trunc('minute', ts) AS bucket, {_DIMS},
           sum((new_cost IS NULL)::int - (old_cost IS NULL)::int) AS unpriced,
           coalesce(sum(new_cost), 0) - coalesce(sum(old_cost), 0) AS cost
    FROM upd GROUP BY 1, {_DIMS}
), m AS ({
    _delta_upsert(
        "llm_rollup_minute",
        "bucket, " + _DIMS,
        f"SELECT bucket, {_DIMS}, 0, unpriced, 0, 0, cost, 0, 0, 0, 0 FROM g ORDER BY 1, {_DIMS}",
    )
}
), h AS ({
    _delta_upsert(
        "llm_rollup_hour",
        "bucket, " + _DIMS,
        f"SELECT date_trunc('hour', bucket), {_DIMS}, 0, sum(unpriced), 0, 0, sum(cost), 0, 0, 0, 0 FROM g "
        f"GROUP BY 1, {_DIMS} ORDER BY 1, {_DIMS}",
    )
}
), u AS ({
    _delta_upsert(
        "llm_rollup_user_day",
        "bucket, project, user_id, feature",
        "SELECT date_trunc('day', ts), project, user_id, feature, 0, "
        "sum((new_cost IS NULL)::int - (old_cost IS NULL)::int), 0, 0, "
        "coalesce(sum(new_cost), 0) - coalesce(sum(old_cost), 0) FROM upd GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
}
), pd AS ({_daily_delta("llm_rollup_prompt_day", _PROMPT_KEYS, "prompt_name <> '' OR template_fingerprint <> ''")}
), ed AS ({_daily_delta("llm_rollup_experiment_day", _EXPERIMENT_KEYS, "experiment <> ''", squares=True)}
), sd AS ({
    _daily_delta("llm_rollup_signature_day", _SIGNATURE_KEYS, "prompt_simhash <> ''", unpriced=False, unit="month")
}
), eu AS (
    INSERT INTO llm_rollup_experiment_user AS r ({_EXPERIMENT_USER_KEYS}, calls, unpriced_calls, cost_usd)
    SELECT {_EXPERIMENT_USER_KEYS}, 0, sum((new_cost IS NULL)::int - (old_cost IS NULL)::int),
           coalesce(sum(new_cost), 0) - coalesce(sum(old_cost), 0)
    FROM upd WHERE experiment <> '' AND user_id <> ''
    GROUP BY {_EXPERIMENT_USER_KEYS} ORDER BY {_EXPERIMENT_USER_KEYS}
    ON CONFLICT ({_EXPERIMENT_USER_KEYS}) DO UPDATE
        SET unpriced_calls = r.unpriced_calls + EXCLUDED.unpriced_calls, cost_usd = r.cost_usd + EXCLUDED.cost_usd
    RETURNING 1
)
SELECT ts, provider, model, old_cost, new_cost FROM upd
"""

_PROGRESS_SQL = """
UPDATE llm_reprice_runs SET examined = examined + %(examined)s, changed = changed + %(calls)s,
    newly_priced = newly_priced + %(newly_priced)s, newly_unpriced = newly_unpriced + %(newly_unpriced)s,
    usd_before = usd_before + %(before)s, usd_after = usd_after + %(after)s,
    cursor_ts = %(ts)s, cursor_trace_id = %(trace_id)s, cursor_span_id = %(span_id)s
WHERE id = %(run)s
"""
_CHANGES_SQL = """
INSERT INTO llm_reprice_changes AS r (run_id, day, provider, model, calls, newly_priced, newly_unpriced,
                                      usd_before, usd_after)
SELECT %s, * FROM unnest(%s::date[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],
                         %s::numeric[], %s::numeric[])
ON CONFLICT (run_id, day, provider, model) DO UPDATE SET calls = r.calls + EXCLUDED.calls,
    newly_priced = r.newly_priced + EXCLUDED.newly_priced, newly_unpriced = r.newly_unpriced + EXCLUDED.newly_unpriced,
    usd_before = r.usd_before + EXCLUDED.usd_before, usd_after = r.usd_after + EXCLUDED.usd_after
"""
_RUN_COLUMNS = (
    "id", "created_at", "finished_at", "actor", "reason", "dry_run", "range_from", "range_to", "provider", "model",
    "project", "projects", "only_unpriced", "prices", "status", "error", "total_calls", "examined", "changed",
    "newly_priced", "newly_unpriced", "usd_before", "usd_after",
)  # fmt: skip


def _where(spec: RepriceSpec) -> tuple[str, dict[str, Any]]:
    """The calls a run covers (not-billed calls cost nothing whatever the price: never repriced)."""
    parts = ["ts >= %(start)s", "ts < %(end)s", "price_source <> 'not_billed'"]
    params: dict[str, Any] = {"start": spec.start, "end": spec.end}
    for name in ("provider", "model", "project"):
        if getattr(spec, name):
            parts.append(f"{name} = %({name})s")
            params[name] = getattr(spec, name)
    if spec.projects is not None:
        parts.append("project = ANY(%(projects)s)")
        params["projects"] = list(spec.projects)
    if spec.only_unpriced:
        parts.append("cost_usd IS NULL")
    return " AND ".join(parts), params


def _ns(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


def _call(row: Sequence[Any]) -> LlmCall:
    """The call as pricing sees it, from a ``_READ`` row (the stored usage, time, mode and duration)."""
    start = _ns(row[0])
    return LlmCall(
        trace_id=row[1],
        span_id=row[2],
        start_ns=start,
        end_ns=start + round(row[10] * 1e9),
        provider=row[3],
        operation=row[4],
        request_model=row[5],
        response_model=row[6],
        batch=row[8],
        service_tier=row[9],
        usage=Usage(*row[11 : 11 + len(_USAGE)]),
    )


_COST_AT = 11 + len(_USAGE)


def _stored(row: Sequence[Any]) -> tuple[Any, ...]:
    return (*row[_COST_AT : _COST_AT + len(_COSTS)], row[-1])


def _fresh(cost: Cost | None) -> tuple[Any, ...]:
    if cost is None:
        return (None,) * len(_COSTS) + ("",)
    return (cost.total, *(cost.parts.get(c) for c in COST_CLASSES), cost.price_source)


class RepriceError(ValueError):
    """A reprice request is invalid; the message names the field."""


class Repricer:
    """Runs reprices in worker threads, each on its own connection; resumes runs a stopped collector left."""

    def __init__(
        self,
        dsn: str,
        schema: str | None,
        catalog: PriceCatalog,
        *,
        batch_calls: int = BATCH_CALLS,
        on_batch: Callable[[str, int, Decimal, Decimal], None] | None = None,
    ) -> None:
        self._dsn, self._schema, self._catalog = dsn, schema, catalog
        self._batch = batch_calls
        self._on_batch = on_batch  # (reason, calls changed, dollars before, dollars after), after each commit
        self._stop = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    # ---- starting runs -----------------------------------------------------------------------------------------

    def start(self, spec: RepriceSpec, actor: str) -> int:
        """Record a run and start it in the background; its id (progress: ``get_run``)."""
        run_id = self.create(spec, actor)
        self._spawn(run_id)
        return run_id

    def run(self, spec: RepriceSpec, actor: str) -> int:
        """Record a run and run it to the end in this thread; its id."""
        run_id = self.create(spec, actor)
        self._execute(run_id)
        return run_id

    def create(self, spec: RepriceSpec, actor: str) -> int:
        if spec.end <= spec.start:
            raise RepriceError("to: must be later than from")
        if spec.reason not in REASONS:
            raise RepriceError(f"reason: must be one of {', '.join(REASONS)}")
        # Calls that arrive after the run starts are priced with these prices at ingest: the run ends at its start,
        # so it never chases a busy day's newest calls.
        spec = replace(spec, end=min(spec.end, datetime.now(timezone.utc)))
        if spec.end <= spec.start:
            raise RepriceError("from: is in the future; there is nothing to reprice yet")
        where, params = _where(spec)
        with connect(self._dsn, self._schema) as conn:
            total = conn.execute(f"SELECT count(*) FROM llm_calls WHERE {where}", params).fetchone()
            row = conn.execute(
                """INSERT INTO llm_reprice_runs (actor, reason, dry_run, range_from, range_to, provider, model, project,
                       projects, only_unpriced, prices, total_calls)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (
                    actor, spec.reason, spec.dry_run, spec.start, spec.end, spec.provider, spec.model, spec.project,
                    list(spec.projects) if spec.projects is not None else None, spec.only_unpriced,
                    self._prices_label(), total[0] if total else 0,
                ),
            ).fetchone()  # fmt: skip
            assert row is not None
            if spec.reason == "new_price":  # the collector's own change (an asked-for reprice is audited by the API)
                audit.record(
                    conn, actor=actor, action="reprice", status=0,
                    target=f"run {row[0]}: unpriced calls of {spec.provider}/{spec.model} {spec.start} to {spec.end}",
                )  # fmt: skip
            conn.commit()
        return int(row[0])

    def resume_interrupted(self) -> list[int]:
        """Start again every run left ``running`` that no worker holds (a collector stopped or died during it)."""
        with connect(self._dsn, self._schema) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM llm_reprice_runs WHERE status = 'running' ORDER BY id")]
        for run_id in ids:
            self._spawn(run_id)
        return ids

    def price_new_models(self) -> list[int]:
        """Start a run for each model whose calls were stored unpriced and that has a price now; the run ids."""
        with connect(self._dsn, self._schema) as conn:
            rows = conn.execute(
                "SELECT provider, model, array_agg(DISTINCT bucket ORDER BY bucket) FROM llm_rollup_hour"
                " WHERE unpriced_calls > 0 GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
        started = []
        for provider, model, buckets in rows:
            priced = [
                b for b in buckets
                if self._catalog.rates(provider, model, b) is not None
                or self._catalog.rates(provider, model, b + timedelta(minutes=59, seconds=59)) is not None
            ]  # fmt: skip
            if not priced:
                continue
            spec = RepriceSpec(
                priced[0], priced[-1] + timedelta(hours=1), provider=provider, model=model, only_unpriced=True,
                reason="new_price",
            )  # fmt: skip
            started.append(self.start(spec, "collector"))
        return started

    def _spawn(self, run_id: int) -> None:
        thread = threading.Thread(target=self._execute, args=(run_id,), name=f"llmmeter-reprice-{run_id}", daemon=True)
        with self._lock:
            self._threads[run_id] = thread
        thread.start()

    def wait(self, run_id: int, timeout: float = 60.0) -> bool:
        """Wait for a run this repricer started; True when it is no longer running here."""
        with self._lock:
            thread = self._threads.get(run_id)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress: an unfinished run stays ``running`` and resumes at the next start."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def _prices_label(self) -> str:
        path = self._catalog.overrides_path
        return self._catalog.catalog_version + (f" + {path}" if path else "")

    # ---- one run -----------------------------------------------------------------------------------------------

    def _execute(self, run_id: int) -> None:
        try:
            with connect(self._dsn, self._schema) as conn:
                held = conn.execute("SELECT pg_try_advisory_lock(%s::int, %s::int)", (_LOCK_CLASS, run_id)).fetchone()
                conn.commit()
                if not held or not held[0]:
                    return  # another worker (maybe another collector) runs it
                try:
                    self._walk(conn, run_id)
                finally:
                    conn.rollback()
                    conn.execute("SELECT pg_advisory_unlock(%s::int, %s::int)", (_LOCK_CLASS, run_id))
                    conn.commit()
        except Exception as exc:
            logger.exception("reprice run %d failed", run_id)
            try:
                with connect(self._dsn, self._schema) as conn:
                    conn.execute(
                        "UPDATE llm_reprice_runs SET status = 'failed', error = %s, finished_at = now() WHERE id = %s",
                        (f"{type(exc).__name__}: {exc}"[:500], run_id),
                    )
            except psycopg.Error:
                logger.warning("reprice run %d: could not record the failure", run_id)

    def _walk(self, conn: psycopg.Connection[Any], run_id: int) -> None:
        run = conn.execute(
            """SELECT status, reason, dry_run, range_from, range_to, provider, model, project, projects, only_unpriced,
                      cursor_ts, cursor_trace_id, cursor_span_id FROM llm_reprice_runs WHERE id = %s""",
            (run_id,),
        ).fetchone()
        conn.commit()
        if run is None or run[0] != "running":
            return
        spec = RepriceSpec(
            run[3], run[4], run[5], run[6], run[7], tuple(run[8]) if run[8] is not None else None, run[9], run[2],
            run[1],
        )  # fmt: skip
        cursor = (run[10], run[11], run[12]) if run[10] is not None else None
        where, params = _where(spec)
        conn.execute(_STAGING_SQL)
        conn.commit()
        first = f"SELECT {', '.join(_READ)} FROM llm_calls WHERE {where}"
        order = f" ORDER BY ts, trace_id, span_id LIMIT {self._batch}"
        while not self._stop.is_set():
            select = first + order
            if cursor is not None:
                select = first + " AND (ts, trace_id, span_id) > (%(c_ts)s, %(c_trace)s, %(c_span)s)" + order
                params.update(c_ts=cursor[0], c_trace=cursor[1], c_span=cursor[2])
            batch = self._commit_batch(conn, run_id, select, params, spec.dry_run)
            if batch is None:
                logger.info("%s", self._finish(conn, run_id))
                return
            if self._on_batch is not None and not spec.dry_run:
                tally = batch.total()
                if tally.calls:
                    self._on_batch(spec.reason, tally.calls, tally.before, tally.after)
            cursor = batch.last

    def _commit_batch(
        self, conn: psycopg.Connection[Any], run_id: int, select: str, params: dict[str, Any], dry_run: bool
    ) -> _Batch | None:
        """One batch in one transaction (run again if Postgres undid it as a deadlock); None: the run is done."""
        for attempt in range(MAX_ROLLBACK_RETRIES + 1):
            try:
                with conn.transaction():
                    rows = conn.execute(select, params).fetchall()
                    if not rows:
                        conn.execute(
                            "UPDATE llm_reprice_runs SET status = 'done', finished_at = now() WHERE id = %s", (run_id,)
                        )
                        return None
                    batch = self._batch_of(conn, rows, dry_run)
                    self._record(conn, run_id, batch)
                    return batch
            except ROLLED_BACK:
                if attempt == MAX_ROLLBACK_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _batch_of(self, conn: psycopg.Connection[Any], rows: list[Any], dry_run: bool) -> _Batch:
        """Price a batch of calls again; update the changed ones (not in a dry run). What changed, per day and model."""
        batch = _Batch(examined=len(rows), last=(rows[-1][0], rows[-1][1], rows[-1][2]))
        price = self._catalog.price
        changed: list[tuple[Any, ...]] = []
        for row in rows:
            stored = _stored(row)
            fresh = _fresh(price(_call(row)))
            if fresh != stored:
                changed.append((row[0], row[1], row[2], stored[0], stored[-1], *fresh))
                if dry_run:
                    batch.change(row[0], row[3], row[7], stored[0], fresh[0])
        if changed and not dry_run:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {_STAGING} FROM STDIN") as copy:
                    for change in changed:
                        copy.write_row(change)
                lo, hi = min(c[0] for c in changed), max(c[0] for c in changed)
                for ts, provider, model, old, new in cur.execute(_UPDATE_SQL, (lo, hi)):
                    batch.change(ts, provider, model, old, new)
        return batch

    @staticmethod
    def _record(conn: psycopg.Connection[Any], run_id: int, batch: _Batch) -> None:
        tally = batch.total()
        assert batch.last is not None
        conn.execute(
            _PROGRESS_SQL,
            {
                "run": run_id, "examined": batch.examined, "calls": tally.calls, "newly_priced": tally.newly_priced,
                "newly_unpriced": tally.newly_unpriced, "before": tally.before, "after": tally.after,
                "ts": batch.last[0], "trace_id": batch.last[1], "span_id": batch.last[2],
            },
        )  # fmt: skip
        if batch.per_day:
            keys = list(batch.per_day)
            t = [batch.per_day[k] for k in keys]
            conn.execute(
                _CHANGES_SQL,
                (
                    run_id, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [x.calls for x in t],
                    [x.newly_priced for x in t], [x.newly_unpriced for x in t], [x.before for x in t],
                    [x.after for x in t],
                ),
            )  # fmt: skip

    @staticmethod
    def _finish(conn: psycopg.Connection[Any], run_id: int) -> str:
        row = conn.execute(
            "SELECT reason, dry_run, provider, model, changed, newly_priced, usd_before, usd_after, examined"
            " FROM llm_reprice_runs WHERE id = %s",
            (run_id,),
        ).fetchone()
        assert row is not None
        reason, dry, provider, model, changed, newly, before, after, examined = row
        if reason == "new_price":
            return (
                f"priced {newly:,} calls of {provider}/{model} stored unpriced: ${after - before:f}"
                f" (reprice run {run_id})"
            )
        verb = "would change" if dry else "changed"
        return (
            f"reprice run {run_id} done: {verb} {changed:,} of {examined:,} calls, ${before:f} -> ${after:f}"
            f" ({'+' if after >= before else ''}{after - before:f})"
        )


# ---- reading runs ----------------------------------------------------------------------------------------------


def _visible(projects: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    """A key limited to projects sees the runs limited to projects within them (never a run of every project)."""
    if projects is None:
        return "TRUE", {}
    return "projects IS NOT NULL AND projects <@ %(visible)s::text[]", {"visible": list(projects)}


def _run_json(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(_RUN_COLUMNS, row, strict=True))
    for key in ("created_at", "finished_at", "range_from", "range_to"):
        out[key] = out[key].isoformat() if out[key] is not None else None
    for key in ("usd_before", "usd_after"):
        out[key] = format(out[key], "f")
    out["usd_difference"] = format(row[_RUN_COLUMNS.index("usd_after")] - row[_RUN_COLUMNS.index("usd_before")], "f")
    return out


def list_runs(conn: psycopg.Connection[Any], projects: Sequence[str] | None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest runs, newest first."""
    where, params = _visible(projects)
    sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM llm_reprice_runs WHERE {where} ORDER BY id DESC LIMIT %(limit)s"
    return [_run_json(r) for r in conn.execute(sql, {**params, "limit": limit})]


def get_run(conn: psycopg.Connection[Any], run_id: int, projects: Sequence[str] | None) -> dict[str, Any] | None:
    """One run with what it changed per day, provider and model; None when there is none the key may see."""
    where, params = _visible(projects)
    row = conn.execute(
        f"SELECT {', '.join(_RUN_COLUMNS)} FROM llm_reprice_runs WHERE id = %(id)s AND {where}",
        {**params, "id": run_id},
    ).fetchone()
    if row is None:
        return None
    out = _run_json(row)
    out["changes"] = [
        {
            "day": r[0].isoformat(), "provider": r[1], "model": r[2], "calls": r[3], "newly_priced": r[4],
            "newly_unpriced": r[5], "usd_before": format(r[6], "f"), "usd_after": format(r[7], "f"),
            "usd_difference": format(r[7] - r[6], "f"),
        }
        for r in conn.execute(
            "SELECT day, provider, model, calls, newly_priced, newly_unpriced, usd_before, usd_after"
            " FROM llm_reprice_changes WHERE run_id = %s ORDER BY day, provider, model",
            (run_id,),
        )
    ]  # fmt: skip
    return out
