"""Period-end spend forecast with an interval, from the spend per day of the period so far.

Used by the budget gauges (``llmmeter_budget_forecast_usd``) and by ``GET /api/v1/forecast``::

    forecast_period_end(
        daily_spend,          # Sequence[Decimal]: spend of day 1, day 2, ... of the period; the LAST entry is
                              # the current, partial day (len == ceil(elapsed_days); at a day boundary
                              # the new day's entry may be included or not)
        elapsed_days=12.5,    # float: time since the period started, in days (now - start) / 1 day
        period_days=31,       # float: length of the whole period in days (end - start) / 1 day
        level=0.8,            # central interval probability
        method="auto",        # "run_rate" | "trend" | "auto"
    ) -> Forecast             # .expected, .lower, .upper (Decimal USD, period-end totals), .method, ...

Methods (``bench/forecast_accuracy.py`` measures them on synthetic months; figures in the README):

* ``run_rate`` — linear on cumulative spend: the spend per day so far (partial day included, weighted by
  the time it covers) continues to the period end. Interval: the complete days' spend treated as independent
  draws around that rate, so the remaining-period sum has variance s² · (m + m²/n) for m days to go and n
  days seen (noise of the days to come plus uncertainty of the rate).
* ``trend`` — least-squares line through the complete days' spend, integrated over the rest of the period
  (rates clipped at zero). Interval from the regression's prediction variance of that sum.
* ``auto`` (default) — ``trend`` when at least 10 complete days show a slope significantly different from
  zero (|t| > 2.5), ``run_rate`` otherwise: flat or noisy spend does not get extrapolated as a trend.

Intervals use Student's t quantile (Cornish-Fisher approximation) and need at least 2 complete days;
before that ``lower``/``upper`` are None. The lower bound never goes below the spend already made.
Spend so far is exact (Decimal); the part still to come is an estimate, rounded to micro-dollars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist
from typing import Any

METHODS = ("auto", "run_rate", "trend")
_MICRO = Decimal("0.000001")
_MIN_TREND_DAYS = 10
_TREND_T = 2.5


class ForecastError(ValueError):
    """The forecast inputs are inconsistent; the message names the argument."""


@dataclass(frozen=True)
class Forecast:
    """A period-end spend forecast. Money in USD; ``lower``/``upper`` bound a ``level`` central interval."""

    method: str
    spent: Decimal
    expected: Decimal
    lower: Decimal | None
    upper: Decimal | None
    level: float
    daily_rate: Decimal  # estimated spend per day at the end of the data
    elapsed_days: float
    period_days: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: money as strings, so clients keep it exact."""

        def money(value: Decimal | None) -> str | None:
            return None if value is None else format(value, "f")

        return {
            "method": self.method,
            "spent_usd": money(self.spent),
            "expected_usd": money(self.expected),
            "lower_usd": money(self.lower),
            "upper_usd": money(self.upper),
            "level": self.level,
            "daily_rate_usd": money(self.daily_rate),
            "elapsed_days": round(self.elapsed_days, 4),
            "period_days": round(self.period_days, 4),
        }


def _money(value: float) -> Decimal:
    return Decimal(repr(max(value, 0.0))).quantize(_MICRO)


def _check(daily: Sequence[Decimal], elapsed_days: float, period_days: float, level: float, method: str) -> None:
    if method not in METHODS:
        raise ForecastError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0 < level < 1:
        raise ForecastError(f"level must be between 0 and 1, got {level!r}")
    if not period_days > 0:
        raise ForecastError(f"period_days must be positive, got {period_days!r}")
    if not 0 <= elapsed_days <= period_days:
        raise ForecastError(f"elapsed_days must be within 0..period_days ({period_days}), got {elapsed_days!r}")
    started = {max(1, math.ceil(elapsed_days - 1e-9)), math.floor(elapsed_days + 1e-9) + 1}
    if len(daily) not in started:
        want = " or ".join(str(n) for n in sorted(started))
        raise ForecastError(
            f"daily_spend must have one entry per started day ({want} for elapsed_days={elapsed_days}),"
            f" got {len(daily)}"
        )
    if any(d < 0 for d in daily):
        raise ForecastError("daily_spend must not contain negative amounts")


