"""REST parameters declared once: validated from the same declarations the OpenAPI document is built from.

An ``Operation`` names a route's method, path, role and query parameters. ``Operation.parse`` turns a request's
query string into typed values or raises ``BadRequest`` naming the field; ``document`` walks the application's
real route table, so a route that exists is documented and a documented route exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.routing import BaseRoute, Route


class BadRequest(ValueError):
    """A request parameter is invalid; the message names it. Answered with 400."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "decimal": {"type": "string", "format": "decimal", "pattern": r"^\d+(\.\d+)?$"},
    "datetime": {"type": "string", "format": "date-time"},
    "boolean": {"type": "boolean"},
}


@dataclass(frozen=True)
class Param:
    """One query parameter: its type, constraints and what it means."""

    name: str
    kind: str  # a key of _TYPES
    description: str
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    required: bool = False

    def parse(self, raw: str) -> Any:
        """The typed value of ``raw``; BadRequest naming this parameter when it is not acceptable."""
        if self.choices:
            if raw not in self.choices:
                raise BadRequest(self.name, f"must be one of {', '.join(self.choices)}, got {raw!r}")
            return raw
        if self.kind == "integer":
            try:
                number = int(raw)
            except ValueError:
                raise BadRequest(self.name, f"must be a whole number, got {raw!r}") from None
            if self.minimum is not None and number < self.minimum:
                raise BadRequest(self.name, f"must be at least {self.minimum}, got {number}")
            if self.maximum is not None and number > self.maximum:
                raise BadRequest(self.name, f"must be at most {self.maximum}, got {number}")
            return number
        if self.kind == "decimal":
            try:
                amount = Decimal(raw)
            except InvalidOperation:
                raise BadRequest(self.name, f"must be a decimal number such as 0.05, got {raw!r}") from None
            if not amount.is_finite() or amount < 0:
                raise BadRequest(self.name, f"must be a finite amount >= 0, got {raw!r}")
            return amount
        if self.kind == "datetime":
            return parse_datetime(self.name, raw)
        if self.kind == "boolean":
            if raw.lower() in ("1", "true", "yes"):
                return True
            if raw.lower() in ("0", "false", "no"):
                return False
            raise BadRequest(self.name, f"must be true or false, got {raw!r}")
        if len(raw) > 500:
            raise BadRequest(self.name, "is longer than 500 characters")
        return raw

    def schema(self) -> dict[str, Any]:
        schema = dict(_TYPES[self.kind])
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.default is not None:
            schema["default"] = str(self.default) if isinstance(self.default, Decimal) else self.default
        return schema


def parse_datetime(name: str, raw: str) -> datetime:
    """ISO 8601 date or date-time; naive values are UTC."""
    try:
        # a "+" in an unencoded query string arrives as a space: 2025-01-31T12:00:00 02:00
        value = datetime.fromisoformat(raw.replace(" ", "+") if "T" in raw else raw)
    except ValueError:
        example = "2025-01-31T12:00:00Z"
        raise BadRequest(name, f"must be an ISO 8601 date or date-time such as {example}, got {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Operation:
    """A REST operation: method, path, who may call it, its query parameters and its answer."""

    method: str
    path: str
    summary: str
    description: str = ""
    role: str = "viewer"  # "public", "viewer" (read) or "admin" (changes budgets and keys)
    params: tuple[Param, ...] = ()
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    media_types: tuple[str, ...] = ("application/json",)
    request_body: dict[str, Any] | None = None
    tag: str = "spend"

    def parse(self, query: Mapping[str, str], keys: Iterable[str] | None = None) -> dict[str, Any]:
        """Typed values of every declared parameter (defaults filled in); unknown parameters are refused."""
        known = {p.name: p for p in self.params}
        for name in keys if keys is not None else query.keys():
            if name not in known:
                allowed = ", ".join(sorted(known)) or "none"
                raise BadRequest(name, f"unknown parameter (this endpoint takes: {allowed})")
        values: dict[str, Any] = {}
        for param in self.params:
            raw = query.get(param.name)
            if raw is None or raw == "":
                if param.required:
                    raise BadRequest(param.name, "is required")
                values[param.name] = param.default
            else:
                values[param.name] = param.parse(raw)
        return values


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
    "required": ["error"],
}

# Operations declared by modules that mount their own routes (budgets, prices, keys): the document uses them.
_REGISTRY: dict[tuple[str, str], Operation] = {}


def register(*operations: Operation) -> None:
    """Declare operations served by routes another module mounts, so the document describes them fully."""
    for op in operations:
        _REGISTRY[(op.method.upper(), op.path)] = op


def _route_methods(route: Route) -> list[str]:
    return sorted(m for m in (route.methods or {"GET"}) if m != "HEAD")


def _fallback_operation(method: str, route: Route) -> Operation:
    doc = (getattr(route.endpoint, "__doc__", None) or "").strip()
    first = doc.splitlines()[0] if doc else f"{method} {route.path}"
    return Operation(method, route.path, first, role="viewer" if method == "GET" else "admin", tag="other")


def document(routes: Iterable[BaseRoute], operations: Iterable[Operation], *, version: str = "0.1.0") -> dict[str, Any]:
    """An OpenAPI 3.1 document of every ``/api/`` route the application really serves."""
    declared = {**_REGISTRY, **{(op.method.upper(), op.path): op for op in operations}}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        for method in _route_methods(route):
            op = declared.get((method, route.path)) or _fallback_operation(method, route)
            paths.setdefault(route.path, {})[method.lower()] = _operation_doc(op, route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llmmeter collector REST API",
            "version": version,
            "description": "LLM spend from the llmmeter ledger. Money is a decimal string in USD. "
            "Send an API key as `Authorization: Bearer <key>` once keys exist.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR_SCHEMA},
        },
        "paths": dict(sorted(paths.items())),
    }


def _operation_doc(op: Operation, route: Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in route.param_convertors
    ]
    parameters += [
        {"name": p.name, "in": "query", "required": p.required, "description": p.description, "schema": p.schema()}
        for p in op.params
    ]
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {m: {"schema": op.response} for m in op.media_types}},
        "400": {"description": "A parameter is invalid; `field` names it.", **error},
    }
    if op.role != "public":
        responses["401"] = {"description": "No valid API key (only once keys exist).", **error}
        responses["403"] = {"description": f"The key's role is below {op.role}.", **error}
        responses["429"] = {"description": "The project's rate limit; see Retry-After.", **error}
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op.method.lower() + "_" + re.sub(r"[^a-z0-9]+", "_", route.path.lower()).strip("_"),
        "tags": [op.tag],
        "parameters": parameters,
        "responses": responses,
        "x-llmmeter-role": op.role,
    }
    if op.description:
        doc["description"] = op.description
    if op.role != "public":
        doc["security"] = [{"bearer": []}]
    if op.request_body is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.request_body}}}
    return doc


Handler = Callable[..., Any]
