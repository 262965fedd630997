"""Rate limits: token buckets for REST API requests and for ingested calls, one per key, or per client address
while keys are off: never per project named, which a caller could vary at will.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second. A request (or an export of
``n`` spans) takes its tokens or is refused with the number of seconds until enough are back, which the
caller sends as ``Retry-After`` with a 429. Limits are off unless configured:

* ``LLMMETER_API_RATE_LIMIT``  REST requests per second per key (``LLMMETER_API_RATE_BURST``, default 2x)
* ``LLMMETER_INGEST_RATE_LIMIT``  ingested calls per second per key (``LLMMETER_INGEST_RATE_BURST``)
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llmmeter_collector.config import ConfigError

_MAX_BUCKETS = 10_000


class RateLimiter:
    """Token buckets keyed by any string (a key id, a client address, a project). Thread-safe; ``clock`` is
    injectable for tests."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, updated)
        self._lock = threading.Lock()

    def take(self, key: str, n: float = 1) -> float:
        """Take ``n`` tokens from ``key``'s bucket: 0.0 when allowed, else the seconds to wait before retrying.

        A request larger than the whole burst is allowed when the bucket is full (it could never pass
        otherwise) and leaves the bucket in debt, so the rate still holds on average.
        """
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - updated) * self.rate)
            if tokens >= n or tokens >= self.burst:
                self._buckets[key] = (tokens - n, now)
                allowed = True
            else:
                self._buckets[key] = (tokens, now)
                allowed = False
            while len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
        if allowed:
            return 0.0
        return (min(n, self.burst) - tokens) / self.rate


def retry_after_header(wait_s: float) -> str:
    """``Retry-After`` is whole seconds: round up, at least 1."""
    return str(max(1, math.ceil(wait_s)))


def _number(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (per second), got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


@dataclass(frozen=True)
class RateLimits:
    """The collector's limiters; None where no limit is configured."""

    api: RateLimiter | None = None
    ingest: RateLimiter | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RateLimits:
        env = os.environ if env is None else env
        limiters: dict[str, RateLimiter | None] = {}
        for kind in ("api", "ingest"):
            prefix = f"LLMMETER_{kind.upper()}_RATE_"
            rate = _number(env, prefix + "LIMIT")
            burst = _number(env, prefix + "BURST")
            if rate is None and burst is not None:
                raise ConfigError(f"{prefix}BURST is set but {prefix}LIMIT is not")
            limiters[kind] = RateLimiter(rate, burst if burst is not None else 2 * rate) if rate else None
        return cls(api=limiters["api"], ingest=limiters["ingest"])
