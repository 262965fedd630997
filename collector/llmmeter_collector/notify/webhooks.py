"""Event webhooks: budget threshold crossings, spend anomalies, models seen without a price and reconcile drift,
delivered as signed JSON (or Slack messages) with retries and a delivery log.

* **Events** (``EVENTS``) get an id that names what happened (``budget:monthly:2026-12-01T00:00:00+00:00:warning``):
  each subscription gets one delivery per event id, however often the event is noticed.
* **Signature**: ``X-Llmmeter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the
  subscription's secret>``; a receiver checks it and refuses timestamps older than its replay window (``verify``,
  5 minutes by default). ``X-Llmmeter-Event`` and ``X-Llmmeter-Delivery`` name the event and the delivery.
* **Retries**: a delivery that gets no 2xx answer (or no answer) is tried again after ``retry_seconds`` x 2^attempts
  (at most an hour), up to ``MAX_ATTEMPTS`` times, then marked failed; every attempt's status and error is kept.
  A delivered event is never sent again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

logger = logging.getLogger("llmmeter.collector")

EVENTS = ("budget.threshold", "anomaly", "model.unpriced", "reconcile.drift")
FORMATS = ("json", "slack")
MAX_ATTEMPTS = 8
MAX_BACKOFF_SECONDS = 3600
REPLAY_WINDOW_SECONDS = 300
TIMEOUT_SECONDS = 10.0


class WebhookError(ValueError):
    """A subscription asked for badly; the message names the field."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None,
           tolerance: int = REPLAY_WINDOW_SECONDS) -> bool:  # fmt: skip
    """What a receiver does: the signature matches the body and the timestamp is within the replay window."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def create(pool: ConnectionPool, url: str, events: Sequence[str], fmt: str, actor: str) -> dict[str, Any]:
    """A new subscription; its secret is in the answer (and only there)."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 2000:
        raise WebhookError("url: must be an http(s) URL")
    if not events or not all(isinstance(e, str) for e in events):
        raise WebhookError(f"events: must be a non-empty list of {', '.join(EVENTS)}")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise WebhookError(f"events: {unknown[0]!r} is not one of {', '.join(EVENTS)}")
    if fmt not in FORMATS:
        raise WebhookError(f"format: must be json or slack, got {fmt!r}")
    secret = "whsec_" + secrets.token_urlsafe(32)
    with pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO llm_webhooks (url, events, format, secret, created_by) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id, created_at",
            (url, sorted(set(events)), fmt, secret, actor),
        ).fetchone()
    assert row is not None
    return {"id": row[0], "url": url, "events": sorted(set(events)), "format": fmt, "secret": secret,
            "created_at": row[1].isoformat()}  # fmt: skip


def subscriptions(pool: ConnectionPool) -> list[dict[str, Any]]:
    with pool.connection() as conn:
        rows = conn.execute(
            """SELECT w.id, w.url, w.events, w.format, w.created_at, w.created_by,
                      count(d.*) FILTER (WHERE d.status = 'delivered'), count(d.*) FILTER (WHERE d.status = 'pending'),
                      count(d.*) FILTER (WHERE d.status = 'failed')
               FROM llm_webhooks w LEFT JOIN llm_webhook_deliveries d ON d.webhook_id = w.id
               WHERE w.removed_at IS NULL GROUP BY w.id ORDER BY w.id"""
        ).fetchall()
    return [
        {"id": i, "url": u, "events": list(e), "format": f, "created_at": c.isoformat(), "created_by": by,
         "delivered": int(ok), "pending": int(pending), "failed": int(failed)}
        for i, u, e, f, c, by, ok, pending, failed in rows
    ]  # fmt: skip


def remove(pool: ConnectionPool, webhook_id: int) -> bool:
    with pool.connection() as conn:
        found = conn.execute(
            "UPDATE llm_webhooks SET removed_at = now() WHERE id = %s AND removed_at IS NULL RETURNING id",
            (webhook_id,),
        ).fetchone()
        if found:
            conn.execute(
                "UPDATE llm_webhook_deliveries SET status = 'failed', last_error = 'subscription removed'"
                " WHERE webhook_id = %s AND status = 'pending'",
                (webhook_id,),
            )
    return found is not None


def deliveries(pool: ConnectionPool, webhook_id: int, limit: int = 100) -> list[dict[str, Any]] | None:
    """The delivery log of a subscription, newest first; None when there is no such subscription."""
    with pool.connection() as conn:
        if conn.execute("SELECT 1 FROM llm_webhooks WHERE id = %s", (webhook_id,)).fetchone() is None:
            return None
        rows = conn.execute(
            """SELECT id, event, event_id, status, attempts, last_status, last_error, created_at, delivered_at,
                      next_attempt_at
               FROM llm_webhook_deliveries WHERE webhook_id = %s ORDER BY id DESC LIMIT %s""",
            (webhook_id, limit),
        ).fetchall()
    return [
        {"id": i, "event": e, "event_id": eid, "status": s, "attempts": a, "last_status": ls, "last_error": le,
         "created_at": c.isoformat(), "delivered_at": d.isoformat() if d else None,
         "next_attempt_at": n.isoformat() if s == "pending" else None}
        for i, e, eid, s, a, ls, le, c, d, n in rows
    ]  # fmt: skip


