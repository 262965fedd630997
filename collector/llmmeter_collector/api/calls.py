"""Reading the per-call ledger: filtered pages of calls with keyset cursors, and streamed exports.

Pages are ordered newest first on ``(ts, trace_id, span_id)``, the ledger's unique key (or most expensive first on
``(cost_usd, ts, span_id, trace_id)``, the key of ``llm_calls_cost_page_idx``). Each order is walked by one index,
partition by partition, so a page reads about ``limit`` rows whatever the time range. The cursor is the sort key of
the last row returned, not an offset, so calls inserted while a client pages never shift, duplicate or skip the rows
it has not seen yet. Exports stream from Postgres (``COPY ... TO STDOUT``, CSV and JSON lines) in fixed-size
chunks: memory stays constant for any row count.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from llmmeter_collector.api.openapi import BadRequest

# What a page of calls and an export carry for each call (the ledger has more: see migrations/0001_ledger.sql).
CALL_FIELDS = (
    "ts", "trace_id", "span_id", "project", "environment", "feature", "user_id", "session_id", "provider",
    "operation", "request_model", "model", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_usd", "duration_s", "ttfc_s", "status", "error_type",
    "retries", "streaming", "batch", "service_tier", "prompt_fingerprint", "tags",
)  # fmt: skip
_MONEY = frozenset({"cost_usd"})
_BOOLEANS = frozenset({"streaming", "batch"})
_TEXTS = frozenset({
    "trace_id", "span_id", "project", "environment", "feature", "user_id", "session_id", "provider", "operation",
    "request_model", "model", "status", "error_type", "service_tier", "prompt_fingerprint",
})  # fmt: skip
ORDERS = ("time", "cost")
# The sort key of each order, walked downwards. Time: the ledger's unique key (ts, trace_id, span_id), so no other
# index is needed for it. Cost: llm_calls_cost_page_idx (migrations/0021), whose tiebreak is (ts, span_id, trace_id).
_KEYS = {"time": ("ts", "trace_id", "span_id"), "cost": ("cost_usd", "ts", "span_id", "trace_id")}
# Version 2 cursors: time-order cursors of version 1 (no "v") carried (ts, span_id, trace_id), the time order
# before migration 0022; they are refused (400, page again from the start) rather than decoded into a key of the
# new order, where they could repeat or skip calls of the same microsecond. Cost-order cursors kept their key,
# so version 1 ones are still accepted.
_CURSOR_VERSION = 2
_PARSE_KEY: dict[str, Callable[[str], Any]] = {"ts": datetime.fromisoformat, "cost_usd": Decimal}


@dataclass(frozen=True)
class CallFilter:
    """Which calls to read. ``visible_projects`` (from the API key) restricts everything else; None: all."""

    since: datetime | None = None
    until: datetime | None = None
    project: str | None = None
    feature: str | None = None
    provider: str | None = None
    model: str | None = None
    user: str | None = None
    status: str | None = None
    min_cost: Decimal | None = None
    visible_projects: tuple[str, ...] | None = None

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        """A WHERE clause (always valid, ``TRUE`` when nothing is filtered) and its parameters."""
        parts: list[sql.Composable] = []
        params: dict[str, Any] = {}
        if self.since is not None:
            parts.append(sql.SQL("ts >= %(since)s"))
            params["since"] = self.since
        if self.until is not None:
            parts.append(sql.SQL("ts < %(until)s"))
            params["until"] = self.until
        for name, column in (
            ("project", "project"),
            ("feature", "feature"),
            ("provider", "provider"),
            ("model", "model"),
            ("user", "user_id"),
            ("status", "status"),
        ):
            value = getattr(self, name)
            if value is not None:
                parts.append(sql.SQL("{} = %({})s").format(sql.Identifier(column), sql.SQL(name)))
                params[name] = value
        if self.min_cost is not None:
            parts.append(sql.SQL("cost_usd >= %(min_cost)s"))
            params["min_cost"] = self.min_cost
        if self.visible_projects is not None:
            parts.append(sql.SQL("project = ANY(%(visible_projects)s)"))
            params["visible_projects"] = list(self.visible_projects)
        if not parts:
            return sql.SQL("TRUE"), params
        return sql.SQL(" AND ").join(parts), params


def _select_list() -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in CALL_FIELDS)


def encode_cursor(order: str, row: dict[str, Any]) -> str:
    key = [row[c].isoformat() if c == "ts" else str(row[c]) for c in _KEYS[order]]
    raw = json.dumps({"o": order, "v": _CURSOR_VERSION, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(order: str, cursor: str) -> list[Any]:
    """The sort key a cursor carries; BadRequest naming ``cursor`` when it is not one this API issued."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = data["k"]
        if data["o"] != order:
            raise BadRequest("cursor", f"was issued for order={data['o']}, not order={order}")
        if data.get("v", 1) != _CURSOR_VERSION and order != "cost":
            raise BadRequest("cursor", "was issued by an older llmmeter version; page again without a cursor")
        columns = _KEYS[order]
        if not isinstance(key, list) or len(key) != len(columns) or not all(isinstance(k, str) for k in key):
            raise ValueError("bad key")
        return [_PARSE_KEY.get(c, str)(k) for c, k in zip(columns, key, strict=True)]
    except BadRequest:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error, ArithmeticError):
        raise BadRequest("cursor", "is not a cursor returned by this API (pass next_cursor unchanged)") from None


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key in _MONEY:
            out[key] = None if value is None else format(value, "f")
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


