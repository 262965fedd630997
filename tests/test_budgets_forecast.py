"""The period-end forecast: exact on regular spend, honest intervals, trend only when the data shows one."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llmmeter_collector.budgets.forecast import ForecastError, forecast_period_end


def test_steady_spend_forecasts_the_same_rate_to_the_end_of_the_month() -> None:
    # $10/day for 10 days, then half of day 11 ($5): 10.5 days elapsed of 30
    daily = [Decimal(10)] * 10 + [Decimal(5)]
    f = forecast_period_end(daily, elapsed_days=10.5, period_days=30)
    assert f.method == "run_rate"
    assert f.spent == Decimal(105)
    assert f.expected == Decimal(300)
    assert f.daily_rate == Decimal(10)
    # no day-to-day variation: the interval collapses onto the forecast
    assert f.lower == f.upper == Decimal(300)


def test_interval_widens_with_noise_and_never_goes_below_the_spend_made() -> None:
    daily = [Decimal(v) for v in ("2", "30", "1", "25", "0", "40", "3")] + [Decimal(0)]
    f = forecast_period_end(daily, elapsed_days=7.01, period_days=31, level=0.8)
    assert f.lower is not None and f.upper is not None
    assert f.lower >= f.spent
    assert f.lower < f.expected < f.upper
    wide = forecast_period_end(daily, elapsed_days=7.01, period_days=31, level=0.95)
    assert wide.upper is not None and wide.upper > f.upper


def test_too_little_data_gives_a_forecast_without_interval() -> None:
    f = forecast_period_end([Decimal(4), Decimal(2)], elapsed_days=1.5, period_days=7)
    assert f.expected == Decimal("4") + Decimal(2) + Decimal(6) / Decimal("1.5") * Decimal("5.5")
    assert f.lower is None and f.upper is None


def test_a_clear_trend_is_extrapolated_and_flat_noise_is_not() -> None:
    growing = [Decimal(10 + 2 * d) for d in range(14)] + [Decimal(0)]
    f = forecast_period_end(growing, elapsed_days=14, period_days=30)
    assert f.method == "trend"
    # day i (midpoint t = i + 0.5) spent 10 + 2i = 9 + 2t: that line integrated from 14 to 30, plus the 322 spent
    assert f.expected == Decimal(322) + Decimal(9 * 16 + (30**2 - 14**2))
    assert f.daily_rate == Decimal(9 + 2 * 30)
    run_rate = forecast_period_end(growing, elapsed_days=14, period_days=30, method="run_rate")
    assert run_rate.expected < f.expected

    noisy = [Decimal(v) for v in (10, 12, 9, 11, 10, 13, 9, 10, 12, 11, 10, 9)] + [Decimal(5)]
    assert forecast_period_end(noisy, elapsed_days=12.5, period_days=30).method == "run_rate"


def test_a_falling_trend_stops_at_zero_spend() -> None:
    falling = [Decimal(max(20 - 2 * d, 0)) for d in range(12)] + [Decimal(0)]
    f = forecast_period_end(falling, elapsed_days=12, period_days=30, method="trend")
    assert f.expected >= f.spent
    assert f.daily_rate == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"daily_spend": [Decimal(1)], "elapsed_days": 0.5, "period_days": 0}, "period_days"),
        ({"daily_spend": [Decimal(1)], "elapsed_days": 2, "period_days": 7}, "daily_spend"),
        ({"daily_spend": [Decimal(1)], "elapsed_days": 9, "period_days": 7}, "elapsed_days"),
        ({"daily_spend": [Decimal(-1)], "elapsed_days": 0.5, "period_days": 7}, "daily_spend"),
        ({"daily_spend": [Decimal(1)], "elapsed_days": 0.5, "period_days": 7, "level": 1.5}, "level"),
        ({"daily_spend": [Decimal(1)], "elapsed_days": 0.5, "period_days": 7, "method": "magic"}, "method"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs: dict, field: str) -> None:  # type: ignore[type-arg]
    daily = kwargs.pop("daily_spend")
    with pytest.raises(ForecastError, match=field):
        forecast_period_end(daily, **kwargs)
