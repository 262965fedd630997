"""What the REST routes need from the running collector: a narrow interface the service object satisfies.

The routes are handed the service object at start (``service.Collector``) but know it only through this protocol, so
the API depends on the stages below it (ledger pool, pricing catalog, keys, metrics) and never on the service.
"""

from __future__ import annotations

from typing import Protocol

from psycopg_pool import ConnectionPool

from llmmeter_collector.access.keys import KeyStore
from llmmeter_collector.access.oidc import Verifier
from llmmeter_collector.access.ratelimit import RateLimits
from llmmeter_collector.config import Settings
from llmmeter_collector.exporters.metrics import Metrics
from llmmeter_collector.ledger.reprice import Repricer
from llmmeter_collector.pricing import PriceCatalog


class Collector(Protocol):
    """The running collector, as the REST API sees it."""

    settings: Settings
    metrics: Metrics
    catalog: PriceCatalog
    repricer: Repricer | None
    oidc: Verifier | None
    rate_limits: RateLimits
    ready: bool

    @property
    def pool(self) -> ConnectionPool: ...

    @property
    def keys(self) -> KeyStore: ...

    def reconciled(self, result: dict[str, object]) -> None:
        """A reconcile's answer: the reconcile gauges, and a drift event for the webhooks."""
        ...

    def reload_prices(self) -> list[str]:
        """Re-read the price overrides file; the problems found (the last good prices stay in use)."""
        ...
