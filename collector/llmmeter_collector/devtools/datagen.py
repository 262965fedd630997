"""Realistic synthetic LLM traffic for tests, demos and benchmarks.

Three providers (OpenAI, Anthropic, Gemini), several projects, features and users, ``days`` of history with a
daily rhythm, streaming chat, offline batch-like jobs, embeddings, errors and an unpriced model. Two ways in:

* ``generate(ledger, catalog, ...)`` builds ``LlmCall`` records, prices them with the real ``PriceCatalog`` and
  writes them through ``storage.Ledger`` (the collector's own write path), so rows and rollups are exactly
  what ingesting the same spans would give. Deterministic for a given ``seed`` and ``now``.
* ``bulk_generate(conn, calls=..., days=...)`` writes millions of rows with one ``INSERT ... SELECT
  generate_series`` per day partition, prices them in SQL from the catalog's rates, and computes the rollups
  in bulk with ``GROUP BY``: for ``bench/query_speed.py``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from llmmeter_collector.ledger.storage import SIGNATURE_KEYS, Ledger, signature_bits
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.pricing import PriceCatalog


@dataclass(frozen=True)
class Workload:
    """One kind of traffic: who calls which model how, and how often (relative weight)."""

    project: str
    feature: str
    provider: str
    model: str
    weight: float
    input_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    operation: str = "chat"
    streaming: bool = False
    users: bool = True
    error_rate: float = 0.01


WORKLOADS: tuple[Workload, ...] = (
    Workload("shop", "search", "openai", "gpt-4o-mini", 30, (300, 1500), (50, 300), streaming=True),
    Workload("shop", "assistant", "openai", "gpt-4o", 12, (800, 6000), (100, 900), streaming=True, error_rate=0.03),
    Workload("shop", "product-embed", "openai", "text-embedding-3-small", 20, (20, 400), (0, 0), "embeddings"),
    Workload("shop", "nightly-report", "anthropic", "claude-sonnet-4-5", 4, (4000, 20000), (500, 3000), users=False),
    Workload("support", "triage", "anthropic", "claude-haiku-4-5", 15, (500, 2500), (20, 200)),
    Workload("support", "reply-draft", "anthropic", "claude-sonnet-4-5", 8, (1500, 8000), (200, 1200), streaming=True),
    Workload("support", "summarise", "gcp.gemini", "gemini-2.5-flash", 10, (2000, 30000), (100, 600)),
    Workload("research", "analysis", "gcp.gemini", "gemini-2.5-pro", 3, (5000, 60000), (500, 4000), users=False),
    Workload("research", "local-llm", "openai", "acme-finetune-7b", 1, (200, 1000), (50, 400)),  # unpriced
)
USERS = tuple(f"user-{i:03d}" for i in range(1, 61))
_ERRORS = ("timeout", "rate_limit_exceeded", "server_error")


def _hex(rng: random.Random, chars: int) -> str:
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def _hour_weight(hour: int) -> float:
    """Office-hours traffic: low at night (UTC), peaking mid-afternoon."""
    return 0.25 + max(0.0, 1.0 - abs(hour - 14) / 8)


def calls(
    count: int, *, days: int = 30, now: datetime | None = None, seed: int = 7, workloads: Sequence[Workload] = WORKLOADS
) -> Iterator[LlmCall]:
    """``count`` calls spread over the last ``days`` days (unpriced; ``generate`` prices them)."""
    rng = random.Random(seed)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    start = now - timedelta(days=days)
    weights = [w.weight for w in workloads]
    hours = [start + timedelta(hours=h) for h in range(days * 24)]
    hour_weights = [_hour_weight(h.hour) for h in hours]
    for _ in range(count):
        w = rng.choices(workloads, weights)[0]
        hour = rng.choices(hours, hour_weights)[0]
        at = hour + timedelta(seconds=rng.uniform(0, 3600))
        if at >= now:
            at = now - timedelta(seconds=rng.uniform(1, 3600))
        failed = rng.random() < w.error_rate
        inp = rng.randint(*w.input_tokens)
        out = 0 if failed and rng.random() < 0.5 else rng.randint(*w.output_tokens)
        cached = inp // 2 if w.provider != "gcp.gemini" and rng.random() < 0.3 and inp > 1024 else 0
        duration = 0.05 + out * rng.uniform(0.005, 0.02)
        start_ns = int(at.timestamp() * 1e9)
        yield LlmCall(
            trace_id=_hex(rng, 32),
            span_id=_hex(rng, 16),
            start_ns=start_ns,
            end_ns=start_ns + int(duration * 1e9),
            provider=w.provider,
            operation=w.operation,
            request_model=w.model,
            service_name=f"{w.project}-app",
            project=w.project,
            feature=w.feature,
            environment="production",
            user_id=rng.choice(USERS) if w.users else "",
            session_id=_hex(rng, 8) if w.users else "",
            usage=Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached),
            streaming=w.streaming,
            status="error" if failed else "ok",
            error_type=rng.choice(_ERRORS) if failed else "",
            retries=rng.randint(1, 2) if failed else 0,
            ttfc_s=duration / 5 if w.streaming else None,
            prompt_fingerprint=hashlib.sha256(f"{w.feature}-{rng.randint(1, 40)}".encode()).hexdigest()[:16],
        )


def generate(
    ledger: Ledger,
    catalog: PriceCatalog,
    count: int = 5000,
    *,
    days: int = 30,
    now: datetime | None = None,
    seed: int = 7,
    batch: int = 2000,
) -> int:
    """Price and write ``count`` generated calls through the ledger; returns the number written."""
    written = 0
    pending: list[LlmCall] = []
    for call in calls(count, days=days, now=now, seed=seed):
        call.cost = catalog.price(call)
        pending.append(call)
        if len(pending) >= batch:
            written += len(ledger.write(pending))
            pending = []
    if pending:
        written += len(ledger.write(pending))
    return written


# ---- bulk generation in SQL (benchmarks) ------------------------------------------------------------------------


def _price_rows(catalog: PriceCatalog, at: datetime) -> list[tuple[Any, ...]]:
    rows = []
    for i, w in enumerate(WORKLOADS):
        rates = catalog.rates(w.provider, w.model, at)
        rows.append(
            (
                i, w.project, w.feature, w.provider, w.model, w.operation, w.streaming, w.users,
                w.input_tokens[0], w.input_tokens[1], w.output_tokens[0], w.output_tokens[1],
                rates.input if rates else None, rates.output if rates else None, w.error_rate,
            )
        )  # fmt: skip
    return rows


def bulk_generate(
    conn: psycopg.Connection[Any],
    catalog: PriceCatalog,
    *,
    calls: int,
    days: int = 30,
    now: datetime | None = None,
    users: int = 60,
    families: int = 3,
) -> None:
    """Fill an empty, migrated schema (the connection's search_path) with ``calls`` rows and their rollups
    (``users`` distinct end users in the workloads that have them; ``families`` prompt families per project, each
    call's signature up to 3 bits from its family's: up to 190,747 distinct signatures a family).

    Token counts are uniform in each workload's range; cost = input x input rate + output x output rate
    (exact numeric, NULL for the unpriced workload). Rollups are computed from the rows with GROUP BY.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    first_day = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    conn.execute(
        """CREATE TEMP TABLE gen_workload (idx int, project text, feature text, provider text, model text,
             operation text, streaming bool, users bool, in_lo int, in_hi int, out_lo int, out_hi int,
             in_rate numeric, out_rate numeric, error_rate float8)"""
    )
    with conn.cursor().copy("COPY gen_workload FROM STDIN") as copy:
        for row in _price_rows(catalog, now):
            copy.write_row(row)
    weights = [w.weight for w in WORKLOADS]
    total = sum(weights)
    bounds, acc = [], 0.0
    for w in weights:
        acc += w / total
        bounds.append(acc)
    pick = (
        "CASE "
        + " ".join(f"WHEN r < {b!r} THEN {i}" for i, b in enumerate(bounds[:-1]))
        + f" ELSE {len(bounds) - 1} END"
    )
    # Secondary indexes are dropped during the load and built once at the end: maintaining them row by row
    # while inserting millions of randomly ordered rows is what makes a bulk load slow.
    secondary = conn.execute(
        """SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
           WHERE t.relname = 'llm_calls' AND t.relnamespace = to_regnamespace(current_schema())
             AND NOT x.indisunique"""
    ).fetchall()
    for name, _ in secondary:
        conn.execute(f"DROP INDEX {name}")
    conn.commit()
    per_day = calls // (days + 1)
    for d in range(days + 1):
        day = first_day + timedelta(days=d)
        n = per_day if d < days else calls - per_day * days
        name = f"llm_calls_p{day:%Y%m%d}"
        upper = day + timedelta(days=1)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF llm_calls"
            f" FOR VALUES FROM ('{day.isoformat()}') TO ('{upper.isoformat()}')"
        )
        span = min(86400.0, (now - day).total_seconds()) if d == days else 86400.0
        conn.execute(
            f"""
            INSERT INTO llm_calls (ts, trace_id, span_id, service_name, project, environment, feature, user_id,
                                   provider, operation, request_model, model, input_tokens, output_tokens,
                                   cost_usd, cost_input_usd, cost_output_usd, price_source, duration_s, status,
                                   error_type, streaming, prompt_fingerprint, template_fingerprint, experiment,
                                   variant, prompt_simhash)
            SELECT ts, md5(g::text || 't' || %(day)s), substr(md5(g::text || 's' || %(day)s), 1, 16),
                   w.project || '-app', w.project, 'production', w.feature,
                   CASE WHEN w.users THEN 'user-' || lpad((1 + (g %% %(users)s))::text, %(width)s, '0') ELSE '' END,
                   w.provider, w.operation, w.model, w.model, it, ot,
                   it * w.in_rate + ot * w.out_rate, it * w.in_rate, ot * w.out_rate,
                   CASE WHEN w.in_rate IS NULL THEN '' ELSE 'catalog' END,
                   0.05 + ot * 0.01, CASE WHEN fail THEN 'error' ELSE 'ok' END,
                   CASE WHEN fail THEN 'timeout' ELSE '' END, w.streaming, substr(md5(w.feature || (g %% 40)), 1, 16),
                   -- a new prompt version every 10 days; a third of the calls in an experiment of their workload,
                   -- two variants; a signature per call: its feature's family base (``families`` per project:
                   -- families across features) with up to 3 bits flipped, as a prompt's variable part does
                   substr(md5(w.feature || 'template' || (%(d)s / 10)), 1, 16),
                   CASE WHEN x.t3 < 0.33 THEN 'exp-' || w.idx ELSE '' END,
                   CASE WHEN x.t3 < 0.33 THEN (CASE WHEN g %% 2 = 0 THEN 'control' ELSE 'b' END) ELSE '' END,
                   lpad(to_hex(('x' || substr(md5(w.project || 'family' || (abs(hashtext(w.feature)) %% %(families)s)),
                                              1, 16))::bit(64)::bigint
                               # (1::bigint << (g * 7 %% 61)::int) # (1::bigint << (g * 13 %% 59)::int)
                               # (1::bigint << (g %% 53)::int)), 16, '0')
            FROM (
                SELECT g, %(day)s::timestamptz + random() * %(span)s * interval '1 second' AS ts,
                       {pick} AS idx, random() AS t1, random() AS t2, random() AS t3
                FROM (SELECT g, random() AS r FROM generate_series(1, %(n)s) g) s
            ) x
            JOIN gen_workload w USING (idx)
            CROSS JOIN LATERAL (SELECT (w.in_lo + floor(x.t1 * (w.in_hi - w.in_lo + 1)))::bigint AS it,
                                       (w.out_lo + floor(x.t2 * (w.out_hi - w.out_lo + 1)))::bigint AS ot,
                                       x.t3 < w.error_rate AS fail) v
            """,
            {
                "day": day,
                "n": n,
                "span": span,
                "d": d,
                "users": users,
                "families": families,
                "width": max(3, len(str(users))),
            },
        )
        conn.commit()
    for _, definition in secondary:
        # pg_get_indexdef names a partitioned index "ON ONLY llm_calls": built so, it would stay an invalid
        # parent-only index and no partition would get one. Without ONLY it is built on every partition.
        conn.execute(definition.replace(" ON ONLY ", " ON ", 1))
        conn.commit()
    dims = "project, environment, provider, model, feature, operation, status"
    for table, unit in (("llm_rollup_minute", "minute"), ("llm_rollup_hour", "hour")):
        conn.execute(
            f"""INSERT INTO {table} (bucket, {dims}, calls, unpriced_calls, input_tokens, output_tokens,
                                     cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, duration_s)
                SELECT date_trunc('{unit}', ts), {dims}, count(*), count(*) FILTER (WHERE cost_usd IS NULL),
                       sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
                       sum(reasoning_tokens), coalesce(sum(cost_usd), 0), sum(duration_s)
                FROM llm_calls GROUP BY 1, {dims}"""
        )
        conn.commit()
    conn.execute(
        """INSERT INTO llm_rollup_user_day (bucket, project, user_id, feature, calls, unpriced_calls,
                                            input_tokens, output_tokens, cost_usd)
           SELECT date_trunc('day', ts), project, user_id, feature, count(*), count(*) FILTER (WHERE cost_usd IS NULL),
                  sum(input_tokens), sum(output_tokens), coalesce(sum(cost_usd), 0)
           FROM llm_calls GROUP BY 1, 2, 3, 4"""
    )
    _prompt_rollups(conn)
    conn.execute("DROP TABLE gen_workload")
    conn.execute("ANALYZE llm_calls")
    conn.execute("ANALYZE llm_rollup_hour")
    conn.commit()


