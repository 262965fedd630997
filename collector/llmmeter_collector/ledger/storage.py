"""The Postgres ledger: versioned migrations, one row per call, and rollups in the same transaction.

Writes are idempotent on (start time, trace id, span id): a retried export inserts nothing and adds
nothing to the rollups, because rollups are computed only from the rows the INSERT actually added.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from llmmeter_collector.ledger.spool import call_to_json
from llmmeter_collector.llmcall import COST_CLASSES, LlmCall

logger = logging.getLogger("llmmeter.collector")

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

CALL_COLUMNS = (
    "ts", "trace_id", "span_id", "parent_span_id", "service_name", "project", "environment", "feature",
    "user_id", "session_id", "experiment", "variant", "tags", "provider", "operation", "request_model",
    "response_model", "model", "response_id", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens", "input_audio_tokens",
    "output_audio_tokens", "usage_missing", "cost_usd",
    *(f"cost_{c}_usd" for c in COST_CLASSES),
    "price_source", "reported_cost_usd", "duration_s", "ttfc_s", "status", "error_type", "retries",
    "streaming", "batch", "service_tier", "prompt_fingerprint", "usage_incomplete", "scope", "prompt_name",
    "prompt_version", "template_fingerprint", "prompt_simhash", "scope_version",
)  # fmt: skip
# Staged with each call, not stored in llm_calls: its identity (ingest/identity.py), which the write enforces.
_IDENTITY_COLUMNS = ("call_key", "completeness")

_ROLLUP_DIMS = "project, environment, provider, model, feature, operation, status"
_ROLLUP_SUMS = (
    "calls", "unpriced_calls", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_usd", "duration_s",
)  # fmt: skip
_USER_SUMS = ("calls", "unpriced_calls", "input_tokens", "output_tokens", "cost_usd")


def _rollup_upsert(table: str, select: str) -> str:
    updates = ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in _ROLLUP_SUMS)
    return f"""
    INSERT INTO {table} (bucket, {_ROLLUP_DIMS}, {", ".join(_ROLLUP_SUMS)})
    {select} ORDER BY 1, {_ROLLUP_DIMS}
    ON CONFLICT (bucket, {_ROLLUP_DIMS}) DO UPDATE SET {updates}
    RETURNING 1"""


_USER_UPDATES = ", ".join(f"{c} = llm_rollup_user_day.{c} + EXCLUDED.{c}" for c in _USER_SUMS)
_STAGED = ", ".join("timestamptz 'epoch' + ts_us * interval '1 microsecond'" if c == "ts" else c for c in CALL_COLUMNS)


def _sums(sign: str) -> str:
    """The rollup sums of a group of calls (``sign`` "-": to take calls back out)."""
    return f"""{sign}count(*) AS calls, {sign}count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls,
           {sign}sum(input_tokens) AS input_tokens, {sign}sum(output_tokens) AS output_tokens,
           {sign}sum(cache_read_tokens) AS cache_read_tokens, {sign}sum(cache_write_tokens) AS cache_write_tokens,
           {sign}sum(reasoning_tokens) AS reasoning_tokens, {sign}coalesce(sum(cost_usd), 0) AS cost_usd,
           {sign}sum(duration_s) AS duration_s"""


# Upper bounds (seconds) of the experiment latency histogram's buckets; the last bucket is everything above.
LATENCY_BOUNDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120)
_PROMPT_KEYS = "project, feature, prompt_name, prompt_version, template_fingerprint, model"
_EXPERIMENT_KEYS = "project, experiment, variant"
_EXPERIMENT_USER_KEYS = "experiment, variant, project, user_id"


def _add(table: str, columns: Iterable[str]) -> str:
    return ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in columns)


def _hist(sign: str) -> str:
    counts = [
        f"{sign}count(*) FILTER (WHERE duration_s < {LATENCY_BOUNDS[0]})",
        *(f"{sign}count(*) FILTER (WHERE duration_s >= {lo} AND duration_s < {hi})"
          for lo, hi in itertools.pairwise(LATENCY_BOUNDS)),
        f"{sign}count(*) FILTER (WHERE duration_s >= {LATENCY_BOUNDS[-1]})",
    ]  # fmt: skip
    return "ARRAY[" + ", ".join(counts) + "]::bigint[]"


_PROMPT_SUMS = ("calls", "errors", "unpriced_calls", "input_tokens", "output_tokens", "cost_usd", "duration_s")
_EXPERIMENT_SUMS = (*_PROMPT_SUMS, "cost_sq", "duration_sq")
_SIGNATURE_SUMS = ("calls", "errors", "input_tokens", "cache_read_tokens", "output_tokens", "cost_usd", "duration_s")
# The signature rollup's groups (migration 0160): a prompt's signature varies with its variable part, its template
# does not; ``bits`` counts, per signature bit, the calls that set it (the group's centroid is the majority).
SIGNATURE_KEYS = "project, feature, model, template_fingerprint"
SIGNATURE_BITS = 64


def signature_bits(sign: str = "") -> str:
    """The ``bits`` array of a group of rows with a ``sig bit(64)`` column: per bit (most significant first), the
    rows that set it."""
    return "ARRAY[" + ", ".join(f"{sign}sum(get_bit(sig, {k}))" for k in range(SIGNATURE_BITS)) + "]::bigint[]"


def _rollups(source: str, sign: str = "") -> str:
    """CTEs adding the calls of ``source`` (a CTE with the llm_calls columns) to the minute, hour and user-day
    rollups and the daily prompt, experiment and signature rollups, or with ``sign`` "-" taking them out. The
    per-minute groups are computed once and the hourly rollup is summed from them."""
    hour = (
        f"SELECT date_trunc('hour', bucket), {_ROLLUP_DIMS}, "
        + ", ".join(f"sum({c})" for c in _ROLLUP_SUMS)
        + f" FROM g GROUP BY 1, {_ROLLUP_DIMS}"
    )
    common = f"""{sign}count(*), {sign}count(*) FILTER (WHERE status = 'error'),
           {sign}count(*) FILTER (WHERE cost_usd IS NULL), {sign}sum(input_tokens), {sign}sum(output_tokens),
           {sign}coalesce(sum(cost_usd), 0), {sign}sum(duration_s)"""
    return f"""g AS (
    SELECT date_trunc('minute', ts) AS bucket, {_ROLLUP_DIMS}, {_sums(sign)} FROM {source} GROUP BY 1, {_ROLLUP_DIMS}
), m AS ({_rollup_upsert("llm_rollup_minute", "SELECT * FROM g")}
), h AS ({_rollup_upsert("llm_rollup_hour", hour)}
), u AS (
    INSERT INTO llm_rollup_user_day (bucket, project, user_id, feature, {", ".join(_USER_SUMS)})
    SELECT date_trunc('day', ts), project, user_id, feature, {sign}count(*),
           {sign}count(*) FILTER (WHERE cost_usd IS NULL), {sign}sum(input_tokens), {sign}sum(output_tokens),
           {sign}coalesce(sum(cost_usd), 0)
    FROM {source} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (bucket, project, user_id, feature) DO UPDATE SET {_USER_UPDATES}
    RETURNING 1
), p AS (
    INSERT INTO llm_rollup_prompt_day AS r (bucket, {_PROMPT_KEYS}, {", ".join(_PROMPT_SUMS)}, first_seen, last_seen)
    SELECT date_trunc('day', ts), {_PROMPT_KEYS}, {common}, min(ts), max(ts)
    FROM {source} WHERE prompt_name <> '' OR template_fingerprint <> ''
    GROUP BY 1, {_PROMPT_KEYS} ORDER BY 1, {_PROMPT_KEYS}
    ON CONFLICT (bucket, {_PROMPT_KEYS}) DO UPDATE SET {_add("r", _PROMPT_SUMS)},
        first_seen = least(r.first_seen, EXCLUDED.first_seen), last_seen = greatest(r.last_seen, EXCLUDED.last_seen)
    RETURNING 1
), e AS (
    INSERT INTO llm_rollup_experiment_day AS r (bucket, {_EXPERIMENT_KEYS}, {", ".join(_EXPERIMENT_SUMS)}, hist)
    SELECT date_trunc('day', ts), {_EXPERIMENT_KEYS}, {common},
           {sign}coalesce(sum(cost_usd * cost_usd), 0), {sign}sum(duration_s * duration_s), {_hist(sign)}
    FROM {source} WHERE experiment <> ''
    GROUP BY 1, {_EXPERIMENT_KEYS} ORDER BY 1, {_EXPERIMENT_KEYS}
    ON CONFLICT (bucket, {_EXPERIMENT_KEYS}) DO UPDATE SET {_add("r", _EXPERIMENT_SUMS)},
        hist = ARRAY(SELECT a + b FROM unnest(r.hist, EXCLUDED.hist) AS t(a, b))
    RETURNING 1
), eu AS (
    INSERT INTO llm_rollup_experiment_user AS r ({_EXPERIMENT_USER_KEYS}, calls, unpriced_calls, cost_usd)
    SELECT {_EXPERIMENT_USER_KEYS}, {sign}count(*), {sign}count(*) FILTER (WHERE cost_usd IS NULL),
           {sign}coalesce(sum(cost_usd), 0)
    FROM {source} WHERE experiment <> '' AND user_id <> ''
    GROUP BY {_EXPERIMENT_USER_KEYS} ORDER BY {_EXPERIMENT_USER_KEYS}
    ON CONFLICT ({_EXPERIMENT_USER_KEYS}) DO UPDATE SET {_add("r", ("calls", "unpriced_calls", "cost_usd"))}
    RETURNING 1
), sg AS (
    INSERT INTO llm_rollup_signature_day AS r (bucket, {SIGNATURE_KEYS}, {", ".join(_SIGNATURE_SUMS)}, bits)
    SELECT date_trunc('month', ts), {SIGNATURE_KEYS}, {sign}count(*),
           {sign}count(*) FILTER (WHERE status = 'error'), {sign}sum(input_tokens), {sign}sum(cache_read_tokens),
           {sign}sum(output_tokens), {sign}coalesce(sum(cost_usd), 0), {sign}sum(duration_s), {signature_bits(sign)}
    FROM (SELECT *, ('x' || prompt_simhash)::bit(64) AS sig FROM {source} WHERE prompt_simhash <> '') signed
    GROUP BY 1, {SIGNATURE_KEYS} ORDER BY 1, {SIGNATURE_KEYS}
    ON CONFLICT (bucket, {SIGNATURE_KEYS}) DO UPDATE SET {_add("r", _SIGNATURE_SUMS)},
        bits = ARRAY(SELECT a + b FROM unnest(r.bits, EXCLUDED.bits) AS t(a, b))
    RETURNING 1
)"""


# One statement per batch: insert the staged calls that are new, then add exactly those to the rollups; the
# count tells the writer whether every staged call was new (the usual case) without sending their keys back.
_INSERT_SQL = f"""
WITH ins AS (
    INSERT INTO llm_calls ({", ".join(CALL_COLUMNS)}) SELECT {_STAGED} FROM llm_calls_staging
    ORDER BY ts_us, trace_id, span_id
    ON CONFLICT DO NOTHING
    RETURNING ts, {_ROLLUP_DIMS}, user_id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
              reasoning_tokens, cost_usd, duration_s, experiment, variant, prompt_name, prompt_version,
              template_fingerprint, prompt_simhash, scope, scope_version
), {_rollups("ins")}, v AS (
    INSERT INTO llm_sdk_versions AS r (scope, version, first_seen, last_seen, calls)
    SELECT scope, scope_version, min(ts), max(ts), count(*) FROM ins WHERE scope <> '' GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (scope, version) DO UPDATE SET first_seen = least(r.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(r.last_seen, EXCLUDED.last_seen), calls = r.calls + EXCLUDED.calls
    RETURNING 1
)
SELECT count(*) FROM ins
"""
# One priced call per provider call (ingest/identity.py). The best staged span of each key is upserted into
# llm_call_identity, replacing the holder when it beats it (more usage classes reported, then the lowest span id:
# the same winner whatever order the spans arrive in). ON CONFLICT locks the key's row (whether it updates it or
# not) until commit, and rows are upserted in key order, so writers sharing the database wait for each other and
# see each other's holders. Returned: the holders it displaced (prev_*: the row's values before this update).
_IDENTIFY_SQL = """
WITH cand AS (
    SELECT DISTINCT ON (call_key) call_key, trace_id, span_id, ts_us, completeness
    FROM llm_calls_staging WHERE call_key <> ''
    ORDER BY call_key, completeness DESC, span_id, trace_id
), up AS (
    INSERT INTO llm_call_identity AS i (call_key, trace_id, span_id, ts, completeness)
    SELECT call_key, trace_id, span_id, timestamptz 'epoch' + ts_us * interval '1 microsecond', completeness
    FROM cand ORDER BY call_key
    ON CONFLICT (call_key) DO UPDATE
        SET trace_id = EXCLUDED.trace_id, span_id = EXCLUDED.span_id, ts = EXCLUDED.ts,
            completeness = EXCLUDED.completeness, prev_trace_id = i.trace_id, prev_span_id = i.span_id,
            prev_ts = i.ts
        WHERE EXCLUDED.completeness > i.completeness
           OR (EXCLUDED.completeness = i.completeness
               AND (EXCLUDED.span_id, EXCLUDED.trace_id) < (i.span_id, i.trace_id))
    RETURNING i.prev_ts, i.prev_trace_id, i.prev_span_id, i.trace_id, i.span_id, i.xmax <> 0 AS updated
)
SELECT count(*), array_agg(prev_ts) FILTER (WHERE updated), array_agg(prev_trace_id) FILTER (WHERE updated),
       array_agg(prev_span_id) FILTER (WHERE updated), array_agg(trace_id) FILTER (WHERE updated),
       array_agg(span_id) FILTER (WHERE updated)
FROM up
"""
_CALL_LIST = ", ".join(CALL_COLUMNS)
# Staged spans of a key another span holds: moved to llm_call_duplicates, never priced into a rollup.
_LOSERS_SQL = f"""
WITH lose AS (
    DELETE FROM llm_calls_staging s USING llm_call_identity i
    WHERE s.call_key <> '' AND i.call_key = s.call_key AND (i.span_id <> s.span_id OR i.trace_id <> s.trace_id)
    RETURNING s.*, i.span_id AS winner
), dup AS (
    INSERT INTO llm_call_duplicates ({_CALL_LIST}, duplicate_of) SELECT {_STAGED}, winner FROM lose
    ON CONFLICT DO NOTHING
    RETURNING trace_id, span_id
)
SELECT l.trace_id, l.span_id, l.winner, d.span_id IS NOT NULL FROM lose l LEFT JOIN dup d USING (trace_id, span_id)
"""


# A displaced holder: its row moves from llm_calls to llm_call_duplicates and leaves the rollups (subtracted in
# the same transaction, so rollups always agree with the calls).
_DISPLACE_SQL = f"""
WITH d AS (
    SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[]) AS d(ts, trace_id, span_id, winner)
), gone AS (
    DELETE FROM llm_calls c USING d WHERE c.ts = d.ts AND c.trace_id = d.trace_id AND c.span_id = d.span_id
    RETURNING c.*, d.winner
), dup AS (
    INSERT INTO llm_call_duplicates ({_CALL_LIST}, duplicate_of) SELECT {_CALL_LIST}, winner FROM gone
    ON CONFLICT DO NOTHING RETURNING 1
), {_rollups("gone", "-")}
SELECT winner, scope FROM gone
"""
# After a displacement: rollup rows it emptied (their only call moved to the duplicates) are removed, so no
# zero row shows up as a project, model or user with nothing in it.
_PRUNE_SQL = """
WITH span AS (SELECT min(t) AS lo, max(t) AS hi FROM unnest(%(ts)s::timestamptz[]) AS t),
m AS (DELETE FROM llm_rollup_minute r USING span
      WHERE r.calls = 0 AND r.bucket BETWEEN date_trunc('minute', span.lo) AND span.hi),
