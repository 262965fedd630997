"""The SDK budget guard: budget-aware model swapping, decided before a call, never on the network path.

Provider wrappers call ``check(provider, model)`` before every call when ``active()`` is true. It returns
the model to use (the same one, or a cheaper one a policy rule names) or raises ``BudgetExceeded``.
Budget state comes from the collector's budget endpoint, cached and refreshed in the background.
"""

from __future__ import annotations


class BudgetExceeded(Exception):
    """Raised into the app when a budget policy rule says to stop calls (the app opted in)."""


def active() -> bool:
    """True when a budget policy is loaded (``llmmeter.instrument(budget_policy=...)``)."""
    return False


def check(provider: str, model: str) -> str:
    """The model this call should use under the loaded policy; raises BudgetExceeded when it must not run."""
    return model