def _prompt_rollups(conn: psycopg.Connection[Any]) -> None:
    """The daily prompt, experiment and signature rollups of the generated calls (as the writer keeps them)."""
    from llmmeter_collector.ledger.storage import LATENCY_BOUNDS

    sums = """count(*), count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE cost_usd IS NULL),
              sum(input_tokens), sum(output_tokens), coalesce(sum(cost_usd), 0), sum(duration_s)"""
    keys = "project, feature, prompt_name, prompt_version, template_fingerprint, model"
    conn.execute(
        f"""INSERT INTO llm_rollup_prompt_day (bucket, {keys}, calls, errors, unpriced_calls, input_tokens,
                                               output_tokens, cost_usd, duration_s, first_seen, last_seen)
            SELECT date_trunc('day', ts), {keys}, {sums}, min(ts), max(ts) FROM llm_calls
            WHERE prompt_name <> '' OR template_fingerprint <> '' GROUP BY 1, {keys}"""
    )
    bounds = "ARRAY[" + ", ".join(str(b) for b in LATENCY_BOUNDS) + "]::float8[]"
    keys = "project, experiment, variant"
    conn.execute(
        f"""WITH b AS (
                SELECT date_trunc('day', ts) AS bucket, {keys}, width_bucket(duration_s, {bounds}) AS i, count(*) AS n
                FROM llm_calls WHERE experiment <> '' GROUP BY 1, 2, 3, 4, 5
            ), h AS (
                SELECT g.bucket, g.project, g.experiment, g.variant, array_agg(coalesce(b.n, 0) ORDER BY k) AS hist
                FROM (SELECT DISTINCT bucket, {keys} FROM b) g CROSS JOIN generate_series(0, {len(LATENCY_BOUNDS)}) k
                LEFT JOIN b ON (b.bucket, b.project, b.experiment, b.variant, b.i)
                             = (g.bucket, g.project, g.experiment, g.variant, k)
                GROUP BY 1, 2, 3, 4
            )
            INSERT INTO llm_rollup_experiment_day (bucket, {keys}, calls, errors, unpriced_calls, input_tokens,
                                                   output_tokens, cost_usd, duration_s, cost_sq, duration_sq, hist)
            SELECT s.*, h.hist FROM (
                SELECT date_trunc('day', ts) AS bucket, {keys}, {sums}, coalesce(sum(cost_usd * cost_usd), 0),
                       sum(duration_s * duration_s)
                FROM llm_calls WHERE experiment <> '' GROUP BY 1, {keys}) s
            JOIN h USING (bucket, project, experiment, variant)"""
    )
    conn.execute(
        """INSERT INTO llm_rollup_experiment_user (experiment, variant, project, user_id, calls, unpriced_calls,
                                                   cost_usd)
           SELECT experiment, variant, project, user_id, count(*), count(*) FILTER (WHERE cost_usd IS NULL),
                  coalesce(sum(cost_usd), 0)
           FROM llm_calls WHERE experiment <> '' AND user_id <> '' GROUP BY 1, 2, 3, 4"""
    )
    conn.execute(
        f"""INSERT INTO llm_rollup_signature_day (bucket, {SIGNATURE_KEYS}, calls, errors, input_tokens,
                                                  cache_read_tokens, output_tokens, cost_usd, duration_s, bits)
           SELECT date_trunc('month', ts), {SIGNATURE_KEYS}, count(*), count(*) FILTER (WHERE status = 'error'),
                  sum(input_tokens), sum(cache_read_tokens), sum(output_tokens), coalesce(sum(cost_usd), 0),
                  sum(duration_s), {signature_bits()}
           FROM (SELECT *, ('x' || prompt_simhash)::bit(64) AS sig FROM llm_calls WHERE prompt_simhash <> '') c
           GROUP BY 1, {SIGNATURE_KEYS}"""
    )
    conn.commit()


def total_cost(rows: Sequence[LlmCall]) -> Decimal:
    """Exact sum of the priced calls' costs (test helper)."""
    return sum((c.cost.total for c in rows if c.cost is not None), Decimal(0))
