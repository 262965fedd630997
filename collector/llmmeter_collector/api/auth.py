"""Who may call the REST API and what they see: API keys with roles, project isolation, rate limits.

``ApiAuth`` is an ASGI middleware in front of every ``/api/`` route (the OpenAPI document excepted):

* Keys are off until the first active key exists (``KeyStore.required()``); then a request without a valid
  ``Authorization: Bearer <key>`` (or ``x-llmmeter-key``) gets 401.
* Reading (GET) needs a ``viewer`` or ``admin`` key; every other method (budgets, keys, prices changes) needs
  ``admin``: 403 otherwise. An ``ingest`` key cannot read the API.
* A key limited to projects sees only those: handlers read ``visible_projects(request)`` and filter every
  query with it; asking for another project explicitly gets 403. Operations that change the whole collector
  (``GLOBAL_ADMIN_PATHS``: reloading the budgets file or the prices) need an admin key of every project.
* Query parameters and the path are checked once here: a control character (NUL, ...) in any of them gets 400
  naming the parameter, before any handler or Postgres sees it.
* API rate limit (``ratelimit``) per key, or per client address while keys are off: 429 with ``Retry-After``.

The README's "Authorization" table is the whole rule set; ``tests/test_authz_matrix.py`` checks every cell.
Handlers of other modules use ``principal(request)``, ``visible_projects(request)``, ``may_see(request, p)``,
``within(request, projects)`` and ``require_admin(request)`` (a 403 response or None) from here.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmmeter_collector.access import oidc
from llmmeter_collector.access.keys import Principal, token_from_headers
from llmmeter_collector.access.ratelimit import retry_after_header
from llmmeter_collector.control_chars import has_control_characters
from llmmeter_collector.ledger import audit

if TYPE_CHECKING:
    from llmmeter_collector.api.context import Collector

PUBLIC_PATHS = frozenset({"/api/v1/openapi.json"})
# Changes that reach every project, and a whole organisation's bills: only keys of every project (admin to change).
GLOBAL_ADMIN_PATHS = frozenset({
    "/api/v1/budgets/reload", "/api/v1/prices/reload",
    "/api/v1/reconcile", "/api/v1/focus/import", "/api/v1/focus/costs",  # a whole organisation's bills
    "/api/v1/sdk-versions",  # every project's instrumentations
    "/api/v1/audit",  # every project's audit trail
    "/api/v1/webhooks",  # events of every project
})  # fmt: skip
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STATE_KEY = "llmmeter_principal"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_OPEN = "open"  # keys not in use: everything allowed and visible
_REFUSED = "refused"  # a token was presented and refused (the audit log's "no valid key")


_IDS = re.compile(r"/(\d+)(?=/|$)")


def _route(request: Request) -> str:
    """The route as an action name: numeric ids as {id} (the target keeps them)."""
    return _IDS.sub("/{id}", request.url.path)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class ApiAuth:
    """ASGI middleware: authenticates ``/api/`` requests, checks the role, applies the API rate limit."""

    def __init__(self, app: ASGIApp, collector: Collector) -> None:
        self.app = app
        self.collector = collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not audit.audited(scope.get("method", ""), path):
            denied = await self._check(request)
            if denied is not None:
                await denied(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        recorded = False

        async def answered(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True  # written before the client is answered: an answer always has its entry
                await run_in_threadpool(self._audit, request, message["status"])
            await send(message)

        try:
            denied = await self._check(request)
            if denied is not None:
                await denied(scope, receive, answered)
            else:
                await self.app(scope, receive, answered)
        finally:
            if not recorded:  # the app failed before answering
                await run_in_threadpool(self._audit, request, 500)

    def _audit(self, request: Request, status: int) -> None:
        """Record an audited request: who (the key, or why there was none), what, from where, the answer."""
        found = request.scope.get("state", {}).get(_STATE_KEY)
        if isinstance(found, Principal):
            actor = f"key {found.key_id} ({found.name})" if found.key_id else f"user {found.name}"
            who = {"actor": actor, "role": found.role, "projects": found.projects}
        else:
            who = {"actor": "no key" if found == _OPEN else "no valid key"}
        query = request.url.query
        audit.record_with(
            self.collector.pool,
            action=f"{request.method} {_route(request)}",
            target=request.url.path + (f"?{query}" if query else ""),
            client=request.client.host if request.client else "",
            status=status,
            **who,
        )

    async def _check(self, request: Request) -> Response | None:
        store = self.collector.keys
        verifier = self.collector.oidc
        found: Principal | str
        token = token_from_headers(request.headers)
        if verifier is not None and token is not None and oidc.looks_like_jwt(token):
            try:
                found = await run_in_threadpool(verifier.verify, token)
            except oidc.TokenRefused as exc:
                request.scope.setdefault("state", {})[_STATE_KEY] = _REFUSED
                limited = self._limited(request, _OPEN)
                return limited or _error(exc.status, str(exc), **(_CHALLENGE if exc.status == 401 else {}))
        elif verifier is None and not await run_in_threadpool(store.required):
            found = _OPEN  # no key exists yet and no identity provider: open (see docs/api.md)
        else:
            if token is None:
                return self._limited(request, _OPEN) or _error(
                    401, "an API key is required: Authorization: Bearer <key>", **_CHALLENGE
                )
            principal = await run_in_threadpool(store.verify, token)
            if principal is None:  # guessing keys is limited like any request without one
                return self._limited(request, _OPEN) or _error(401, "the API key is unknown or revoked", **_CHALLENGE)
            found = principal
        request.scope.setdefault("state", {})[_STATE_KEY] = found  # who asked, also when refused (the audit log)
        bad = _control_characters(request)
        if bad is not None:
            return JSONResponse({"error": f"{bad}: must not contain control characters", "field": bad}, 400)
        if isinstance(found, Principal):
            denied = _deny(request, found)
            if denied is not None:
                return denied
        return self._limited(request, found)

    def _limited(self, request: Request, found: Principal | str) -> Response | None:
        """A 429 when the caller's bucket (its key, or its client address without a valid key) is empty."""
        limiter = self.collector.rate_limits.api
        if limiter is None:
            return None
        wait = limiter.take(_rate_key(request, found))
        if wait <= 0:
            return None
        who = "key" if isinstance(found, Principal) else "client"
        return _error(429, f"rate limit exceeded for this {who}", **{"Retry-After": retry_after_header(wait)})