def _t_quantile(z: float, dof: int) -> float:
    """Student's t quantile from the normal one (Cornish-Fisher expansion; good to ~1 % for dof >= 2)."""
    v = float(max(dof, 1))
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def _trend_fit(values: Sequence[float]) -> tuple[float, float, float, float, float]:
    """OLS of spend on day midpoints: (intercept, slope, residual variance, mean t, Sxx)."""
    n = len(values)
    ts = [i + 0.5 for i in range(n)]
    t_mean = sum(ts) / n
    y_mean = sum(values) / n
    sxx = sum((t - t_mean) ** 2 for t in ts)
    slope = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, values, strict=True)) / sxx
    intercept = y_mean - slope * t_mean
    residuals = [y - (intercept + slope * t) for t, y in zip(ts, values, strict=True)]
    var = sum(r * r for r in residuals) / (n - 2) if n > 2 else 0.0
    return intercept, slope, var, t_mean, sxx


def _trend_is_significant(values: Sequence[float]) -> bool:
    if len(values) < _MIN_TREND_DAYS:
        return False
    _, slope, var, _, sxx = _trend_fit(values)
    if var == 0:
        return slope != 0
    return abs(slope) / math.sqrt(var / sxx) > _TREND_T


def forecast_period_end(
    daily_spend: Sequence[Decimal],
    *,
    elapsed_days: float,
    period_days: float,
    level: float = 0.8,
    method: str = "auto",
) -> Forecast:
    """Forecast the period's total spend at its end (see the module docstring for the methods)."""
    daily = list(daily_spend) or [Decimal(0)]
    _check(daily, elapsed_days, period_days, level, method)
    spent = sum(daily, Decimal(0))
    remaining = period_days - elapsed_days
    complete = [float(d) for d in daily[: math.floor(elapsed_days + 1e-9)]]
    n = len(complete)
    z = NormalDist().inv_cdf(0.5 + level / 2)

    chosen = method
    if method == "auto":
        chosen = "trend" if _trend_is_significant(complete) else "run_rate"
    elif method == "trend" and n < 2:
        chosen = "run_rate"  # a line needs two points

    sd_future: float | None = None
    if chosen == "trend":
        a, b, var, t_mean, sxx = _trend_fit(complete)
        # spend still to come: integral of max(a + b t, 0) from elapsed to the period end
        t0, t1 = elapsed_days, period_days
        if b == 0:
            future = max(a, 0.0) * remaining
        else:
            zero = -a / b  # where the line crosses zero
            lo, hi = (max(t0, zero), t1) if b > 0 else (t0, min(t1, zero))
            future = a * (hi - lo) + b * (hi * hi - lo * lo) / 2 if hi > lo else 0.0
        rate = max(a + b * t1, 0.0)
        if n > 2:
            mid = (t0 + t1) / 2
            sd_future = math.sqrt(var * (remaining + remaining**2 / n + (remaining * (mid - t_mean)) ** 2 / sxx))
            z = _t_quantile(z, n - 2)
    else:
        rate = float(spent) / elapsed_days if elapsed_days > 0 else 0.0
        future = rate * remaining
        if n >= 2:
            mean = sum(complete) / n
            var = sum((x - mean) ** 2 for x in complete) / (n - 1)
            sd_future = math.sqrt(var * (remaining + remaining**2 / max(elapsed_days, 1.0)))
            z = _t_quantile(z, n - 1)

    expected = spent + _money(future)
    lower = upper = None
    if sd_future is not None:
        lower = spent + _money(future - z * sd_future)
        upper = spent + _money(future + z * sd_future)
    return Forecast(
        method=chosen,
        spent=spent,
        expected=expected,
        lower=lower,
        upper=upper,
        level=level,
        daily_rate=_money(rate),
        elapsed_days=elapsed_days,
        period_days=period_days,
    )
