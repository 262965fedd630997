"""What the budget guard costs on the call path: ``llmmeter.guard.check()`` per call, in microseconds.

Cases: no policy; a policy whose budgets are all under their limit (the usual case); a tripped rule that
does not match the call; a tripped rule that swaps the model. Budget state is set directly (the background
fetch is not on the call path). Prints a table; writes nothing.  Run: .venv/bin/python bench/guard_overhead.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import llmmeter
from llmmeter import guard
from llmmeter.budget_policy import parse
from llmmeter.guard import Guard

N = 200_000
POLICY = parse(
    {
        "rules": [
            {"budget": "search-team", "match": {"feature": "search", "model": "gpt-4o"}, "use": "gpt-4o-mini"},
            {"budget": "growth", "match": {"tags": {"team": "growth"}}, "use": "gpt-4o-mini"},
            {"budget": "total", "raise": True},
        ]
    }
)


def per_call_us(fn: Callable[[], object]) -> float:
    for _ in range(1000):
        fn()
    start = time.perf_counter()
    for _ in range(N):
        fn()
    return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    rows = []
    guard.disable()
    rows.append(("no policy loaded", per_call_us(lambda: guard.check("openai", "gpt-4o"))))
    g = Guard(POLICY, "http://127.0.0.1:9")  # never started: state is set by hand below
    guard._guard = g
    g.utilization = {"search-team": 0.5, "growth": 0.2, "total": 0.3}
    g.tripped = ()
    rows.append(("policy, all budgets under", per_call_us(lambda: guard.check("openai", "gpt-4o"))))
    g.tripped = (POLICY.rules[0],)
    with llmmeter.attributes(feature="support", tags={"team": "ops"}):
        rows.append(("tripped rule, call does not match", per_call_us(lambda: guard.check("openai", "gpt-4o"))))
    with llmmeter.attributes(feature="search"):
        assert guard.check("openai", "gpt-4o") == "gpt-4o-mini"
        rows.append(("tripped rule, model swapped", per_call_us(lambda: guard.check("openai", "gpt-4o"))))
    guard._guard = None
    print(f"{'case':<36} {'per call':>10}")
    for name, us in rows:
        print(f"{name:<36} {us:>8.2f} µs")


if __name__ == "__main__":
    main()
