"""Event webhooks over REST (``notify/webhooks.py``), admin keys of every project:

POST   /api/v1/webhooks                       subscribe: {"url", "events", "format"}; the secret is in the answer
GET    /api/v1/webhooks                       the subscriptions and their delivery counts
DELETE /api/v1/webhooks/{id}                  unsubscribe (pending deliveries are dropped)
GET    /api/v1/webhooks/{id}/deliveries       the delivery log
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.openapi import Operation, register
from llmmeter_collector.notify import webhooks

_EVENTS = {"type": "array", "items": {"type": "string", "enum": list(webhooks.EVENTS)}}
CREATE = Operation(
    "POST", "/api/v1/webhooks", "Subscribe a URL to events; the answer holds the signing secret (shown once)",
    role="admin", tag="keys",
    request_body={"type": "object", "required": ["url", "events"], "properties": {
        "url": {"type": "string"}, "events": _EVENTS, "format": {"type": "string", "enum": list(webhooks.FORMATS)}}},
)  # fmt: skip
LIST = Operation("GET", "/api/v1/webhooks", "Webhook subscriptions and their delivery counts", role="admin", tag="keys")
REMOVE = Operation("DELETE", "/api/v1/webhooks/{webhook_id}", "Remove a subscription", role="admin", tag="keys")
LOG = Operation("GET", "/api/v1/webhooks/{webhook_id}/deliveries", "A subscription's delivery log", role="admin",
                tag="keys")  # fmt: skip
register(CREATE, LIST, REMOVE, LOG)


def _actor(request: Request) -> str:
    found = apiauth.principal(request)
    if found is None:
        return "no key"
    return f"key {found.key_id} ({found.name})" if found.key_id else f"user {found.name}"


def _id(request: Request) -> int | None:
    raw = request.path_params["webhook_id"]
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def routes(collector: Collector) -> list[Route]:
    async def create(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"error": "body: must be a JSON object", "field": "body"}, status_code=400)
        unknown = set(body) - {"url", "events", "format"}
        if unknown:
            name = sorted(unknown)[0]
            return JSONResponse({"error": f"{name}: unknown field", "field": name}, status_code=400)
        try:
            made = await run_in_threadpool(
                webhooks.create, collector.pool, str(body.get("url") or ""), body.get("events") or [],
                body.get("format", "json"), _actor(request),
            )  # fmt: skip
        except webhooks.WebhookError as exc:
            return JSONResponse({"error": str(exc), "field": str(exc).split(":", 1)[0]}, status_code=400)
        return JSONResponse(made, status_code=201)

    async def listing(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        return JSONResponse({"webhooks": await run_in_threadpool(webhooks.subscriptions, collector.pool)})

    async def remove(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        webhook_id = _id(request)
        if webhook_id is None or not await run_in_threadpool(webhooks.remove, collector.pool, webhook_id):
            raw = request.path_params["webhook_id"]
            return JSONResponse({"error": f"webhook_id: no subscription {raw!r}", "field": "webhook_id"}, 404)
        return JSONResponse({"removed": webhook_id})

    async def log(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        webhook_id = _id(request)
        found = await run_in_threadpool(webhooks.deliveries, collector.pool, webhook_id) if webhook_id else None
        if found is None:
            raw = request.path_params["webhook_id"]
            return JSONResponse({"error": f"webhook_id: no subscription {raw!r}", "field": "webhook_id"}, 404)
        return JSONResponse({"deliveries": found})

    for handler, op in ((create, CREATE), (listing, LIST), (remove, REMOVE), (log, LOG)):
        handler.__doc__ = op.summary
    return [
        Route(CREATE.path, create, methods=["POST"]),
        Route(LIST.path, listing, methods=["GET"]),
        Route(REMOVE.path, remove, methods=["DELETE"]),
        Route(LOG.path, log, methods=["GET"]),
    ]