h AS (DELETE FROM llm_rollup_hour r USING span
      WHERE r.calls = 0 AND r.bucket BETWEEN date_trunc('hour', span.lo) AND span.hi),
u AS (DELETE FROM llm_rollup_user_day r USING span
      WHERE r.calls = 0 AND r.bucket BETWEEN date_trunc('day', span.lo) AND span.hi),
p AS (DELETE FROM llm_rollup_prompt_day r USING span
      WHERE r.calls = 0 AND r.bucket BETWEEN date_trunc('day', span.lo) AND span.hi),
e AS (DELETE FROM llm_rollup_experiment_day r USING span
      WHERE r.calls = 0 AND r.bucket BETWEEN date_trunc('day', span.lo) AND span.hi),
eu AS (DELETE FROM llm_rollup_experiment_user r WHERE r.calls = 0)
DELETE FROM llm_rollup_signature_day r USING span
WHERE r.calls = 0 AND r.bucket BETWEEN date_trunc('month', span.lo) AND span.hi
"""
# When some staged calls were not new: the keys of the rows this transaction inserted.
_INSERTED_SQL = """
SELECT s.trace_id, s.span_id, s.ts_us FROM llm_calls_staging s
JOIN llm_calls c ON c.ts = timestamptz 'epoch' + s.ts_us * interval '1 microsecond'
                AND c.trace_id = s.trace_id AND c.span_id = s.span_id
