"""API and ingest keys: stored hashed in Postgres, checked on every export and API request.

Interface (used by the receivers and by the REST API / ``llmmeter keys`` command)::

    store = KeyStore(pool)                              # a psycopg_pool.ConnectionPool on the ledger
    plaintext = store.create("shop-prod", "ingest", ["shop"])   # shown once; only its SHA-256 is kept
    principal = store.verify(plaintext)                 # Principal(key_id, name, role, projects) | None
    store.list_keys(include_revoked=False, within=None) # [KeyInfo], never the key
    store.revoke(key_id, within=None)                   # True when an active key was revoked
    store.required()                                    # True when any active key exists (or forced)
    token = token_from_headers(headers)                 # "Authorization: Bearer …" or "x-llmmeter-key"

Roles: ``ingest`` may only send OTLP exports; ``viewer`` may read the REST API; ``admin`` may do both and
manage keys, prices and budgets (``Principal.allows(role)`` encodes that order). ``projects`` limits a key
to those projects (empty = all). A key with exactly one project stamps that project on every call it
exports, whatever the span claims (``Principal.forced_project``).

``within`` (a scoped admin's projects) limits listing and revoking to keys limited to some of those projects:
never an unlimited key, never one that reaches another project. Names and projects with control characters
(NUL, ...) are refused.

Verification results (valid or not) are cached for ``cache_seconds`` (default 10 s) per process, so a
revocation made by another process takes effect within that time; ``revoke`` in this process clears the
cache at once. While Postgres is unreachable the last known answers keep being used (so exports can still
be spooled); a key never seen before then raises ``KeyStoreUnavailable`` (the receivers answer 503).
Keys look like ``llmm_<43 url-safe characters>`` (256 random bits).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from llmmeter_collector.control_chars import has_control_characters

ROLES = ("ingest", "viewer", "admin")
KEY_PREFIX = "llmm_"
HEADER_KEY = "x-llmmeter-key"
_DISPLAY_PREFIX_CHARS = 12
_MAX_CACHE_ENTRIES = 10_000
_DB_TIMEOUT_SECONDS = 2.0
# What each role may do: an admin key may also ingest and read.
_GRANTS = {"ingest": {"ingest"}, "viewer": {"viewer"}, "admin": {"ingest", "viewer", "admin"}}


# A key lies within a set of projects when it is limited to some of them (an unlimited key never does).
_WITHIN = "(%(within)s::text[] IS NULL OR (cardinality(projects) > 0 AND projects <@ %(within)s::text[]))"


def _within(projects: Sequence[str] | None) -> list[str] | None:
    return None if projects is None else list(projects)


class KeyStoreError(ValueError):
    """A key cannot be created as asked (bad role, name or project); the message names the field."""


class KeyStoreUnavailable(Exception):
    """Postgres cannot be asked about a key right now and there is no earlier answer to fall back on."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an accepted key belongs to."""

    key_id: int
    name: str
    role: str
    projects: tuple[str, ...]  # empty: every project

    def allows(self, role: str) -> bool:
        """True when this key may act as ``role`` ("ingest", "viewer" or "admin")."""
        return role in _GRANTS.get(self.role, set())

    def may_see(self, project: str) -> bool:
        return not self.projects or project in self.projects

    @property
    def forced_project(self) -> str | None:
        """The project stamped on every call this key exports (keys limited to exactly one project)."""
        return self.projects[0] if len(self.projects) == 1 else None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as listed: everything but the key itself."""

    key_id: int
    name: str
    prefix: str
    role: str
    projects: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_from_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> str | None:
    """The key an export or API request carries: ``Authorization: Bearer <key>`` or ``x-llmmeter-key``.

    ``headers`` is a case-insensitive mapping (Starlette) or gRPC metadata pairs (lower-case keys).
    """
    items: Iterable[tuple[str, str]] = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        lname = name.lower()
        if lname == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif lname == HEADER_KEY and value.strip():
            return value.strip()
    return None


class KeyStore:
    """Keys in the ``llmmeter_api_keys`` table (migration 0002)."""

    def __init__(self, pool: ConnectionPool, *, cache_seconds: float = 10.0, require_keys: bool = False) -> None:
        self._pool = pool
        self._ttl = cache_seconds
        self._require = require_keys
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._any: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    # --- management --------------------------------------------------------------------------------
    def create(self, name: str, role: str, projects: Sequence[str] = ()) -> str:
        """Store a new key and return it in plain text: the only time it is ever visible."""
        name = name.strip()
        if not name or len(name) > 200:
            raise KeyStoreError("name: must be 1-200 characters")
        if role not in ROLES:
            raise KeyStoreError(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
        if has_control_characters(name):
            raise KeyStoreError("name: must not contain control characters")
        clean = sorted({p.strip() for p in projects})
        if any(not p for p in clean):
            raise KeyStoreError("projects: a project name cannot be empty")
        if any(has_control_characters(p) or len(p) > 200 for p in clean):
            raise KeyStoreError("projects: a project name must be 1-200 characters without control characters")
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._pool.connection() as conn:
            exists = conn.execute(
                "SELECT 1 FROM llmmeter_api_keys WHERE name = %s AND revoked_at IS NULL", (name,)
            ).fetchone()
            if exists:
                raise KeyStoreError(f"name: an active key named {name!r} already exists")
            conn.execute(
                "INSERT INTO llmmeter_api_keys (name, key_hash, key_prefix, role, projects)"
                " VALUES (%s, %s, %s, %s, %s)",
                (name, hash_key(token), token[:_DISPLAY_PREFIX_CHARS], role, clean),
            )
        with self._lock:
            self._any = None
        return token

    def list_keys(self, include_revoked: bool = False, within: Sequence[str] | None = None) -> list[KeyInfo]:
        """Keys, oldest first; ``within``: only keys limited to some of those projects."""
        where = "TRUE" if include_revoked else "revoked_at IS NULL"
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, name, key_prefix, role, projects, created_at, revoked_at"
                f" FROM llmmeter_api_keys WHERE {where} AND {_WITHIN} ORDER BY id",
                {"within": _within(within)},
            ).fetchall()
        return [KeyInfo(r[0], r[1], r[2], r[3], tuple(r[4]), r[5], r[6]) for r in rows]

    def revoke(self, key_id: int, within: Sequence[str] | None = None) -> bool:
        """Revoke an active key (``within``: only a key limited to some of those projects); False when there
        is no such active key."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "UPDATE llmmeter_api_keys SET revoked_at = now()"
                f" WHERE id = %(id)s AND revoked_at IS NULL AND {_WITHIN} RETURNING id",
                {"id": key_id, "within": _within(within)},
            ).fetchone()
        with self._lock:
            self._cache.clear()
            self._any = None
        return row is not None

    # --- checking ----------------------------------------------------------------------------------
    def required(self) -> bool:
        """Whether requests must carry a key: forced by settings, or because any active key exists."""
        if self._require:
            return True
        now = time.monotonic()
        cached = self._any
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            with self._pool.connection(timeout=_DB_TIMEOUT_SECONDS) as conn:
                row = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM llmmeter_api_keys WHERE revoked_at IS NULL)"
                ).fetchone()
        except Exception as exc:
            if cached is None:
                raise KeyStoreUnavailable(f"cannot read keys from Postgres: {exc}") from exc
            self._any = (now + self._ttl, cached[1])
            return cached[1]
        found = bool(row and row[0])
        self._any = (now + self._ttl, found)
        return found

    def verify(self, token: str | None) -> Principal | None:
        """The principal of an active key, or None for a missing, unknown or revoked key."""
        if not token or not token.startswith(KEY_PREFIX) or len(token) > 200:
            return None
        digest = hash_key(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            with self._pool.connection(timeout=_DB_TIMEOUT_SECONDS) as conn:
                row: Any = conn.execute(
                    "SELECT id, name, role, projects FROM llmmeter_api_keys WHERE key_hash = %s AND revoked_at IS NULL",
                    (digest,),
                ).fetchone()
        except Exception as exc:
            if cached is None:
                raise KeyStoreUnavailable(f"cannot read keys from Postgres: {exc}") from exc
            return cached[1]
        principal = Principal(row[0], row[1], row[2], tuple(row[3])) if row else None
        with self._lock:
            if len(self._cache) >= _MAX_CACHE_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, principal)
        return principal