def emit(pool: ConnectionPool, event: str, event_id: str, payload: Mapping[str, Any]) -> int:
    """Queue ``event`` for every subscription to it; an event id already queued for a subscription adds nothing.
    How many deliveries were queued."""
    body = {"event": event, "id": event_id, "at": datetime.now(timezone.utc).isoformat(), "data": dict(payload)}
    with pool.connection() as conn:
        cursor = conn.execute(
            """INSERT INTO llm_webhook_deliveries (webhook_id, event, event_id, payload)
               SELECT id, %s, %s, %s FROM llm_webhooks WHERE removed_at IS NULL AND %s = ANY(events)
               ON CONFLICT (webhook_id, event_id) DO NOTHING""",
            (event, event_id, Jsonb(body), event),
        )
    return cursor.rowcount


def _slack(payload: Mapping[str, Any]) -> dict[str, Any]:
    data = payload.get("data", {})
    return {"text": f"llmmeter {payload.get('event')}: {data.get('summary') or json.dumps(data)[:1500]}"}


def deliver_due(pool: ConnectionPool, client: httpx.Client, retry_seconds: float, limit: int = 50) -> int:
    """Try every delivery that is due (each claimed by one collector: SKIP LOCKED); how many were delivered."""
    delivered = 0
    with pool.connection() as conn, conn.transaction():
        due = conn.execute(
            """SELECT d.id, d.event, d.payload, d.attempts, w.url, w.format, w.secret
               FROM llm_webhook_deliveries d JOIN llm_webhooks w ON w.id = d.webhook_id
               WHERE d.status = 'pending' AND d.next_attempt_at <= now()
               ORDER BY d.next_attempt_at, d.id LIMIT %s FOR UPDATE OF d SKIP LOCKED""",
            (limit,),
        ).fetchall()
        for delivery_id, event, payload, attempts, url, fmt, secret in due:
            body = json.dumps(_slack(payload) if fmt == "slack" else payload, separators=(",", ":")).encode()
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-Llmmeter-Event": event,
                "X-Llmmeter-Delivery": str(delivery_id),
                "X-Llmmeter-Signature": sign(secret, timestamp, body),
            }
            status, error = None, ""
            try:
                answer = client.post(url, content=body, headers=headers)
                status = answer.status_code
                if not 200 <= status < 300:
                    error = f"answered {status}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            tried = attempts + 1
            if not error:
                conn.execute(
                    "UPDATE llm_webhook_deliveries SET status = 'delivered', attempts = %s, last_status = %s,"
                    " last_error = '', delivered_at = now() WHERE id = %s",
                    (tried, status, delivery_id),
                )
                delivered += 1
                continue
            backoff = min(MAX_BACKOFF_SECONDS, retry_seconds * 2**attempts)
            state = "failed" if tried >= MAX_ATTEMPTS else "pending"
            conn.execute(
                "UPDATE llm_webhook_deliveries SET status = %s, attempts = %s, last_status = %s, last_error = %s,"
                " next_attempt_at = now() + %s WHERE id = %s",
                (state, tried, status, error, timedelta(seconds=backoff), delivery_id),
            )
            if state == "failed":
                logger.warning("webhook delivery %d to %s failed after %d attempts: %s", delivery_id, url, tried, error)
    return delivered


class Dispatcher:
    """Notices events (``sources``: callables returning (event, event id, payload) triples) and delivers, every
    ``interval`` seconds, in a daemon thread."""

    def __init__(
        self,
        pool: Callable[[], ConnectionPool],
        sources: Sequence[Callable[[], list[tuple[str, str, dict[str, Any]]]]],
        *,
        interval: float = 30.0,
        retry_seconds: float = 30.0,
    ) -> None:
        self._pool, self._sources = pool, sources
        self._interval, self._retry = interval, retry_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=TIMEOUT_SECONDS)
        self.rounds = 0

    def run_once(self) -> None:
        pool = self._pool()
        for source in self._sources:
            try:
                for event, event_id, payload in source():
                    emit(pool, event, event_id, payload)
            except Exception as exc:  # one source failing never stops the others or the deliveries
                logger.warning("webhook events: %s", str(exc).strip()[:200])
        try:
            deliver_due(pool, self._client, self._retry)
        except Exception as exc:
            logger.warning("webhook deliveries: %s", str(exc).strip()[:200])
        self.rounds += 1

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self._interval)
            self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llmmeter-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._client.close()
