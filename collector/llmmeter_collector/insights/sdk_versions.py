"""The instrumentations sending data and their versions, and which of them this collector would rather not get.

Every call keeps its instrumentation scope's name and version (llmmeter's SDK: ``llmmeter`` at the package version;
other instrumentations: their own scope names). A version is flagged when it is older than this collector supports
(``MIN_SUPPORTED``), or older than a release that changed what the SDK reports for pricing (``PRICING_CHANGES``):
its calls may be priced differently from a current SDK's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from packaging.version import InvalidVersion, Version
from psycopg_pool import ConnectionPool

# scope -> the oldest version this collector supports
MIN_SUPPORTED: dict[str, str] = {"llmmeter": "0.1.0"}
# (scope, version, what changed for pricing): a scope older than the version prices differently
PRICING_CHANGES: list[tuple[str, str, str]] = []


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def flags(scope: str, version: str) -> list[str]:
    """Why a scope's version deserves attention (nothing when it is current or unknown to these tables)."""
    found = _version(version)
    out = []
    minimum = MIN_SUPPORTED.get(scope)
    if minimum is not None:
        if found is None:
            out.append(f"version {version or '(none)'!r} is not a release version: cannot tell whether it is supported")
        elif found < Version(minimum):
            out.append(f"older than this collector supports ({scope} {minimum}): upgrade it")
    for changed_scope, changed, what in PRICING_CHANGES:
        if changed_scope == scope and found is not None and found < Version(changed):
            out.append(f"pricing behaviour changed in {scope} {changed}: {what}")
    return out


def versions(pool: ConnectionPool, scopes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every instrumentation and version that sent calls, newest activity first, with its flags."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT scope, version, first_seen, last_seen, calls FROM llm_sdk_versions ORDER BY last_seen DESC, 1, 2"
        ).fetchall()
    return [
        {"scope": scope, "version": version, "first_seen": first.isoformat(), "last_seen": last.isoformat(),
         "calls": int(calls), "flags": flags(scope, version)}
        for scope, version, first, last, calls in rows
        if scopes is None or scope in scopes
    ]  # fmt: skip
