"""How good is the period-end forecast? Synthetic 30-day months, forecast at days 3.5, 7.5, 14.5 and 21.5.

For each spend shape, 300 random months (fixed seed). Prints per method and checkpoint the mean absolute
percentage error of the expected month total and how often the true total fell inside the 80 % interval.
Writes nothing.  Run: .venv/bin/python bench/forecast_accuracy.py
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from decimal import Decimal

from llmmeter_collector.budgets.forecast import forecast_period_end

DAYS = 30
CHECKPOINTS = (3.5, 7.5, 14.5, 21.5)
SERIES = 300
METHODS = ("run_rate", "trend", "auto")


def _noise(rng: random.Random, sigma: float = 0.3) -> float:
    return math.exp(rng.gauss(-sigma * sigma / 2, sigma))  # mean-1 lognormal


def flat(rng: random.Random) -> list[float]:
    base = rng.uniform(5, 50)
    return [base * _noise(rng) for _ in range(DAYS)]


def growth(rng: random.Random) -> list[float]:
    base, g = rng.uniform(5, 50), rng.uniform(0.02, 0.06)
    return [base * (1 + g * d) * _noise(rng) for d in range(DAYS)]


def decline(rng: random.Random) -> list[float]:
    base, g = rng.uniform(5, 50), rng.uniform(0.01, 0.025)
    return [base * max(1 - g * d, 0.1) * _noise(rng) for d in range(DAYS)]


def weekly(rng: random.Random) -> list[float]:
    base, offset = rng.uniform(5, 50), rng.randrange(7)
    return [base * (0.3 if (d + offset) % 7 in (5, 6) else 1.0) * _noise(rng) for d in range(DAYS)]


def spiky(rng: random.Random) -> list[float]:
    base = rng.uniform(5, 50)
    return [base * (6 if rng.random() < 0.05 else 1) * _noise(rng) for _ in range(DAYS)]


SHAPES: dict[str, Callable[[random.Random], list[float]]] = {
    "flat": flat,
    "growth 2-6%/day": growth,
    "decline 1-2.5%/day": decline,
    "weekly (weekend 30%)": weekly,
    "spiky (5% days x6)": spiky,
}


def _observed(month: list[float], elapsed: float) -> list[Decimal]:
    whole = int(elapsed)
    days = [Decimal(repr(round(x, 6))) for x in month[:whole]]
    days.append(Decimal(repr(round(month[whole] * (elapsed - whole), 6))))
    return days


def main() -> None:
    rng = random.Random(20240601)
    months = {shape: [make(rng) for _ in range(SERIES)] for shape, make in SHAPES.items()}
    print(f"{'shape':<22} {'method':<9}" + "".join(f" | day {c:<4} MAPE  cover80" for c in CHECKPOINTS))
    overall: dict[str, list[float]] = {m: [] for m in METHODS}
    for shape, series in months.items():
        for method in METHODS:
            cells = []
            for checkpoint in CHECKPOINTS:
                errors, inside, with_interval = [], 0, 0
                for month in series:
                    actual = sum(month)
                    f = forecast_period_end(
                        _observed(month, checkpoint), elapsed_days=checkpoint, period_days=DAYS, method=method
                    )
                    errors.append(abs(float(f.expected) - actual) / actual)
                    if f.lower is not None and f.upper is not None:
                        with_interval += 1
                        inside += float(f.lower) <= actual <= float(f.upper)
                mape = 100 * sum(errors) / len(errors)
                overall[method].append(mape)
                cover = f"{100 * inside / with_interval:5.1f}%" if with_interval else "  n/a "
                cells.append(f" | {mape:13.1f}%  {cover}")
            print(f"{shape:<22} {method:<9}" + "".join(cells))
    print()
    for method, values in overall.items():
        print(f"mean MAPE over all shapes and checkpoints, {method:<9}: {sum(values) / len(values):5.1f}%")


if __name__ == "__main__":
    main()