WHERE c.xmin = pg_current_xact_id()::xid
"""


MAX_ROLLBACK_RETRIES = 3  # a batch Postgres rolls back as a deadlock / serialization failure is run again
# SQLSTATE class 40: Postgres undid the whole transaction (psycopg files these under OperationalError)
ROLLED_BACK = (
    psycopg.errors.TransactionRollback, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
)  # fmt: skip

# SQLSTATE classes of a row Postgres will never accept, however often it is sent: 22 data exception (bad
# value, invalid encoding), 23 integrity constraint violation, 54 program limit exceeded (54000: index row
# size). psycopg files class 54 under OperationalError, like a lost connection: hence the SQLSTATE test.
DATA_ERROR_CLASSES = ("22", "23", "54")


def is_data_error(exc: BaseException) -> bool:
    """True for an error caused by the rows themselves (retrying cannot help; isolate and reject them)."""
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):  # also psycopg's own, e.g. a NUL in text
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.Error) and state[:2] in DATA_ERROR_CLASSES


@dataclass(frozen=True)
class Rejected:
    """A call Postgres refused for its data, with Postgres' reason; it went to the dead-letter table."""

    call: LlmCall
    reason: str
    sqlstate: str = ""


@dataclass
class Written:
    """What a salvaging write did: the calls newly inserted and the calls rejected for their data."""

    inserted: list[LlmCall] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