def _page_query(
    where: CallFilter, *, order: str = "time", limit: int = 50, cursor: str | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    """The query of one page: ``limit`` + 1 rows after the cursor's key (the extra row tells a next page exists)."""
    if order not in ORDERS:
        raise BadRequest("order", f"must be one of {', '.join(ORDERS)}, got {order!r}")
    clause, params = where.where()
    conditions = [clause]
    if order == "cost":
        conditions.append(sql.SQL("cost_usd IS NOT NULL"))  # an unpriced call is not among the most expensive
    key_cols = sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in _KEYS[order]))
    # Exactly the indexes' order (cost_usd NULLS LAST, the rest NULLS FIRST), or the planner sorts instead.
    order_by = sql.SQL(", ").join(
        sql.SQL("{} DESC NULLS LAST" if c == "cost_usd" else "{} DESC").format(sql.Identifier(c)) for c in _KEYS[order]
    )
    if cursor:
        key = decode_cursor(order, cursor)
        names = [f"k{i}" for i in range(len(key))]
        params.update(zip(names, key, strict=True))
        placeholders = sql.SQL(", ").join(sql.Placeholder(n) for n in names)
        conditions.append(sql.SQL("{} < ({})").format(key_cols, placeholders))
    params["limit"] = limit + 1
    query = sql.SQL("SELECT {} FROM llm_calls WHERE {} ORDER BY {} LIMIT %(limit)s").format(
        _select_list(), sql.SQL(" AND ").join(conditions), order_by
    )
    return query, params


def page(
    pool: ConnectionPool, where: CallFilter, *, order: str = "time", limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """One page of calls and the cursor of the next page (None on the last page)."""
    query, params = _page_query(where, order=order, limit=limit, cursor=cursor)
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "calls": [_jsonable(r) for r in rows],
        "next_cursor": encode_cursor(order, rows[-1]) if more and rows else None,
        "order": order,
    }


def _export_select(where: CallFilter, columns: Iterable[sql.Composable]) -> tuple[sql.Composable, dict[str, Any]]:
    """The export query: one expression per CALL_FIELDS column, oldest first (the order of the ledger's unique key)."""
    clause, params = where.where()
    query = sql.SQL("SELECT {} FROM llm_calls WHERE {} ORDER BY ts, trace_id, span_id").format(
        sql.SQL(", ").join(columns), clause
    )
    return query, params


def _copy_out(
    pool: ConnectionPool, copy_sql: sql.Composed, params: dict[str, Any], convert: Callable[[str], str] | None = None
) -> Iterator[bytes]:
    """Stream a ``COPY ... TO STDOUT`` in chunks of about 256 KiB (rows arrive one by one from libpq), each row
    rewritten by ``convert`` (in the connection's encoding) when given."""
    with pool.connection() as conn, conn.cursor() as cur, cur.copy(copy_sql, params) as copy:
        encoding = conn.info.encoding
        rows = (bytes(r) if convert is None else convert(str(r, encoding)).encode(encoding) for r in copy)
        buffered: list[bytes] = []
        size = 0
        for row in rows:
            buffered.append(row)
            size += len(row)
            if size >= 256 * 1024:
                yield b"".join(buffered)
                buffered, size = [], 0
        if buffered:
            yield b"".join(buffered)


def export_csv(pool: ConnectionPool, where: CallFilter) -> Iterator[bytes]:
    """CSV with a header line, streamed by Postgres's ``COPY ... TO STDOUT``."""
    columns = (
        sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(c))  # true/false, not Postgres's t/f
        if c in _MONEY | _BOOLEANS
        else sql.Identifier(c)
        for c in CALL_FIELDS
    )
    query, params = _export_select(where, columns)
    copy_sql = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(query)
    return _copy_out(pool, copy_sql, params)


# JSON lines are what row_to_json made of each row (money cast to text first), built without it: row_to_json cost
# Postgres about 6 us a row, the export's bottleneck. Postgres still renders every column that is not text with the
# function row_to_json applies to each column (to_json: ISO 8601 timestamps in the session's time zone, numbers as
# Postgres prints them, true/false, tags as stored, NULL as null); the text columns arrive raw and Python quotes
# them with json's encode_basestring, which escapes exactly the characters Postgres's escape_json does.
_JSONL_TEMPLATE = "{" + ",".join(f'"{c}":%s' for c in CALL_FIELDS) + "}\n"
_TEXTS_AT = tuple(i for i, c in enumerate(CALL_FIELDS) if c in _TEXTS)
_COPY_ESCAPE = re.compile(r"\\([\\bfnrtv])")  # what COPY's text format escapes with a backslash
_COPY_UNESCAPED = {"\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _json_value(column: str) -> sql.Composable:
    """What COPY sends of ``column`` for a JSON line: text raw, anything else as JSON text (never NULL)."""
    if column in _TEXTS:
        return sql.Identifier(column)
    cast = sql.SQL("::text") if column in _MONEY else sql.SQL("")
    return sql.SQL("coalesce(to_json({}{})::text, 'null')").format(sql.Identifier(column), cast)


def _json_line(row: str) -> str:
    """A row of COPY's text format (tab-separated, backslash escapes, newline-terminated) as a JSON line."""
    values = row[:-1].split("\t")
    if "\\" in row:  # rare: a backslash or a control character in a value
        values = [_COPY_ESCAPE.sub(lambda m: _COPY_UNESCAPED[m[1]], v) for v in values]
    for i in _TEXTS_AT:
        values[i] = encode_basestring(values[i])
    return _JSONL_TEMPLATE % tuple(values)


def export_jsonl(pool: ConnectionPool, where: CallFilter) -> Iterator[bytes]:
    """One JSON object per line (money as decimal strings), streamed by ``COPY ... TO STDOUT``."""
    query, params = _export_select(where, (_json_value(c) for c in CALL_FIELDS))
    return _copy_out(pool, sql.SQL("COPY ({}) TO STDOUT").format(query), params, _json_line)


def visible(projects: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if projects is None else tuple(projects)
