"""``GET /api/v1/audit``: the audit log, newest first (``ledger/audit.py``). Admin keys of every project only;
reading it is itself recorded."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.openapi import BadRequest, Operation, Param, register
from llmmeter_collector.ledger import audit

AUDIT = Operation(
    "GET",
    "/api/v1/audit",
    "The audit log: every read of call-level data and every change, who, when, from where, with what result",
    role="admin",
    params=(
        Param("since", "datetime", "Entries at or after this time."),
        Param("until", "datetime", "Entries before this time."),
        Param("actor", "string", 'Only this actor, e.g. "key 3 (root)".'),
        Param("action", "string", 'Only actions containing this, e.g. "POST /api/v1/keys" or "retention".'),
        Param("limit", "integer", "Entries to return.", default=1000, minimum=1, maximum=100_000),
    ),
    tag="keys",
)
register(AUDIT)


def routes(collector: Collector) -> list[Route]:
    async def get_audit(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        try:
            args = AUDIT.parse(request.query_params)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        found = await run_in_threadpool(lambda: audit.entries(collector.pool, **args))
        return JSONResponse({"entries": found})

    get_audit.__doc__ = AUDIT.summary
    return [Route(AUDIT.path, get_audit, methods=["GET"])]
