"""Savings recommendations computed from the ledger, ranked by monthly savings, each with its evidence.

Every rule reads the priced calls of the window (last 30 days by default) and prices the alternative with the
same ``PriceCatalog`` that priced the calls, so a dollar figure is exact arithmetic on stored token counts:

``model_downgrade``
    A model that has a cheaper sibling in the catalog (``SIBLINGS``; gpt-4o -> gpt-4o-mini, claude-opus-4 ->
    claude-sonnet-4, gemini-2.5-pro -> gemini-2.5-flash, ...) where at least ``SIMPLE_SHARE`` of its calls are
    short and simple: input <= ``SIMPLE_MAX_INPUT`` tokens, output <= ``SIMPLE_MAX_OUTPUT``, no reasoning tokens,
    status ok. Savings = what those calls cost - the same tokens at the sibling's rates.
``prompt_caching``
    The same ``prompt_fingerprint`` sent at least ``CACHE_MIN_REPEATS`` times to a model whose provider sells
    cheaper cache reads (catalog cache-read rate < input rate), prompts of at least ``CACHE_MIN_PREFIX`` tokens,
    and not one cache read among them. The cacheable prefix is taken as the group's smallest prompt. With one
    cache write per hour the fingerprint is seen (a conservative TTL), savings = (calls - hours) x prefix x
    (input rate - cache-read rate) - hours x prefix x (cache-write rate - input rate).
``batch_api``
    A feature (project, feature, provider, model) whose calls are not interactive: none streamed, none already
    batched, and at most ``BATCH_MAX_USER_SHARE`` of them carry an end-user id (offline jobs have no user
    waiting), with at least ``BATCH_MIN_CALLS`` calls. Savings = cost - the same tokens at the catalog's batch
    rates (50 % at OpenAI, Anthropic and Google).
``error_waste``
    Calls that ended in an error but were billed tokens (timeouts mid-stream, failed parses, retried calls):
    savings = their cost, by provider, model and error type, when at least ``ERROR_MIN_CALLS`` calls failed.
``prompt_bloat``
    A feature and model whose average prompt is at least ``BLOAT_MIN_INPUT`` tokens and ``BLOAT_RATIO`` times
    its average output. Savings = uncached input cost x (1 - ``BLOAT_TARGET_RATIO`` x avg output / avg input):
    what trimming prompts to ten times the output would save. Confidence is low: it is an upper bound.
``embedding_batching``
    Embedding calls arriving at least ``EMBED_MIN_BURST`` a minute from one feature: one request per input.
    Sending them together saves requests and rate limit; sending them through the Batch API saves
    cost - batch-rate cost, which is the figure given.
``unpriced_models``
    Models whose calls have no known price: no dollar figure (that is the point), listed last.

Monthly savings = savings in the window x 30 / observed days, where observed days is the window length, or
less when the ledger starts inside the window (never under one day). Fewer than ``MIN_CALLS`` calls in the
window: no recommendations, and the answer says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from llmmeter_collector.insights import similarity
from llmmeter_collector.pricing import PriceCatalog, Rates

MIN_CALLS = 10
SIMPLE_MAX_INPUT = 2000
SIMPLE_MAX_OUTPUT = 300
SIMPLE_SHARE = Decimal("0.5")
SIMPLE_MIN_CALLS = 10
CACHE_MIN_REPEATS = 5
CACHE_MIN_PREFIX = 1024
BATCH_MIN_CALLS = 20
BATCH_MAX_USER_SHARE = Decimal("0.1")
ERROR_MIN_CALLS = 5
BLOAT_MIN_INPUT = 4000
BLOAT_RATIO = 20
BLOAT_TARGET_RATIO = 10
BLOAT_MIN_CALLS = 10
EMBED_MIN_BURST = 5
EMBED_MIN_CALLS = 20
MIN_MONTHLY_SAVINGS = Decimal("0.01")

# Premium model -> the cheaper sibling suggested for its short, simple calls. Keys match the model name
# exactly or followed by a date / version suffix ("gpt-4o-2024-08-06", "claude-opus-4-20250514").
SIBLINGS: dict[str, str] = {
    "gpt-4o": "gpt-4o-mini",
    "chatgpt-4o-latest": "gpt-4o-mini",
    "gpt-4-turbo": "gpt-4o-mini",
    "gpt-4": "gpt-4o-mini",
    "gpt-4.1": "gpt-4.1-mini",
    "gpt-4.1-mini": "gpt-4.1-nano",
    "gpt-5": "gpt-5-mini",
    "gpt-5-mini": "gpt-5-nano",
    "o1": "o3-mini",
    "o3": "o4-mini",
    "claude-3-opus": "claude-3-5-haiku-latest",
    "claude-opus-4": "claude-sonnet-4-20250514",
    "claude-opus-4-1": "claude-sonnet-4-5",
    "claude-3-5-sonnet": "claude-3-5-haiku-latest",
    "claude-3-7-sonnet": "claude-3-5-haiku-latest",
    "claude-sonnet-4": "claude-3-5-haiku-latest",
    "claude-sonnet-4-5": "claude-haiku-4-5",
    "gemini-2.5-pro": "gemini-2.5-flash",
    "gemini-1.5-pro": "gemini-1.5-flash",
    "gemini-2.5-flash": "gemini-2.5-flash-lite",
}


def sibling_of(model: str) -> str | None:
    """The cheaper sibling of ``model``, matching the longest key that is the model or a dated version of it."""
    name = model.lower().rsplit("/", 1)[-1]
    best = None
    for key, cheaper in SIBLINGS.items():
        dated = name.startswith(key + "-") and name[len(key) + 1 : len(key) + 2].isdigit()
        if (name == key or dated) and (best is None or len(key) > len(best[0])):
            best = (key, cheaper)
    if best is None or best[1] == name:
        return None
    return best[1]


@dataclass(frozen=True)
class Tokens:
    """Summed token counts of a set of calls: enough to price them again at other rates."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0

    def cost(self, rates: Rates) -> Decimal:
        """The tokens at ``rates`` (base rates; the short calls these are used for are below any tier)."""
        uncached = max(0, self.input - self.cache_read - self.cache_write)
        return (
            uncached * rates.input
            + self.cache_read * rates.cache_read
            + self.cache_write * rates.cache_write_5m
            + self.output * rates.output
        )


