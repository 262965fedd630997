"""The first admin key of a collector that nobody can mint one on: with keys required from the start
(``LLMMETER_REQUIRE_KEYS=true``, the compose stack's default) an unauthenticated request cannot create a key,
so at start, when no key was ever created, the collector stores ``LLMMETER_BOOTSTRAP_ADMIN_KEY`` as the admin
key "bootstrap-admin", or, without it, creates one and logs it once. A revoked bootstrap key is not recreated.
"""

from __future__ import annotations

import logging
import secrets

from psycopg_pool import ConnectionPool

from llmmeter_collector.access.keys import _DISPLAY_PREFIX_CHARS, KEY_PREFIX, hash_key
from llmmeter_collector.config import ConfigError

logger = logging.getLogger(__name__)

BOOTSTRAP_NAME = "bootstrap-admin"
MIN_SECRET_CHARS = 32
_LOCK = 0x6C6C6D6B  # advisory lock: collectors starting together store one bootstrap key


def check_token(token: str) -> None:
    """ConfigError unless ``token`` looks like a key: the ``llmm_`` prefix and at least 32 more characters."""
    if token and (not token.startswith(KEY_PREFIX) or len(token) < len(KEY_PREFIX) + MIN_SECRET_CHARS):
        raise ConfigError(
            f"LLMMETER_BOOTSTRAP_ADMIN_KEY must start with {KEY_PREFIX!r} followed by at least {MIN_SECRET_CHARS}"
            " random characters, e.g. python3 -c 'import secrets; print(\"llmm_\" + secrets.token_urlsafe(32))'"
        )


def first_admin_key(pool: ConnectionPool, token: str, require_keys: bool) -> str | None:
    """Store the first admin key when no key was ever created; returns the key when one was generated."""
    if not token and not require_keys:
        return None  # keys stay off until someone creates one: nothing to bootstrap
    check_token(token)
    generated = None
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        if conn.execute("SELECT EXISTS (SELECT 1 FROM llmmeter_api_keys)").fetchone() == (True,):
            return None
        if not token:
            token = generated = KEY_PREFIX + secrets.token_urlsafe(32)
        conn.execute(
            "INSERT INTO llmmeter_api_keys (name, key_hash, key_prefix, role, projects)"
            " VALUES (%s, %s, %s, 'admin', '{}')",
            (BOOTSTRAP_NAME, hash_key(token), token[:_DISPLAY_PREFIX_CHARS]),
        )
    if generated:
        logger.warning(
            "no API key existed and keys are required: created the admin key %r, shown only now: %s"
            " (create others with `llmmeter keys create`, then revoke this one)",
            BOOTSTRAP_NAME,
            generated,
        )
    else:
        logger.info("stored LLMMETER_BOOTSTRAP_ADMIN_KEY as the admin key %r", BOOTSTRAP_NAME)
    return generated
