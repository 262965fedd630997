"""A/B experiments: each variant against the control, with confidence intervals and significance tests.

Calls carry ``llmmeter.experiment`` and ``llmmeter.variant`` (``llmmeter.attributes(experiment=..., variant=...)``).
The daily experiment rollups keep, per variant and end user, the sums and sums of squares of cost and latency and
a latency histogram, so every statistic below is computed without reading the calls:

* cost per call and latency: Welch's t-test (unequal variances) from the variants' means and variances, with a 95 %
  confidence interval of the difference (Welch-Satterthwaite degrees of freedom);
* cost per user: Welch's t-test over the users' totals over the experiment's whole life (a per-user rollup without
  days: ``since`` / ``until`` do not narrow it; calls without a user are left out of this one);
* error rate: a two-proportion test (chi-squared without continuity correction; Fisher's exact test when an
  expected count is under 5), with Wilson intervals;
* several variants: the p-values of each metric are adjusted with Holm's method (family-wise error 5 %);
* latency p50 / p95 are read off the histogram (linear within a bucket: an estimate, see ``LATENCY_BOUNDS``).

A variant with fewer than ``MIN_CALLS`` calls (or ``MIN_USERS`` users for the per-user test) gets a warning: its
result is reported, but it is too small to trust. The distributions are scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool
from scipy import stats

from llmmeter_collector.insights import daily
from llmmeter_collector.ledger.storage import LATENCY_BOUNDS

ALPHA = 0.05
MIN_CALLS = 100
MIN_USERS = 30
CONTROL_NAMES = ("control", "baseline", "a", "A")


@dataclass(frozen=True)
class Sample:
    """A metric of one variant, as its sufficient statistics: count, mean and sample variance."""

    n: int
    mean: float
    var: float

    @classmethod
    def from_sums(cls, n: int, total: float, squares: float) -> Sample:
        if n == 0:
            return cls(0, math.nan, math.nan)
        mean = total / n
        var = max(0.0, (squares - n * mean * mean) / (n - 1)) if n > 1 else math.nan
        return cls(n, mean, var)

    def interval(self) -> tuple[float, float] | None:
        """95 % confidence interval of the mean (Student's t)."""
        if self.n < 2 or math.isnan(self.var):
            return None
        half = stats.t.ppf(1 - ALPHA / 2, self.n - 1) * math.sqrt(self.var / self.n)
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class Comparison:
    """A variant's metric against the control's: the difference, its interval, the test's p-value."""

    difference: float  # variant mean - control mean (error rate: proportion difference)
    relative: float | None  # difference / control mean
    interval: tuple[float, float] | None
    p_value: float
    adjusted_p: float = math.nan
    test: str = ""

    @property
    def significant(self) -> bool:
        return self.adjusted_p < ALPHA


def welch(control: Sample, variant: Sample) -> Comparison | None:
    """Welch's t-test of the two means, with the 95 % interval of their difference."""
    if control.n < 2 or variant.n < 2 or math.isnan(control.var) or math.isnan(variant.var):
        return None
    difference = variant.mean - control.mean
    relative = difference / control.mean if control.mean else None
    a, b = control.var / control.n, variant.var / variant.n
    if a + b == 0:  # no spread at all: equal means are the same, different means are certainly different
        return Comparison(difference, relative, (difference, difference), 1.0 if difference == 0 else 0.0, test="welch")
    result = stats.ttest_ind_from_stats(
        variant.mean, math.sqrt(variant.var), variant.n, control.mean, math.sqrt(control.var), control.n,
        equal_var=False,
    )  # fmt: skip
    df = (a + b) ** 2 / (a * a / (control.n - 1) + b * b / (variant.n - 1))
    half = stats.t.ppf(1 - ALPHA / 2, df) * math.sqrt(a + b)
    return Comparison(difference, relative, (difference - half, difference + half), float(result.pvalue), test="welch")


def proportions(control: tuple[int, int], variant: tuple[int, int]) -> Comparison | None:
    """Two-proportion test of (events, trials): chi-squared, or Fisher's exact test for small expected counts."""
    (e1, n1), (e2, n2) = control, variant
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = e1 / n1, e2 / n2
    table = [[e1, n1 - e1], [e2, n2 - e2]]
    events, total = e1 + e2, n1 + n2
    if events == 0 or events == total:  # nothing (or everything) failed in both: no difference to test
        p_value, test = 1.0, "none"
    elif min(n1, n2) * min(events, total - events) / total < 5:
        p_value, test = float(stats.fisher_exact(table).pvalue), "fisher"
    else:
        p_value, test = float(stats.chi2_contingency(table, correction=False).pvalue), "chi2"
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    z = stats.norm.ppf(1 - ALPHA / 2)
    return Comparison(p2 - p1, (p2 - p1) / p1 if p1 else None, (p2 - p1 - z * se, p2 - p1 + z * se), p_value, test=test)


def holm(comparisons: Sequence[Comparison | None]) -> list[Comparison | None]:
    """Holm's step-down adjustment of the comparisons' p-values (family-wise error ALPHA)."""
    present = sorted((c.p_value, i) for i, c in enumerate(comparisons) if c is not None)
    m = len(present)
    adjusted: dict[int, float] = {}
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return [
        None if c is None else Comparison(c.difference, c.relative, c.interval, c.p_value, adjusted[i], c.test)
        for i, c in enumerate(comparisons)
    ]


def _wilson(events: int, trials: int) -> tuple[float, float] | None:
    if trials == 0:
        return None
    ci = stats.binomtest(events, trials).proportion_ci(confidence_level=1 - ALPHA, method="wilson")
    return float(ci.low), float(ci.high)


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The q-quantile of a latency histogram (linear within the bucket; the open last bucket reports its bound)."""
    total = sum(hist)
    if total == 0:
        return None
    target = q * total
    seen = 0
    lower = 0.0
    for i, count in enumerate(hist):
        upper = LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1]
        if count and seen + count >= target:
            if i >= len(LATENCY_BOUNDS):
                return float(LATENCY_BOUNDS[-1])
            return lower + (upper - lower) * (target - seen) / count
        seen += count
        lower = upper
    return float(LATENCY_BOUNDS[-1])


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict(variant: str, cost: Comparison | None, latency: Comparison | None, errors: Comparison | None) -> str:
    """A plain sentence: 'variant B costs 31 % less per call, p < 0.001; latency difference not significant; ...'."""
    parts = []
    if cost is None:
        parts.append("cost per call: not enough priced calls")
    elif cost.significant and cost.relative is not None:
        more = "more" if cost.difference > 0 else "less"
        parts.append(
            f"variant {variant} costs {abs(cost.relative) * 100:.0f} % {more} per call, {_p_text(cost.adjusted_p)}"
        )
    else:
        parts.append(f"cost per call difference not significant ({_p_text(cost.adjusted_p)})")
    if latency is None:
        parts.append("latency: not enough calls")
    elif latency.significant and latency.relative is not None:
        higher = "higher" if latency.difference > 0 else "lower"
        parts.append(f"latency {abs(latency.relative) * 100:.0f} % {higher}, {_p_text(latency.adjusted_p)}")
    else:
        parts.append(f"latency difference not significant ({_p_text(latency.adjusted_p)})")
    if errors is not None and errors.significant:
        parts.append(f"error rate {errors.difference * 100:+.1f} points, {_p_text(errors.adjusted_p)}")
    elif errors is not None:
        parts.append(f"error rate difference not significant ({_p_text(errors.adjusted_p)})")
    return "; ".join(parts)


def _comparison_json(c: Comparison | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "difference": c.difference, "relative": c.relative,
        "interval": list(c.interval) if c.interval else None, "p_value": c.p_value, "adjusted_p_value": c.adjusted_p,
        "significant": c.significant, "test": c.test,
    }  # fmt: skip


def _sample_json(s: Sample) -> dict[str, Any]:
    interval = s.interval()
    return {"n": s.n, "mean": None if math.isnan(s.mean) else s.mean, "interval": list(interval) if interval else None}


def experiments(
    pool: ConnectionPool, since: datetime | None = None, until: datetime | None = None,
    projects: Sequence[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every experiment with its variants, calls, spend and first and last day."""
    where, params = daily.where(since, until, projects)
    with pool.connection() as conn:
        rows = conn.execute(
            f"""SELECT experiment, array_agg(DISTINCT variant ORDER BY variant), sum(calls), sum(cost_usd),
                       min(bucket), max(bucket)
                FROM llm_rollup_experiment_day WHERE {where} AND calls > 0 GROUP BY 1 ORDER BY max(bucket) DESC, 1""",
            params,
        ).fetchall()
    return [
        {"experiment": e, "variants": list(v), "calls": int(c), "cost_usd": format(usd, "f"),
         "first_day": lo.date().isoformat(), "last_day": hi.date().isoformat()}
        for e, v, c, usd, lo, hi in rows
    ]  # fmt: skip


def analyse(
    pool: ConnectionPool,
    experiment: str,
    *,
    control: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    projects: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Each variant's figures and its comparisons with the control; None when the experiment has no calls."""
    where, params = daily.where(since, until, projects, experiment=experiment)
    users_where, users_params = daily.where(None, None, projects, experiment=experiment)  # the whole experiment
    with pool.connection() as conn:
        per_variant = conn.execute(
            f"""SELECT variant, sum(calls), sum(errors), sum(unpriced_calls), sum(input_tokens), sum(output_tokens),
                       sum(cost_usd), sum(cost_sq), sum(duration_s), sum(duration_sq)
                FROM llm_rollup_experiment_day WHERE {where} GROUP BY 1 HAVING sum(calls) > 0 ORDER BY 1""",
            params,
        ).fetchall()
        per_user = {
            v: Sample(int(n), float(mean), float(var) if var is not None else math.nan)
            for v, n, mean, var in conn.execute(
                f"""SELECT variant, count(*), avg(total), var_samp(total) FROM (
                        SELECT variant, user_id, sum(cost_usd) AS total FROM llm_rollup_experiment_user
                        WHERE {users_where} GROUP BY 1, 2) t GROUP BY 1""",
                users_params,
            )
        }
        hists: dict[str, list[int]] = {}
        for variant, hist in conn.execute(f"SELECT variant, hist FROM llm_rollup_experiment_day WHERE {where}", params):
            acc = hists.setdefault(variant, [0] * len(hist))
            for i, count in enumerate(hist):
                acc[i] += count
    if not per_variant:
        return None
    variants = [r[0] for r in per_variant]
    chosen = control if control is not None else next((c for c in CONTROL_NAMES if c in variants), variants[0])
    if chosen not in variants:
        raise ValueError(f"control: no variant {chosen!r} in experiment {experiment!r} ({', '.join(variants)})")
    figures: dict[str, dict[str, Any]] = {}
    samples: dict[str, dict[str, Any]] = {}
    for v, calls, errors, unpriced, inp, out, cost, cost_sq, dur, dur_sq in per_variant:
        calls = int(calls)
        priced = calls - int(unpriced)
        cost_call = Sample.from_sums(priced, float(cost), float(cost_sq))
        latency = Sample.from_sums(calls, float(dur), float(dur_sq))
        user = per_user.get(v, Sample(0, math.nan, math.nan))
        samples[v] = {"cost": cost_call, "latency": latency, "user": user, "errors": (int(errors), calls)}
        hist = hists.get(v, [])
        warnings = []
        if calls < MIN_CALLS:
            warnings.append(f"only {calls} calls: at least {MIN_CALLS} are needed before trusting a difference")
        if 0 < user.n < MIN_USERS:
            warnings.append(f"only {user.n} users: the per-user comparison needs at least {MIN_USERS}")
        if unpriced:
            warnings.append(f"{unpriced} calls without a price are left out of the cost figures")
        figures[v] = {
            "variant": v, "control": v == chosen, "calls": calls, "users": user.n,
            "cost_usd": format(cost, "f"), "cost_per_call": _sample_json(cost_call),
            "cost_per_user": _sample_json(user),
            "input_tokens_per_call": int(inp) / calls, "output_tokens_per_call": int(out) / calls,
            "latency_s": _sample_json(latency), "latency_p50_s": percentile(hist, 0.5) if hist else None,
            "latency_p95_s": percentile(hist, 0.95) if hist else None,
            "error_rate": int(errors) / calls, "error_rate_interval": _wilson(int(errors), calls),
            "warnings": warnings,
        }  # fmt: skip
    others = [v for v in variants if v != chosen]
    base = samples[chosen]
    metrics = {
        "cost_per_call": holm([welch(base["cost"], samples[v]["cost"]) for v in others]),
        "cost_per_user": holm([welch(base["user"], samples[v]["user"]) for v in others]),
        "latency": holm([welch(base["latency"], samples[v]["latency"]) for v in others]),
        "error_rate": holm([proportions(base["errors"], samples[v]["errors"]) for v in others]),
    }
    verdicts = []
    for i, v in enumerate(others):
        figures[v]["against_control"] = {name: _comparison_json(found[i]) for name, found in metrics.items()}
        found = verdict(v, metrics["cost_per_call"][i], metrics["latency"][i], metrics["error_rate"][i])
        verdicts.append(f"{v} against {chosen}: {found}")
    return {
        "experiment": experiment,
        "control": chosen,
        "variants": [figures[v] for v in variants],
        "verdict": verdicts,
        "alpha": ALPHA,
        "method": "Welch's t-test (cost per call, cost per user, latency), two-proportion test (error rate), "
        "Holm's adjustment across variants",
        "per_user_scope": "the whole experiment",
    }
