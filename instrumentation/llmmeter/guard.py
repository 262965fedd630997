"""The SDK budget guard: budget-aware model swapping, decided before a call, never on the network path.

Provider wrappers call ``check(provider, model)`` before every call when ``active()`` is true. It returns
the model to use (the same one, or a cheaper one a policy rule names) or raises ``BudgetExceeded``.
Budget state comes from the collector's ``GET /api/v1/budgets/status``, fetched by a daemon thread every
``refresh_seconds``: ``check`` only reads the rules that the last fetch found tripped, then the current
attribution, so it costs microseconds. If the collector cannot be reached the guard fails open (calls go
through unchanged once the last good state is older than three refresh periods) and logs it once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmmeter.attribution import current_attributes
from llmmeter.budget_policy import Policy, PolicyError, Rule, load

__all__ = ["BudgetExceeded", "PolicyError", "active", "check", "configure", "disable", "state"]

logger = logging.getLogger("llmmeter")
STATUS_PATH = "/api/v1/budgets/status"
DEFAULT_URL = "http://localhost:4318"
PolicySource = str | Path | Mapping[str, Any]  # a YAML/JSON file path, or the policy as a mapping


class BudgetExceeded(Exception):
    """Raised into the app when a budget policy rule says to stop calls (the app opted in)."""

    def __init__(self, message: str, *, budget: str = "", utilization: float | None = None, model: str = "") -> None:
        super().__init__(message)
        self.budget = budget
        self.utilization = utilization
        self.model = model


def collector_url(policy: Policy, endpoint: str | None = None) -> str:
    """Where the budget state comes from: the policy's collector_url, LLMMETER_URL, the OTLP endpoint."""
    url = (
        policy.collector_url
        or os.environ.get("LLMMETER_URL")
        or endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or DEFAULT_URL
    )
    url = url.rstrip("/")
    for suffix in ("/v1/traces", "/v1/metrics"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


class Guard:
    """A loaded policy and the budget state behind it, refreshed in a background daemon thread."""

    def __init__(self, policy: Policy, url: str, api_key: str | None = None) -> None:
        self.policy = policy
        self.url = url
        self.api_key = api_key
        self.tripped: tuple[Rule, ...] = ()  # rules whose budget is over, in policy order
        self.utilization: dict[str, float] = {}
        self.last_success: float | None = None
        self.reachable: bool | None = None
        self._warned_missing: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmmeter-budget-guard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.policy.refresh_seconds)

    def fetch(self) -> dict[str, float]:
        """Utilisation by budget name, from the collector (raises on any failure)."""
        request = urllib.request.Request(self.url + STATUS_PATH, headers={"Accept": "application/json"})
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(request, timeout=min(5.0, max(self.policy.refresh_seconds, 1.0))) as response:
            body = json.loads(response.read())
        return {str(b["name"]): float(b["utilization"]) for b in body["budgets"]}

    def refresh(self) -> None:
        """Fetch budget state and recompute the tripped rules; never raises."""
        try:
            utilization = self.fetch()
        except Exception as exc:
            if self.reachable is not False:
                logger.warning(
                    "llmmeter: budget guard cannot reach the collector at %s (%s); calls are not limited until it"
                    " answers",
                    self.url,
                    exc,
                )
            self.reachable = False
            stale = self.last_success is None or time.monotonic() - self.last_success > 3 * self.policy.refresh_seconds
            if stale:
                self.tripped = ()  # fail open
            return
        if self.reachable is False:
            logger.warning("llmmeter: budget guard reached the collector at %s again", self.url)
        self.reachable = True
        self.last_success = time.monotonic()
        for name in self.policy.budgets - utilization.keys() - self._warned_missing:
            self._warned_missing.add(name)
            logger.warning("llmmeter: budget policy names budget %r, which the collector does not know", name)
        self.utilization = utilization
        self.tripped = tuple(r for r in self.policy.rules if utilization.get(r.budget, 0.0) >= r.over)

    def check(self, provider: str, model: str, attrs: Mapping[str, Any] | None = None) -> str:
        tripped = self.tripped
        if not tripped:
            return model
        if attrs is None:
            attrs = current_attributes()
        for rule in tripped:
            if rule.matches(provider, model, attrs):
                if rule.use is not None:
                    return rule.use
                used = self.utilization.get(rule.budget, 0.0)
                raise BudgetExceeded(
                    f"llmmeter: budget {rule.budget!r} is at {used:.0%} (policy limit {rule.over:.0%});"
                    f" the {provider} call to {model!r} was not made",
                    budget=rule.budget,
                    utilization=used,
                    model=model,
                )
        return model


_guard: Guard | None = None
_lock = threading.Lock()


def configure(budget_policy: PolicySource | None, *, endpoint: str | None = None, api_key: str | None = None) -> None:
    """Load a policy (raises PolicyError naming the field) and start refreshing its budget state.

    ``None`` leaves the current guard as it is. The first fetch happens in the background thread: until it
    answers, calls go through unchanged.
    """
    global _guard
    if budget_policy is None:
        return
    policy = load(budget_policy)
    guard = Guard(policy, collector_url(policy, endpoint), api_key or os.environ.get("LLMMETER_API_KEY") or None)
    with _lock:
        if _guard is not None:
            _guard.stop()
        _guard = guard
        guard.start()


def disable() -> None:
    """Stop the guard: every call runs with the model it asked for."""
    global _guard
    with _lock:
        if _guard is not None:
            _guard.stop()
        _guard = None


def active() -> bool:
    """True when a budget policy is loaded (``llmmeter.instrument(budget_policy=...)``)."""
    return _guard is not None


def check(provider: str, model: str, attrs: Mapping[str, Any] | None = None) -> str:
    """The model this call should use under the loaded policy; raises BudgetExceeded when it must not run.

    ``attrs`` (span attribute keys, as ``llmmeter.current_attributes()`` gives them) is the call's attribution;
    by default the current ``llmmeter.attributes`` block's."""
    guard = _guard
    return model if guard is None else guard.check(provider, model, attrs)


def state() -> dict[str, Any]:
    """What the guard knows now (for logs and debugging): URL, reachability, utilisation, tripped rules."""
    guard = _guard
    if guard is None:
        return {"active": False}
    return {
        "active": True,
        "url": guard.url,
        "reachable": guard.reachable,
        "utilization": dict(guard.utilization),
        "tripped": [r.budget for r in guard.tripped],
    }


def refresh_now() -> None:
    """Fetch budget state now, in the caller's thread (tests, and apps that want it before the first call)."""
    guard = _guard
    if guard is not None:
        guard.refresh()