def _deny(request: Request, found: Principal) -> Response | None:
    """The role and project checks every request of a key passes; a 403 response when one fails."""
    needed = "viewer" if request.method in READ_METHODS else "admin"
    if not found.allows(needed):
        return _error(403, f"this {found.role} key cannot {'read' if needed == 'viewer' else 'change'} this")
    path = request.scope.get("path", "")
    if found.projects and (path in GLOBAL_ADMIN_PATHS or path.startswith("/api/v1/webhooks/")):
        return _error(403, "this key is limited to projects; this needs an admin key of every project")
    for asked in request.query_params.getlist("project"):
        if asked and not found.may_see(asked):
            return _error(403, f"project: this key does not give access to project {asked!r}")
    return None


def _control_characters(request: Request) -> str | None:
    """The name of the first query parameter (or "path") holding a control character; None when all are clean."""
    if has_control_characters(request.scope.get("path", "")):
        return "path"
    for name, value in request.query_params.multi_items():
        if has_control_characters(name):
            return "query"
        if has_control_characters(value):
            return name
    return None


def _rate_key(request: Request, found: Principal | str) -> str:
    """The bucket a request draws from: its key, or its client address while keys are off (never a project
    it names, or naming a new project each time would never be limited)."""
    if isinstance(found, Principal):
        return f"key:{found.key_id}" if found.key_id else f"user:{found.name}"  # OIDC users: one bucket each
    client = request.client
    return f"addr:{client.host if client else '?'}"


def principal(request: Request) -> Principal | None:
    """The key behind this request; None when keys are not in use (everything allowed)."""
    found: Any = request.scope.get("state", {}).get(_STATE_KEY)
    return found if isinstance(found, Principal) else None


def visible_projects(request: Request) -> tuple[str, ...] | None:
    """The projects this request may see; None means every project."""
    found = principal(request)
    if found is None or not found.projects:
        return None
    return found.projects


def may_see(request: Request, project: str) -> bool:
    """Whether this request may see data of ``project``."""
    projects = visible_projects(request)
    return projects is None or project in projects


def within(request: Request, projects: Iterable[str]) -> bool:
    """Whether ``projects`` (a budget's or a key's, empty = every project) lie within what this request may see.

    A key limited to projects owns only things limited to some of its projects: never an unlimited one.
    """
    visible = visible_projects(request)
    wanted = set(projects)
    return visible is None or (bool(wanted) and wanted <= set(visible))


def require_admin(request: Request) -> Response | None:
    """A 403 response unless the request carries an admin key (or keys are not in use); None when allowed.

    The middleware already refuses non-GET requests from non-admin keys; use this for anything else that
    must be admin-only, and to be explicit in write handlers.
    """
    found = principal(request)
    if found is None or found.allows("admin"):
        return None
    return _error(403, f"this {found.role} key cannot change this: an admin key is required")


def metrics_token_ok(expected: str, headers: Mapping[str, str]) -> bool:
    """Whether a ``/metrics`` request may be answered: no token configured, or ``Authorization: Bearer <it>``."""
    if not expected:
        return True
    scheme, _, given = headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