# The writer must notice a dead or unreachable Postgres in seconds (then it spools or refuses), not hang.
WRITER_TIMEOUTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}


def connect_kwargs(schema: str | None) -> dict[str, Any]:
    """Connection options: UTC session time zone (rollup buckets are UTC) and the schema to use."""
    options = "-c timezone=UTC"
    if schema:
        if not _SCHEMA_RE.match(schema):
            raise ValueError(f"invalid Postgres schema name {schema!r}")
        options += f" -c search_path={schema}"
    return {"options": options}


def connect(dsn: str, schema: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, **connect_kwargs(schema), **kwargs)


def create_pool(dsn: str, schema: str | None, max_size: int = 4, open: bool = True) -> ConnectionPool:
    """Read connections. ``open=False``: opened later (``pool.open()``), e.g. once Postgres first answers, so
    the pool does not sit in its reconnect backoff when it does."""
    return ConnectionPool(
        dsn, min_size=1, max_size=max_size, kwargs=connect_kwargs(schema), open=open, name="llmmeter-read"
    )


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("llmmeter_collector.ledger.migrations").iterdir():
        match = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(dsn: str, schema: str | None = None) -> list[int]:
    """Apply every migration not applied yet, under an advisory lock. Returns the versions applied."""
    applied: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as admin:
        if schema:
            connect_kwargs(schema)  # validates the name
            admin.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    with connect(dsn, schema) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('llmmeter.migrate'))")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS llmmeter_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            done = {row[0] for row in conn.execute("SELECT version FROM llmmeter_migrations")}
            for version, name, sql in _migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO llmmeter_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(version)
                logger.info("applied migration %04d_%s", version, name)
            conn.commit()
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('llmmeter.migrate'))")
    return applied


