"""Spend anomalies: hours and days whose spend is far outside their trailing baseline, per project and feature.

Method (robust to the spikes it looks for): for every (project, feature) series and every bucket of the
evaluation window, the baseline is the bucket's trailing history (hourly: the previous 7 x 24 hours; daily: the
previous 28 days; never before the series' first spend), missing buckets counting as $0.
Its centre is the median and its spread the median absolute deviation scaled to a standard deviation
(1.4826 x MAD), floored at 10 % of the median and at ``min_usd`` / 4 so a flat series does not make every
cent an anomaly. A bucket is anomalous when

    |spend - median| >= threshold x spread   and   |spend - median| >= min_usd

(``threshold`` default 5, ``min_usd`` default $1). Spikes and drops are both reported (a drop to zero is often
an outage or a broken integration). The current, unfinished bucket is checked for spikes only. A bucket needs
at least half of its baseline window after the series' first spend, so a brand-new feature is not a "spike".
Evaluation windows: the last 48 hours, the last 14 days.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Granularity:
    name: str  # "hour" or "day"
    step: timedelta
    baseline: int  # buckets of trailing history
    window: int  # buckets evaluated


HOURLY = Granularity("hour", timedelta(hours=1), 7 * 24, 48)
DAILY = Granularity("day", timedelta(days=1), 28, 14)
GRANULARITIES = {"hour": (HOURLY,), "day": (DAILY,), "both": (HOURLY, DAILY)}


def _floor(moment: datetime, g: Granularity) -> datetime:
    moment = moment.astimezone(timezone.utc)
    if g.name == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def detect(
    pool: ConnectionPool,
    *,
    granularity: str = "both",
    threshold: float = 5.0,
    min_usd: Decimal = Decimal(1),
    now: datetime | None = None,
    project: str | None = None,
    visible_projects: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Anomalous buckets, most unusual first, with the baseline each was judged against."""
    now = now or datetime.now(timezone.utc)
    found: list[dict[str, Any]] = []
    checked = 0
    for g in GRANULARITIES[granularity]:
        series = _series(pool, g, now, project, visible_projects)
        checked += len(series)
        for (proj, feature), (first, spend) in series.items():
            found += _scan(g, now, proj, feature, first, spend, threshold, min_usd)
    found.sort(key=lambda a: abs(a["score"]), reverse=True)
    return {
        "method": "median and MAD of the trailing baseline (hourly: 168 h, daily: 28 d); "
        f"flag |spend - median| >= {threshold:g} x 1.4826 x MAD and >= ${min_usd}",
        "threshold": threshold,
        "min_usd": format(min_usd, "f"),
        "series_checked": checked,
        "anomalies": found,
    }


def _series(
    pool: ConnectionPool, g: Granularity, now: datetime, project: str | None, visible: Sequence[str] | None
) -> dict[tuple[str, str], tuple[datetime, dict[datetime, Decimal]]]:
    """Spend per bucket for every (project, feature) series, plus each series' first bucket ever."""
    end = _floor(now, g)
    start = end - g.step * (g.window + g.baseline)
    where = "bucket >= %(start)s"
    params: dict[str, Any] = {"start": start, "unit": g.name}
    if project is not None:
        where += " AND project = %(project)s"
        params["project"] = project
    if visible is not None:
        where += " AND project = ANY(%(visible)s)"
        params["visible"] = list(visible)
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT project, feature, date_trunc(%(unit)s, bucket) AS b, sum(cost_usd) AS cost
                FROM llm_rollup_hour WHERE {where} GROUP BY 1, 2, 3""",
            params,
        ).fetchall()
        firsts = cur.execute(
            f"""SELECT project, feature, date_trunc(%(unit)s, min(bucket)) AS first FROM llm_rollup_hour
                WHERE {where.replace("bucket >= %(start)s", "TRUE")} GROUP BY 1, 2""",
            params,
        ).fetchall()
    first_of: dict[tuple[str, str], datetime] = {(r["project"], r["feature"]): r["first"] for r in firsts}
    out: dict[tuple[str, str], tuple[datetime, dict[datetime, Decimal]]] = {}
    for r in rows:
        key = (r["project"], r["feature"])
        out.setdefault(key, (first_of.get(key) or r["b"], {}))[1][r["b"]] = r["cost"]
    return out


def _scan(
    g: Granularity,
    now: datetime,
    project: str,
    feature: str,
    first: datetime,
    spend: dict[datetime, Decimal],
    threshold: float,
    min_usd: Decimal,
) -> list[dict[str, Any]]:
    current = _floor(now, g)
    out = []
    for i in range(g.window, -1, -1):
        bucket = current - g.step * i
        history_start = max(first, bucket - g.step * g.baseline)  # no history before the series existed
        covered = int((bucket - history_start) / g.step)
        if covered < g.baseline / 2:
            continue
        baseline = [float(spend.get(history_start + g.step * k, 0)) for k in range(covered)]
        value = float(spend.get(bucket, 0))
        median = statistics.median(baseline)
        mad = statistics.median(abs(x - median) for x in baseline)
        spread = max(MAD_TO_SIGMA * mad, 0.1 * median, float(min_usd) / 4)
        deviation = value - median
        if bucket == current and deviation < 0:
            continue  # an unfinished bucket always looks low
        if abs(deviation) < float(min_usd) or abs(deviation) < threshold * spread:
            continue
        out.append(
            {
                "granularity": g.name,
                "bucket": bucket.isoformat(),
                "project": project,
                "feature": feature,
                "spend_usd": format(spend.get(bucket, Decimal(0)), "f"),
                "baseline_median_usd": f"{median:.6f}",
                "baseline_spread_usd": f"{spread:.6f}",
                "score": round(deviation / spread, 2),
                "direction": "spike" if deviation > 0 else "drop",
                "ratio_to_median": round(value / median, 2) if median else None,
                "complete": bucket != current,
            }
        )
    return out