@dataclass
class Recommendation:
    kind: str
    title: str
    action: str
    monthly_savings: Decimal | None
    confidence: str  # high, medium, low
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "action": self.action,
            "monthly_savings_usd": None if self.monthly_savings is None else _money(self.monthly_savings),
            "confidence": self.confidence,
            "evidence": self.evidence,
        }


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.000001")).normalize(), "f") if value else "0"


def _scope(visible: Sequence[str] | None, project: str | None) -> tuple[str, dict[str, Any]]:
    where = "ts >= %(since)s AND ts < %(until)s"
    params: dict[str, Any] = {}
    if project is not None:
        where += " AND project = %(project)s"
        params["project"] = project
    if visible is not None:
        where += " AND project = ANY(%(visible)s)"
        params["visible"] = list(visible)
    return where, params


class Insights:
    """Runs every rule over one window of the ledger."""

    def __init__(
        self,
        pool: ConnectionPool,
        catalog: PriceCatalog,
        *,
        days: int = 30,
        now: datetime | None = None,
        project: str | None = None,
        visible_projects: Sequence[str] | None = None,
    ) -> None:
        self.pool = pool
        self.catalog = catalog
        self.days = days
        self.now = now or datetime.now(timezone.utc)
        self.since = self.now - timedelta(days=days)
        self.where, params = _scope(visible_projects, project)
        self.projects: Sequence[str] | None = [project] if project is not None else visible_projects
        self.params = {**params, "since": self.since, "until": self.now}
        self.factor = Decimal(30)

    def _rows(self, query: str, **extra: Any) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query.replace("{where}", self.where), {**self.params, **extra}).fetchall()

    def _monthly(self, amount: Decimal) -> Decimal:
        return amount * self.factor

    def _rates(self, provider: str, model: str, *, batch: bool = False) -> Rates | None:
        return self.catalog.rates(provider, model, self.now, batch=batch)

    def run(self) -> dict[str, Any]:
        """Recommendations ranked by monthly savings (unpriced models last), and the window they cover."""
        stats = self._rows(
            """SELECT count(*) AS calls, min(ts) AS first_ts, coalesce(sum(cost_usd), 0) AS cost
               FROM llm_calls WHERE {where}"""
        )[0]
        everything = self.where.replace("ts >= %(since)s AND ", "")  # the ledger's start, before the window too
        first_all = self._rows(f"SELECT min(ts) AS first_ts FROM llm_calls WHERE {everything}")[0]["first_ts"]
        observed = self.days * 86400.0
        if first_all is not None and first_all > self.since:
            observed = max(86400.0, (self.now - first_all).total_seconds())
        observed_days = Decimal(str(round(observed / 86400.0, 6)))
        self.factor = Decimal(30) / observed_days
        answer: dict[str, Any] = {
            "window_days": self.days,
            "observed_days": format(observed_days.normalize(), "f"),
            "since": self.since.isoformat(),
            "until": self.now.isoformat(),
            "calls": int(stats["calls"]),
            "cost_usd": format(stats["cost"], "f"),
            "min_calls": MIN_CALLS,
            "recommendations": [],
        }
        if stats["calls"] < MIN_CALLS:
            answer["message"] = (
                f"not enough data: {stats['calls']} calls in the last {self.days} days; "
                f"recommendations need at least {MIN_CALLS}"
            )
            return answer
        found: list[Recommendation] = []
        for rule in (
            self.model_downgrade,
            self.prompt_caching,
            self.batch_api,
            self.error_waste,
            self.prompt_bloat,
            self.embedding_batching,
            self.shared_prefix,
            self.family_downgrade,
        ):
            found += [r for r in rule() if r.monthly_savings is not None and r.monthly_savings >= MIN_MONTHLY_SAVINGS]
        found.sort(key=lambda r: r.monthly_savings or Decimal(0), reverse=True)
        found += self.unpriced_models()
        answer["recommendations"] = [r.as_json() for r in found]
        answer["message"] = f"{len(found)} recommendations" if found else "no savings found: nothing to change"
        return answer

    # ---- rules -----------------------------------------------------------------------------------------------

    def model_downgrade(self) -> list[Recommendation]:
        rows = self._rows(
            """SELECT provider, model, count(*) AS calls,
                      count(*) FILTER (WHERE simple) AS simple_calls,
                      coalesce(sum(cost_usd) FILTER (WHERE simple), 0) AS simple_cost,
                      coalesce(sum(input_tokens) FILTER (WHERE simple), 0) AS input,
                      coalesce(sum(cache_read_tokens) FILTER (WHERE simple), 0) AS cache_read,
                      coalesce(sum(cache_write_tokens) FILTER (WHERE simple), 0) AS cache_write,
                      coalesce(sum(output_tokens) FILTER (WHERE simple), 0) AS output
               FROM (SELECT *, (input_tokens <= %(max_in)s AND output_tokens <= %(max_out)s
                                AND reasoning_tokens = 0 AND status = 'ok' AND NOT batch) AS simple
                     FROM llm_calls WHERE {where} AND cost_usd IS NOT NULL
                       AND operation NOT IN ('embeddings', 'embedding')) c
               GROUP BY provider, model""",
            max_in=SIMPLE_MAX_INPUT,
            max_out=SIMPLE_MAX_OUTPUT,
        )
        out = []
        for row in rows:
            cheaper = sibling_of(row["model"])
            if cheaper is None or row["simple_calls"] < SIMPLE_MIN_CALLS:
                continue
            share = Decimal(row["simple_calls"]) / Decimal(row["calls"])
            if share < SIMPLE_SHARE:
                continue
            rates = self._rates(row["provider"], cheaper)
            if rates is None:
                continue
            tokens = Tokens(int(row["input"]), int(row["cache_read"]), int(row["cache_write"]), int(row["output"]))
            saved = row["simple_cost"] - tokens.cost(rates)
            if saved <= 0:
                continue
            out.append(
                Recommendation(
                    "model_downgrade",
                    f"Route short, simple {row['model']} calls to {cheaper}",
                    f"{row['simple_calls']} of {row['calls']} {row['model']} calls had at most {SIMPLE_MAX_INPUT} "
                    f"input and {SIMPLE_MAX_OUTPUT} output tokens; send such calls to {cheaper}.",
                    self._monthly(saved),
                    "high" if share >= Decimal("0.8") else "medium",
                    {
                        "provider": row["provider"],
                        "model": row["model"],
                        "suggested_model": cheaper,
                        "calls": int(row["calls"]),
                        "simple_calls": int(row["simple_calls"]),
                        "simple_share": _ratio(share),
                        "simple_calls_cost_usd": _money(row["simple_cost"]),
                        "cost_at_suggested_model_usd": _money(tokens.cost(rates)),
                        "window_savings_usd": _money(saved),
                    },
                )
            )
        return out

    def _families(self) -> list[similarity.Family]:
        if not hasattr(self, "_family_cache"):
            self._family_cache = similarity.families(
                self.pool, since=self.since, until=self.now, projects=self.projects
            )
        return self._family_cache

    def shared_prefix(self) -> list[Recommendation]:
        """Near-identical prompts (one SimHash family) sent by several features: the common part, cached once,
        costs the cache-read rate in each of them. Estimated: the shared share of the uncached input is taken
        as the family's similarity."""
        out = []
        for family in self._families():
            described = similarity.family_json(family)
            features = described["features"]
            if len(features) < 2:
                continue
            share = Decimal(str(described["similarity"]))
            saved = Decimal(0)
            for m in family.members:
                rates = self._rates("", m.model)
                if rates is None or rates.cache_read >= rates.input:
                    continue
                uncached = max(0, m.input_tokens - m.cache_read_tokens)
                saved += uncached * share * (rates.input - rates.cache_read)
            if saved <= 0:
                continue
            out.append(
                Recommendation(
                    "shared_prefix",
                    f"{len(features)} features send {described['similarity'] * 100:.0f} %-similar prompts",
                    f"{', '.join(features)} send near-identical prompts (one SimHash family): share one prompt prefix "
                    "and cache it, so each of them pays the cache-read rate for the common part.",
                    self._monthly(saved),
                    "low",
                    {"family": described},
                )
            )
        return out

    def family_downgrade(self) -> list[Recommendation]:
        """The same prompt family on several models: where a cheaper one answers it with no more errors, the
        calls on the dearer ones could move to it."""
        out = []
        for family in self._families():
            described = similarity.family_json(family)
            by_model: dict[str, dict[str, Any]] = {}
            for m in described["members"]:
                row = by_model.setdefault(m["model"], {"calls": 0, "cost": Decimal(0), "errors": 0.0})
                row["calls"] += m["calls"]
                row["cost"] += Decimal(m["cost_usd"])
                row["errors"] += m["error_rate"] * m["calls"]
            if len(by_model) < 2:
                continue
            per_call = {model: r["cost"] / r["calls"] for model, r in by_model.items()}
            errors = {model: r["errors"] / r["calls"] for model, r in by_model.items()}
            cheapest = min(per_call, key=lambda model: per_call[model])
            saved = Decimal(0)
            dearer = []
            for model, r in by_model.items():
                if model != cheapest and errors[cheapest] <= errors[model] + 0.01:
                    saved += r["calls"] * (per_call[model] - per_call[cheapest])
                    dearer.append(model)
            if saved <= 0:
                continue
            calls = min(r["calls"] for r in by_model.values())
            out.append(
                Recommendation(
                    "family_downgrade",
                    f"The same prompts run on {', '.join(dearer)} and on the cheaper {cheapest}",
                    f"One family of near-identical prompts is answered by {cheapest} at "
                    f"${per_call[cheapest]:.6f} a call with no more errors than by {', '.join(dearer)}: move those "
                    "calls to it (compare the answers first: an experiment).",
                    self._monthly(saved),
                    "medium" if calls >= 100 else "low",
                    {"family": described},
                )
            )
        return out

    def prompt_caching(self) -> list[Recommendation]:
        rows = self._rows(
            """SELECT provider, model, prompt_fingerprint, count(*) AS calls, min(input_tokens) AS prefix,
                      count(DISTINCT date_trunc('hour', ts)) AS hours
               FROM llm_calls WHERE {where} AND prompt_fingerprint <> '' AND cost_usd IS NOT NULL
               GROUP BY provider, model, prompt_fingerprint
               HAVING count(*) >= %(repeats)s AND sum(cache_read_tokens) = 0 AND min(input_tokens) >= %(prefix)s""",
            repeats=CACHE_MIN_REPEATS,
            prefix=CACHE_MIN_PREFIX,
        )
        by_model: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            by_model.setdefault((row["provider"], row["model"]), []).append(row)
        out = []
        for (provider, model), groups in by_model.items():
            rates = self._rates(provider, model)
            if rates is None or rates.cache_read >= rates.input:
                continue  # this provider/model sells no cheaper cache reads
            saved = Decimal(0)
            for g in groups:
                reads = int(g["calls"]) - int(g["hours"])
                saved += reads * int(g["prefix"]) * (rates.input - rates.cache_read)
                saved -= int(g["hours"]) * int(g["prefix"]) * (rates.cache_write_5m - rates.input)
            if saved <= 0:
                continue
            groups.sort(key=lambda g: int(g["calls"]) * int(g["prefix"]), reverse=True)
            repeated = sum(int(g["calls"]) for g in groups)
            out.append(
                Recommendation(
                    "prompt_caching",
                    f"Cache the repeated prompts sent to {model}",
                    f"{len(groups)} prompts were each sent {CACHE_MIN_REPEATS}+ times to {model} with no cache "
                    "reads: put the shared prefix first and mark it cacheable (Anthropic cache_control, "
                    "OpenAI/Gemini prefix caching needs a stable prefix of 1024+ tokens).",
                    self._monthly(saved),
                    "high",
                    {
                        "provider": provider,
                        "model": model,
                        "repeated_prompts": len(groups),
                        "calls": repeated,
                        "cache_read_tokens": 0,
                        "top_prompts": [
                            {
                                "fingerprint": g["prompt_fingerprint"],
                                "calls": int(g["calls"]),
                                "prefix_tokens": int(g["prefix"]),
                            }
                            for g in groups[:5]
                        ],
                        "window_savings_usd": _money(saved),
                    },
                )
            )
        return out

    def batch_api(self) -> list[Recommendation]:
        rows = self._rows(
            """SELECT project, feature, provider, model, count(*) AS calls, sum(cost_usd) AS cost,
                      count(*) FILTER (WHERE user_id <> '') AS with_user,
                      sum(input_tokens) AS input, sum(cache_read_tokens) AS cache_read,
                      sum(cache_write_tokens) AS cache_write, sum(output_tokens) AS output
               FROM llm_calls WHERE {where} AND cost_usd IS NOT NULL AND status = 'ok'
               GROUP BY project, feature, provider, model
               HAVING count(*) >= %(min_calls)s AND bool_and(NOT streaming) AND bool_and(NOT batch)
                  AND count(*) FILTER (WHERE user_id <> '') <= %(max_share)s * count(*)""",
            min_calls=BATCH_MIN_CALLS,
            max_share=BATCH_MAX_USER_SHARE,
        )
        out = []
        for row in rows:
            rates = self._rates(row["provider"], row["model"], batch=True)
            standard = self._rates(row["provider"], row["model"])
            if rates is None or standard is None or rates.input >= standard.input:
                continue
            tokens = Tokens(int(row["input"]), int(row["cache_read"]), int(row["cache_write"]), int(row["output"]))
            batch_cost = tokens.cost(rates)
            saved = row["cost"] - batch_cost
            if saved <= 0:
                continue
            feature = row["feature"] or "(no feature)"
            out.append(
                Recommendation(
                    "batch_api",
                    f"Run feature {feature} through the {row['provider']} Batch API",
                    f"{row['calls']} {row['model']} calls of feature {feature} (project {row['project'] or '-'}) "
                    "were not streamed and had no end user waiting: submit them as a batch job (results "
                    "within 24 h at about half price).",
                    self._monthly(saved),
                    "medium",
                    {
                        "project": row["project"],
                        "feature": row["feature"],
                        "provider": row["provider"],
                        "model": row["model"],
                        "calls": int(row["calls"]),
                        "streamed_calls": 0,
                        "calls_with_user": int(row["with_user"]),
                        "cost_usd": _money(row["cost"]),
                        "cost_at_batch_rates_usd": _money(batch_cost),
                        "window_savings_usd": _money(saved),
                    },
                )
            )
        return out

    def error_waste(self) -> list[Recommendation]:
        rows = self._rows(
            """SELECT provider, model, error_type, count(*) AS calls, sum(cost_usd) AS cost,
                      sum(retries) AS retries
               FROM llm_calls WHERE {where} AND status = 'error' AND cost_usd > 0
               GROUP BY provider, model, error_type HAVING count(*) >= %(min_calls)s""",
            min_calls=ERROR_MIN_CALLS,
        )
        out = []
        for row in rows:
            kind = row["error_type"] or "unknown error"
            out.append(
                Recommendation(
                    "error_waste",
                    f"Stop paying for failed {row['model']} calls ({kind})",
                    f"{row['calls']} {row['model']} calls ended in {kind} after tokens were billed: fix the cause, "
                    "shorten timeouts for long generations, and retry with backoff only on retryable errors.",
                    self._monthly(row["cost"]),
                    "high",
                    {
                        "provider": row["provider"],
                        "model": row["model"],
                        "error_type": row["error_type"],
                        "failed_calls": int(row["calls"]),
                        "retries": int(row["retries"] or 0),
                        "window_cost_usd": _money(row["cost"]),
                    },
                )
            )
        return out

    def prompt_bloat(self) -> list[Recommendation]:
        rows = self._rows(
            """SELECT project, feature, provider, model, count(*) AS calls,
                      avg(input_tokens) AS avg_in, avg(output_tokens) AS avg_out,
                      coalesce(sum(cost_input_usd), 0) AS input_cost
               FROM llm_calls WHERE {where} AND cost_usd IS NOT NULL AND status = 'ok'
                 AND operation NOT IN ('embeddings', 'embedding')
               GROUP BY project, feature, provider, model
               HAVING count(*) >= %(min_calls)s AND avg(input_tokens) >= %(min_in)s
                  AND avg(input_tokens) >= %(ratio)s * greatest(avg(output_tokens), 1)""",
            min_calls=BLOAT_MIN_CALLS,
            min_in=BLOAT_MIN_INPUT,
            ratio=BLOAT_RATIO,
        )
        out = []
        for row in rows:
            avg_in, avg_out = Decimal(row["avg_in"]), Decimal(row["avg_out"])
            keep = min(Decimal(1), BLOAT_TARGET_RATIO * max(avg_out, Decimal(1)) / avg_in)
            saved = row["input_cost"] * (1 - keep)
            if saved <= 0:
                continue
            feature = row["feature"] or "(no feature)"
            out.append(
                Recommendation(
                    "prompt_bloat",
                    f"Trim the prompts of feature {feature} on {row['model']}",
                    f"Prompts average {avg_in:.0f} tokens for {avg_out:.0f} tokens out: drop unused context, "
                    "retrieve fewer chunks, summarise history. The figure assumes prompts cut to 10x the output.",
                    self._monthly(saved),
                    "low",
                    {
                        "project": row["project"],
                        "feature": row["feature"],
                        "provider": row["provider"],
                        "model": row["model"],
                        "calls": int(row["calls"]),
                        "avg_input_tokens": round(float(avg_in), 1),
                        "avg_output_tokens": round(float(avg_out), 1),
                        "input_cost_usd": _money(row["input_cost"]),
                        "window_savings_usd": _money(saved),
                    },
                )
            )
        return out

    def embedding_batching(self) -> list[Recommendation]:
        rows = self._rows(
            """SELECT project, feature, provider, model, count(*) AS calls, count(DISTINCT minute) AS minutes,
                      sum(cost) AS cost, sum(input) AS input
               FROM (SELECT project, feature, provider, model, date_trunc('minute', ts) AS minute,
                            cost_usd AS cost, input_tokens AS input,
                            count(*) OVER (PARTITION BY project, feature, provider, model,
                                           date_trunc('minute', ts)) AS per_minute
                     FROM llm_calls WHERE {where} AND operation IN ('embeddings', 'embedding')
                       AND cost_usd IS NOT NULL AND NOT batch) e
               WHERE per_minute >= %(burst)s
               GROUP BY project, feature, provider, model HAVING count(*) >= %(min_calls)s""",
            burst=EMBED_MIN_BURST,
            min_calls=EMBED_MIN_CALLS,
        )
        out = []
        for row in rows:
            rates = self._rates(row["provider"], row["model"], batch=True)
            if rates is None:
                continue
            batch_cost = Tokens(input=int(row["input"])).cost(rates)
            saved = row["cost"] - batch_cost
            if saved <= 0:
                continue
            feature = row["feature"] or "(no feature)"
            per_minute = Decimal(row["calls"]) / Decimal(row["minutes"])
            out.append(
                Recommendation(
                    "embedding_batching",
                    f"Batch the {row['model']} embeddings of feature {feature}",
                    f"{row['calls']} embedding calls came in bursts of about {per_minute:.0f} a minute, one input "
                    "each: send the inputs of a burst in one request (fewer requests, more rate-limit headroom), "
                    "or through the Batch API for half the price when they are not needed at once.",
                    self._monthly(saved),
                    "medium",
                    {
                        "project": row["project"],
                        "feature": row["feature"],
                        "provider": row["provider"],
                        "model": row["model"],
                        "calls": int(row["calls"]),
                        "burst_minutes": int(row["minutes"]),
                        "cost_usd": _money(row["cost"]),
                        "cost_at_batch_rates_usd": _money(batch_cost),
                        "window_savings_usd": _money(saved),
                    },
                )
            )
        return out

    def unpriced_models(self) -> list[Recommendation]:
        rows = self._rows(
            """SELECT provider, model, count(*) AS calls, sum(input_tokens) AS input, sum(output_tokens) AS output
               FROM llm_calls WHERE {where} AND cost_usd IS NULL
               GROUP BY provider, model ORDER BY count(*) DESC"""
        )
        return [
            Recommendation(
                "unpriced_models",
                f"Add a price for {row['provider']}/{row['model']}",
                f"{row['calls']} calls of {row['model']} have no known price, so their cost is missing from "
                "every total: add the model to the prices overrides file (see `llmmeter prices check`).",
                None,
                "high",
                {
                    "provider": row["provider"],
                    "model": row["model"],
                    "calls": int(row["calls"]),
                    "input_tokens": int(row["input"]),
                    "output_tokens": int(row["output"]),
                },
            )
            for row in rows
        ]


def _ratio(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.0001")), "f")


def recommend(
    pool: ConnectionPool,
    catalog: PriceCatalog,
    *,
    days: int = 30,
    now: datetime | None = None,
    project: str | None = None,
    visible_projects: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Ranked recommendations for the last ``days`` days (see the module docstring for every rule)."""
    return Insights(pool, catalog, days=days, now=now, project=project, visible_projects=visible_projects).run()