def _partition_name(day: date) -> str:
    return f"llm_calls_p{day:%Y%m%d}"


def _range_name(start: date, end: date) -> str:
    """A partition over several past days (a backfill): ``llm_calls_p<first day>_<day after the last>``."""
    return f"llm_calls_p{start:%Y%m%d}_{end:%Y%m%d}"


RECENT_DAYS_BEHIND = 2  # today and this many days before it always get daily partitions
DAILY_PER_MONTH = 4  # a past month gets daily partitions until it holds this many; then month-wide ones
PARTITIONS_PER_TRANSACTION = 16  # DDL is committed in small steps: its locks stay far from the lock table's size
_BOUND_RE = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


def _bound_day(text: str) -> date:
    return datetime.fromisoformat(text.strip()[:10]).date()


def _month(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


def plan_partitions(
    days: Iterable[date], existing: Sequence[tuple[date, date]], today: date
) -> list[tuple[date, date]]:
    """The new partitions (start, end) that make every day in ``days`` covered, given the ``existing`` ranges.

    Today, the days ahead and the last ``RECENT_DAYS_BEHIND`` days get one partition per day (retention drops
    them day by day). So does a past day of a month with few partitions (late data stays daily). A past day of
    a month that already holds ``DAILY_PER_MONTH`` partitions, or that this write brings many days of (a
    backfill), gets one partition over the free part of its month around it: a backfill over years makes
    about one partition per month, never one per day."""
    ranges = sorted(existing)
    recent = today - timedelta(days=RECENT_DAYS_BEHIND)
    todo = sorted(d for d in set(days) if not _covered(ranges, d))
    per_month: dict[date, int] = {}
    for day in todo:
        per_month[_month(day)[0]] = per_month.get(_month(day)[0], 0) + 1
    created: list[tuple[date, date]] = []
    for day in todo:
        if _covered(ranges, day):
            continue
        first, after = _month(day)
        in_month = sum(1 for s, e in ranges if s < after and e > first)
        if day >= recent or in_month + per_month[first] < DAILY_PER_MONTH:
            new = (day, day + timedelta(days=1))
        else:  # the free stretch of the month around the day, ending before the recent window
            start = max([first, *(e for s, e in ranges if e <= day)])
            end = min([after, recent, *(s for s, e in ranges if s > day)])
            new = (start, end)
        bisect.insort(ranges, new)
        created.append(new)
    return created


def _covered(ranges: Sequence[tuple[date, date]], day: date) -> bool:
    i = bisect.bisect_right(ranges, (day, date.max)) - 1
    return i >= 0 and ranges[i][0] <= day < ranges[i][1]


_NS_PER_DAY = 86_400 * 10**9
_EPOCH = date(1970, 1, 1)
_json_str = json.encoder.encode_basestring_ascii  # one JSON string literal (C), as json.dumps writes it


def _tags_json(tags: dict[str, str]) -> str:
    """Tags as JSON text: COPY's text format hands it to Postgres, which parses it as jsonb (no adapter per row).
    Names and values are strings (normalize made them so): each is one C call, no encoder object."""
    if not tags:
        return "{}"
    try:
        return "{" + ",".join(_json_str(name) + ":" + _json_str(value) for name, value in tags.items()) + "}"
    except TypeError:  # a value that is not a string (a call built by hand): what json.dumps writes
        return json.dumps(tags, separators=(",", ":"))


_COPY_SQL = "COPY llm_calls_staging ({}) FROM STDIN".format(
    ", ".join("ts_us" if c == "ts" else c for c in (*CALL_COLUMNS, *_IDENTITY_COLUMNS))
)
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _format_rows_python(rows: Iterable[tuple[Any, ...]], out: bytearray) -> None:
    """COPY text format: tab-separated, ``\\N`` for NULL, backslash escapes (the fallback of ``copy_rows``)."""
    for row in rows:
        fields = []
        for value in row:
            kind = type(value)
            if value is None:
                fields.append("\\N")
            elif kind is str:
                fields.append(value.translate(_COPY_ESCAPES))
            elif kind is bool:
                fields.append("t" if value else "f")
            elif kind is float:
                fields.append(repr(value))
            else:  # int, Decimal
                fields.append(str(value))
        out += "\t".join(fields).encode()
        out += b"\n"


def _row_formatter() -> Callable[[Iterable[tuple[Any, ...]], bytearray], None]:
    """psycopg's own C row formatter when this psycopg has it where we look, else the Python one above."""
    try:
        from psycopg._copy_base import format_row_text  # private: checked against the fallback in tests
        from psycopg.adapt import Transformer
    except ImportError:
        return _format_rows_python

    def format_rows(rows: Iterable[tuple[Any, ...]], out: bytearray) -> None:
        transformer = Transformer()
        for row in rows:
            format_row_text(row, transformer, out)

    return format_rows


_format_rows = _row_formatter()


def copy_rows(calls: Iterable[LlmCall]) -> bytes:
    """The calls as COPY data for the staging table. Done where the calls were priced (the receiving threads),
    so the single writer thread only sends bytes and waits for Postgres."""
    out = bytearray()
    _format_rows(map(_row, calls), out)
    return bytes(out)


def _row(call: LlmCall) -> tuple[Any, ...]:
    """The staged row: the start time as integer microseconds (Postgres makes it a timestamptz, exactly)."""
    u = call.usage
    cost = call.cost
    parts = [cost.parts.get(c) if cost else None for c in COST_CLASSES]
    return (
        call.start_ns // 1000, call.trace_id, call.span_id, call.parent_span_id, call.service_name,
        call.project, call.environment, call.feature, call.user_id, call.session_id, call.experiment,
        call.variant, _tags_json(call.tags), call.provider, call.operation, call.request_model,
        call.response_model, call.model, call.response_id, u.input_tokens, u.output_tokens,
        u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens, u.reasoning_tokens,
        u.input_audio_tokens, u.output_audio_tokens, call.usage_missing,
        cost.total if cost else None, *parts, cost.price_source if cost else "", call.reported_cost,
        call.duration_s, call.ttfc_s, call.status, call.error_type, call.retries, call.streaming,
        call.batch, call.service_tier, call.prompt_fingerprint, ",".join(call.usage_incomplete), call.scope,
        call.prompt_name, call.prompt_version, call.template_fingerprint, call.prompt_simhash, call.scope_version,
        call.call_key, call.completeness,
    )  # fmt: skip


@dataclass(slots=True)
class _Identity:
    """What the identity step of one write decided: duplicates of held calls, and holders displaced."""

    losers: dict[tuple[str, str], tuple[str, bool]]  # (trace, span) -> (winner span, newly stored as duplicate)
    displaced: dict[tuple[str, str], tuple[str, str]]  # (trace, winner span) -> the displaced span and its scope

    def mark(self, calls: Sequence[LlmCall], new: list[LlmCall]) -> None:
        """Flag the calls (``duplicate_of``, ``replaces``) and add the newly stored duplicates to ``new``, so
        the metrics count them as duplicates (and a displacing call is not counted as a second call)."""
        for call in calls:
            key = (call.trace_id, call.span_id)
            loser = self.losers.pop(key, None)
            if loser is not None:
                call.duplicate_of = loser[0]
                if loser[1]:
                    new.append(call)
            elif key in self.displaced:
                call.replaces, call.replaced_scope = self.displaced[key]


def _identify(cur: psycopg.Cursor[Any], keyed: int) -> _Identity:
    """The identity step of a write, on the staged calls (see ``_IDENTIFY_SQL``), ``keyed`` of which carry a key."""
    row = cur.execute(_IDENTIFY_SQL).fetchone()
    assert row is not None
    won, *columns = row
    displaced = list(zip(*columns, strict=True)) if columns[0] else []
    scopes: dict[str, str] = {}
    if displaced:  # (holder's ts, trace, span, winner's trace, span)
        scopes = dict(cur.execute(_DISPLACE_SQL, [*columns[:3], columns[4]]).fetchall())
        cur.execute(_PRUNE_SQL, {"ts": columns[0]})
    losers: dict[tuple[str, str], tuple[str, bool]] = {}
    if won < keyed:  # a staged span whose key another span holds (when each key's one span took it: none)
        losers = {(r[0], r[1]): (r[2], r[3]) for r in cur.execute(_LOSERS_SQL)}
    return _Identity(losers, {(r[3], r[4]): (r[2], scopes.get(r[4], "")) for r in displaced})


def row_key(call: LlmCall) -> str:
    """The ledger key of a call (start time, trace id, span id) as a short digest: any length fits an index."""
    key = f"{call.start_ns // 1000}/{call.trace_id}/{call.span_id}"
    return hashlib.sha256(key.encode(errors="replace")).hexdigest()


def _ts(call: LlmCall) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=call.start_ns // 1000)


def _printable(text: str) -> str:
    """Text Postgres stores whatever it holds (no NUL, no lone surrogate)."""
    return text.replace("\x00", "\\0").encode("utf-8", errors="replace").decode("utf-8")


def _reason(exc: psycopg.Error) -> str:
    """Postgres' message for a refused row, first line, with its SQLSTATE."""
    message = (str(exc).strip().splitlines() or ["?"])[0][:300]
    return f"{message} (SQLSTATE {exc.sqlstate or '22000'})"


class Ledger:
    """Writes batches of calls on one connection; one transaction per batch."""

    def __init__(self, dsn: str, schema: str | None = None) -> None:
        self._dsn = dsn
        self._schema = schema
        self._conn: psycopg.Connection[Any] | None = None
        self._ranges: list[tuple[date, date]] = []  # partitions known to exist (start day, end day)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._dsn, self._schema, **WRITER_TIMEOUTS)
            self._conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS llm_calls_staging"
                " (LIKE llm_calls INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            self._conn.execute("ALTER TABLE llm_calls_staging DROP COLUMN IF EXISTS ts")
            self._conn.execute("ALTER TABLE llm_calls_staging ADD COLUMN IF NOT EXISTS ts_us bigint NOT NULL")
            self._conn.execute(
                "ALTER TABLE llm_calls_staging ADD COLUMN IF NOT EXISTS call_key text NOT NULL DEFAULT '',"
                " ADD COLUMN IF NOT EXISTS completeness smallint NOT NULL DEFAULT 0"
            )
            self._conn.commit()
        return self._conn

    def ensure_partitions_ahead(self, today: date, days_ahead: int) -> None:
        """Create the partitions of today and the next ``days_ahead`` days (at start, then daily)."""
        self.ensure_partitions(today + timedelta(days=n) for n in range(days_ahead + 1))

    def ensure_partitions(self, days: Iterable[date], today: date | None = None) -> None:
        """Make every day in ``days`` covered by a partition (see ``plan_partitions``), creating what is missing
        in transactions of its own, before the write: never one partition per day of a backfill."""
        wanted = set(days)
        if all(_covered(self._ranges, d) for d in wanted):
            return
        today = today or datetime.now(timezone.utc).date()
        conn = self._connection()
        while True:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('llmmeter.partitions.' || current_schema()))")
                self._ranges = self._existing_ranges(conn)  # another collector may have made some
                new = plan_partitions(wanted, self._ranges, today)
                for start, end in new[:PARTITIONS_PER_TRANSACTION]:
                    name = _partition_name(start) if end - start == timedelta(days=1) else _range_name(start, end)
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF llm_calls"
                        f" FOR VALUES FROM ('{start.isoformat()} 00:00:00+00') TO ('{end.isoformat()} 00:00:00+00')"
                    )
                    bisect.insort(self._ranges, (start, end))
            if len(new) <= PARTITIONS_PER_TRANSACTION:
                return

    @staticmethod
    def _existing_ranges(conn: psycopg.Connection[Any]) -> list[tuple[date, date]]:
        """The day ranges of the attached partitions of ``llm_calls``."""
        rows = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'llm_calls'::regclass"
        ).fetchall()
        found = []
        for (bound,) in rows:
            match = _BOUND_RE.search(bound or "")
            if match:
                found.append((_bound_day(match.group(1)), _bound_day(match.group(2))))
        return sorted(found)

    def ping(self) -> None:
        """Raise unless Postgres answers on the writer's connection (in a transaction of its own: a write after
        it must commit, not run in a savepoint of a transaction left open)."""
        conn = self._connection()
        with conn.transaction():
            conn.execute("SELECT 1")

    def write(
        self, calls: Sequence[LlmCall], rows: bytes | None = None, *, _retry: bool = True, _rollbacks: int = 0
    ) -> list[LlmCall]:
        """Insert calls (``rows``: their ``copy_rows``, when already made) and update rollups in one transaction.
        Returns the calls that were new.

        Calls are inserted in key order and rollup rows are upserted in key order, so writers (of this and of
        other collectors) sharing the database wait for each other instead of deadlocking; a transaction that
        Postgres still rolls back as a deadlock or serialization failure is run again, up to
        ``MAX_ROLLBACK_RETRIES`` times (it was undone whole, and every write is idempotent)."""
        if not calls:
            return []
        days = {_EPOCH + timedelta(days=d) for d in {c.start_ns // _NS_PER_DAY for c in calls}}
        self.ensure_partitions(days)
        conn = self._connection()
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()  # never write inside a transaction someone left open: it would not commit here
        keyed = sum(1 for c in calls if c.call_key)
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_COPY_SQL) as copy:
                    copy.write(rows if rows is not None else copy_rows(calls))
                identity = _identify(cur, keyed) if keyed else None
                row = cur.execute(_INSERT_SQL).fetchone()
                if row is not None and row[0] == len(calls):  # every call was new (none staged twice either)
                    if identity is not None:
                        identity.mark(calls, [])
                    return list(calls)
                inserted = {(r[0], r[1], r[2]) for r in cur.execute(_INSERTED_SQL)}
        except psycopg.errors.CheckViolation as exc:
            if not (_retry and "no partition" in str(exc)):
                raise
            # ledger/retention.py (maybe in another collector) dropped a partition cached here: create it again
            self._ranges = []
            return self.write(calls, rows, _retry=False)
        except ROLLED_BACK:
            if conn.broken:
                self._conn = None
            if _rollbacks >= MAX_ROLLBACK_RETRIES:
                raise
            return self.write(calls, rows, _retry=_retry, _rollbacks=_rollbacks + 1)
        except psycopg.Error:
            if conn.broken:
                self._conn = None
            raise
        new: list[LlmCall] = []
        for call in calls:  # a call staged twice in one batch (a retried export) was inserted once
            key = (call.trace_id, call.span_id, call.start_ns // 1000)
            if key in inserted:
                inserted.discard(key)
                new.append(call)
        if identity is not None:
            identity.mark(calls, new)
        return new

    def write_salvaging(self, calls: Sequence[LlmCall], rows: bytes | None = None) -> Written:
        """``write``, except that a batch Postgres refuses for its data (``is_data_error``) is split in halves
        until the refused calls are alone: those go to the dead-letter table, every other call commits.
        Connectivity errors (and bugs) still raise: the caller spools or refuses the whole batch."""
        try:
            return Written(self.write(calls, rows))
        except psycopg.Error as exc:
            if not is_data_error(exc):
                raise
            error = exc
        if len(calls) == 1:
            rejected = Rejected(calls[0], _reason(error), error.sqlstate or "22000")
            self.dead_letter([rejected])
            logger.error("call %s/%s refused by Postgres, kept in llm_calls_dead_letter: %s",
                         calls[0].trace_id[:64], calls[0].span_id[:32], rejected.reason)  # fmt: skip
            return Written(rejected=[rejected])
        half = len(calls) // 2
        first, second = self.write_salvaging(calls[:half]), self.write_salvaging(calls[half:])
        return Written(first.inserted + second.inserted, first.rejected + second.rejected)

    def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        """Keep refused calls (as JSON, with the error) in ``llm_calls_dead_letter``; once per call."""
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO llm_calls_dead_letter (call_key, ts, project, error, sqlstate, call)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (call_key) DO UPDATE"
                " SET error = EXCLUDED.error, sqlstate = EXCLUDED.sqlstate, failed_at = now(),"
                " attempts = llm_calls_dead_letter.attempts + 1",
                [
                    (row_key(r.call), _ts(r.call), _printable(r.call.project[:200]), _printable(r.reason),
                     r.sqlstate, call_to_json(r.call))
                    for r in rejected
                ],
            )  # fmt: skip

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
