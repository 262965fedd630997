"""The REST API (``/api/v1/...``): spend, calls, export, insights and keys. Money is returned as strings.

Each operation is declared once (``OPERATIONS``: method, path, role, typed query parameters); the same
declaration validates requests (400 naming the field) and builds the OpenAPI document served at
``/api/v1/openapi.json``. Authorization (roles, project isolation, rate limits) is ``apiauth``'s middleware;
handlers filter every query by ``apiauth.visible_projects``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmmeter_collector.access.keys import ROLES, KeyStoreError
from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api import calls
from llmmeter_collector.api.openapi import BadRequest, Operation, Param, document
from llmmeter_collector.budgets import forecast
from llmmeter_collector.insights import anomalies
from llmmeter_collector.insights import recommendations as insights

if TYPE_CHECKING:
    from llmmeter_collector.api.context import Collector

__all__ = ["OPERATIONS", "BadRequest", "counter_seed", "routes", "summary"]

PERIODS = ("today", "week", "month", "all")
DIMENSION_NAMES = ("projects", "features", "providers", "models")


def dimensions(pool: ConnectionPool, projects: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Every project, feature, provider and model with calls in the rollups (within ``projects`` when given)."""
    where, params = _scope(None, projects, None)
    out: dict[str, list[str]] = {}
    with pool.connection() as conn:
        for name in DIMENSION_NAMES:
            column = name[:-1]
            sql = f"SELECT DISTINCT {column} FROM llm_rollup_hour WHERE {where} AND {column} <> '' ORDER BY 1"
            out[name] = [row[0] for row in conn.execute(sql, params).fetchall() if row[0] is not None]
    return out


def period_starts(now: datetime) -> dict[str, datetime | None]:
    """Start of today, this ISO week (Monday) and this month, in UTC."""
    today = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "today": today,
        "week": today - timedelta(days=today.weekday()),
        "month": today.replace(day=1),
        "all": None,
    }


def _money(value: Decimal | None) -> str:
    return format(value if value is not None else Decimal(0), "f")


def _scope(since: datetime | None, projects: Sequence[str] | None, project: str | None) -> tuple[str, dict[str, Any]]:
    parts: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if since is not None:
        parts.append("bucket >= %(since)s")
        params["since"] = since
    if projects is not None:
        parts.append("project = ANY(%(visible)s)")
        params["visible"] = list(projects)
    if project is not None:
        parts.append("project = %(project)s")
        params["project"] = project
    return " AND ".join(parts), params


def _breakdown(
    pool: ConnectionPool, dims: str, since: datetime | None, projects: Sequence[str] | None, project: str | None
) -> list[dict[str, Any]]:
    where, params = _scope(since, projects, project)
    sql = f"""
        SELECT {dims}, sum(calls) AS calls, sum(unpriced_calls) AS unpriced_calls,
               sum(cost_usd) AS cost_usd, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
        FROM llm_rollup_hour WHERE {where}
        GROUP BY {dims} ORDER BY sum(cost_usd) DESC, sum(calls) DESC"""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
    for row in rows:
        row["cost_usd"] = _money(row["cost_usd"])
        for key in ("calls", "unpriced_calls", "input_tokens", "output_tokens"):
            row[key] = int(row[key])
    return rows


def summary(
    pool: ConnectionPool,
    period: str = "month",
    now: datetime | None = None,
    *,
    projects: Sequence[str] | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Spend today / this week / this month / all time, and breakdowns for ``period``.

    ``projects`` limits everything to those projects (an API key's visibility); ``project`` filters to one.
    """
    if period not in PERIODS:
        raise BadRequest("period", f"must be one of {', '.join(PERIODS)}, got {period!r}")
    starts = period_starts(now or datetime.now(timezone.utc))
    where, params = _scope(None, projects, project)
    sql = f"""
        SELECT coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(today)s), 0) AS today,
               coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(week)s), 0) AS week,
               coalesce(sum(cost_usd) FILTER (WHERE bucket >= %(month)s), 0) AS month,
               coalesce(sum(cost_usd), 0) AS all,
               coalesce(sum(calls), 0) AS calls, coalesce(sum(unpriced_calls), 0) AS unpriced_calls
        FROM llm_rollup_hour WHERE {where}"""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        totals = cur.execute(sql, {**params, **starts}).fetchone() or {}
        unpriced = cur.execute(
            f"""SELECT provider, model, sum(unpriced_calls) AS calls FROM llm_rollup_hour WHERE {where}
               GROUP BY provider, model HAVING sum(unpriced_calls) > 0 ORDER BY 3 DESC""",
            params,
        ).fetchall()
    since = starts[period]
    return {
        "currency": "USD",
        "period": period,
        "period_start": since.isoformat() if since else None,
        "spend": {p: _money(totals.get(p)) for p in PERIODS},
        "calls": int(totals.get("calls", 0)),
        "unpriced_calls": int(totals.get("unpriced_calls", 0)),
        "unpriced_models": [{**r, "calls": int(r["calls"])} for r in unpriced],
        "by_model": _breakdown(pool, "provider, model", since, projects, project),
        "by_provider": _breakdown(pool, "provider", since, projects, project),
        "by_feature": _breakdown(pool, "feature", since, projects, project),
        "by_project": _breakdown(pool, "project", since, projects, project),
    }


def counter_seed(pool: ConnectionPool) -> list[dict[str, Any]]:
    """All-time totals per metric label set, to start Prometheus counters where they were."""
    sql = """
        SELECT provider, model, project, feature, operation, status,
               sum(calls) AS calls, sum(unpriced_calls) AS unpriced_calls, sum(cost_usd) AS cost_usd,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
               sum(reasoning_tokens) AS reasoning_tokens
        FROM llm_rollup_hour GROUP BY 1, 2, 3, 4, 5, 6"""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql).fetchall()


FORECAST_PERIODS = ("day", "week", "month")


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The current UTC calendar day, ISO week or month containing ``now``: [start, end)."""
    today = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return today, today + timedelta(days=1)
    if period == "week":
        start = today - timedelta(days=today.weekday())
        return start, start + timedelta(days=7)
    start = today.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def spend_forecast(
    pool: ConnectionPool,
    *,
    period: str = "month",
    level: float = 0.8,
    method: str = "auto",
    now: datetime | None = None,
    project: str | None = None,
    feature: str | None = None,
    projects: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Period-end spend forecast (``forecast.forecast_period_end``) from this period's spend per day."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    start, end = period_bounds(period, now)
    where, params = _scope(start, projects, project)
    if feature is not None:
        where += " AND feature = %(feature)s"
        params["feature"] = feature
    with pool.connection() as conn, conn.cursor() as cur:
        rows = cur.execute(
            f"""SELECT date_trunc('day', bucket) AS day, sum(cost_usd) FROM llm_rollup_hour
                WHERE {where} AND bucket < %(now)s GROUP BY 1""",
            {**params, "now": now},
        ).fetchall()
    by_day = {r[0]: r[1] for r in rows}
    elapsed = (now - start).total_seconds() / 86400
    started = max(1, -int(-elapsed // 1))
    daily = [by_day.get(start + timedelta(days=i), Decimal(0)) for i in range(started)]
    try:
        result = forecast.forecast_period_end(
            daily, elapsed_days=elapsed, period_days=(end - start).total_seconds() / 86400, level=level, method=method
        )
    except forecast.ForecastError as exc:
        name = str(exc).split(" ", 1)[0]
        raise BadRequest(name if name in ("level", "method") else "period", str(exc)) from None
    return {
        "period": period,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "project": project,
        "feature": feature,
        **result.to_json(),
        "daily_spend_usd": [_money(d) for d in daily],
    }


def budget_statuses(collector: Collector, visible: Sequence[str] | None, project: str | None) -> list[dict[str, Any]]:
    """The budget engine's latest evaluation (``budget_status``), limited to what the caller may see.

    A key limited to projects sees a budget only when the budget's project scope lies within them; with
    ``project`` set, only budgets scoped to exactly that project.
    """
    try:
        from llmmeter_collector.api.budgets import engine_for
    except ImportError:  # budgets not part of this build
        return []
    engine = engine_for(collector)
    out = []
    for budget in engine.budgets():
        scoped = tuple(budget.scope.project or ())
        if visible is not None and not (scoped and set(scoped) <= set(visible)):
            continue
        if project is not None and scoped != (project,):
            continue
        status = engine.statuses.get(budget.name)
        if status is not None:
            out.append(status.to_json())
    return out


# ---- operations -------------------------------------------------------------------------------------------------

_PROJECT = Param("project", "string", "Only this project.")
_CALL_FILTERS = (
    Param("since", "datetime", "Calls at or after this time (ISO 8601; naive = UTC)."),
    Param("until", "datetime", "Calls before this time."),
    _PROJECT,
    Param("feature", "string", "Only this feature."),
    Param("provider", "string", "Only this provider (gen_ai.provider.name, e.g. openai)."),
    Param("model", "string", "Only this model (the model that served the call)."),
    Param("user", "string", "Only this end user (user.id)."),
    Param("status", "string", "ok or error.", choices=("ok", "error")),
    Param("min_cost", "decimal", "Calls costing at least this many USD (unpriced calls excluded)."),
)
_MONEY = {"type": "string", "format": "decimal"}
_CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "ts": {"type": "string", "format": "date-time"},
        "trace_id": {"type": "string"},
        "span_id": {"type": "string"},
        **{f: {"type": "string"} for f in ("project", "feature", "user_id", "provider", "model", "status")},
        **{f: {"type": "integer"} for f in ("input_tokens", "output_tokens", "cache_read_tokens", "retries")},
        "cost_usd": {"type": ["string", "null"], "format": "decimal", "description": "null: unpriced"},
    },
}
_BREAKDOWN = {
    "type": "array",
    "items": {"type": "object", "properties": {"calls": {"type": "integer"}, "cost_usd": _MONEY}},
}

SUMMARY = Operation(
    "GET",
    "/api/v1/summary",
    "Spend today, this week, this month and all time, with breakdowns",
    params=(
        Param("period", "string", "Period of the breakdowns.", default="month", choices=PERIODS),
        _PROJECT,
    ),
    response={
        "type": "object",
        "properties": {
            "spend": {"type": "object", "properties": {p: _MONEY for p in PERIODS}},
            "calls": {"type": "integer"},
            "unpriced_calls": {"type": "integer"},
            **{k: _BREAKDOWN for k in ("by_model", "by_provider", "by_feature", "by_project")},
        },
    },
)
CALLS = Operation(
    "GET",
    "/api/v1/calls",
    "A page of calls, newest (or most expensive) first, with a cursor to the next page",
    description="Keyset pagination: pass `next_cursor` back as `cursor`; rows inserted meanwhile never shift pages.",
    params=(
        *_CALL_FILTERS,
        Param(
            "order", "string", "time: newest first; cost: most expensive first.", default="time", choices=calls.ORDERS
        ),
        Param("limit", "integer", "Calls per page.", default=50, minimum=1, maximum=1000),
        Param("cursor", "string", "next_cursor of the previous page."),
    ),
    response={
        "type": "object",
        "properties": {"calls": {"type": "array", "items": _CALL_SCHEMA}, "next_cursor": {"type": ["string", "null"]}},
    },
)
EXPORT = Operation(
    "GET",
    "/api/v1/export",
    "Every matching call as CSV or JSON lines, oldest first, streamed",
    params=(*_CALL_FILTERS, Param("format", "string", "csv or jsonl.", default="csv", choices=("csv", "jsonl"))),
    response={"type": "string"},
    media_types=("text/csv", "application/x-ndjson"),
)
RECOMMENDATIONS = Operation(
    "GET",
    "/api/v1/recommendations",
    "Savings recommendations ranked by monthly savings, with evidence",
    params=(Param("days", "integer", "Window to analyse, in days.", default=30, minimum=1, maximum=365), _PROJECT),
    response={
        "type": "object",
        "properties": {
            "calls": {"type": "integer"},
            "message": {"type": "string"},
            "recommendations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string"},
                        "title": {"type": "string"},
                        "action": {"type": "string"},
                        "monthly_savings_usd": {"type": ["string", "null"], "format": "decimal"},
                        "confidence": {"type": "string", "enum": ["high", "medium", "low"]},
                        "evidence": {"type": "object"},
                    },
                },
            },
        },
    },
    tag="insights",
)
FORECAST = Operation(
    "GET",
    "/api/v1/forecast",
    "Period-end spend forecast with an interval",
    params=(
        Param("period", "string", "The current UTC day, ISO week or month.", default="month", choices=FORECAST_PERIODS),
        Param("method", "string", "Forecast method.", default="auto", choices=forecast.METHODS),
        Param("level", "integer", "Central interval probability in percent.", default=80, minimum=50, maximum=99),
        _PROJECT,
        Param("feature", "string", "Only this feature."),
    ),
    response={
        "type": "object",
        "properties": {
            k: _MONEY | {"type": ["string", "null"]} for k in ("spent_usd", "expected_usd", "lower_usd", "upper_usd")
        },
    },
    tag="insights",
)
ANOMALIES = Operation(
    "GET",
    "/api/v1/anomalies",
    "Hours and days whose spend is far outside their trailing baseline, per project and feature",
    params=(
        Param("granularity", "string", "Buckets to check.", default="both", choices=tuple(anomalies.GRANULARITIES)),
        Param("threshold", "integer", "Robust z-score to flag.", default=5, minimum=2, maximum=100),
        Param("min_usd", "decimal", "Smallest deviation worth reporting, USD.", default=Decimal(1)),
        _PROJECT,
    ),
    response={"type": "object", "properties": {"anomalies": {"type": "array", "items": {"type": "object"}}}},
    tag="insights",
)
OPENAPI = Operation("GET", "/api/v1/openapi.json", "This OpenAPI document", role="public", tag="meta")
_KEY_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "prefix": {"type": "string"},
        "role": {"type": "string", "enum": ["ingest", "viewer", "admin"]},
        "projects": {"type": "array", "items": {"type": "string"}},
        "created_at": {"type": "string", "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
KEYS_LIST = Operation(
    "GET",
    "/api/v1/keys",
    "API keys (never the keys themselves)",
    role="admin",
    params=(Param("include_revoked", "boolean", "List revoked keys too.", default=False),),
    response={"type": "object", "properties": {"keys": {"type": "array", "items": _KEY_SCHEMA}}},
    tag="keys",
)
KEYS_CREATE = Operation(
    "POST",
    "/api/v1/keys",
    "Create an API key; the answer is the only time the key is shown",
    role="admin",
    request_body={
        "type": "object",
        "required": ["name", "role"],
        "properties": {
            "name": {"type": "string"},
            "role": {"type": "string", "enum": ["ingest", "viewer", "admin"]},
            "projects": {"type": "array", "items": {"type": "string"}, "description": "empty: every project"},
        },
    },
    response={"type": "object", "properties": {"key": {"type": "string"}, "name": {"type": "string"}}},
    tag="keys",
)
KEYS_REVOKE = Operation("DELETE", "/api/v1/keys/{key_id}", "Revoke an API key", role="admin", tag="keys")
DIMENSIONS = Operation(
    "GET",
    "/api/v1/dimensions",
    "The projects, features, providers and models that have calls (for hints on a misspelt filter)",
    response={
        "type": "object",
        "properties": {k: {"type": "array", "items": {"type": "string"}} for k in DIMENSION_NAMES},
    },
)

CALL_FILTERS = _CALL_FILTERS  # for the other modules' call-level endpoints (api/focus.py)

OPERATIONS = (
    SUMMARY,
    CALLS,
    EXPORT,
    RECOMMENDATIONS,
    FORECAST,
    ANOMALIES,
    OPENAPI,
    KEYS_LIST,
    KEYS_CREATE,
    KEYS_REVOKE,
    DIMENSIONS,
)


def _bad(exc: BadRequest) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)


def _call_filter(request: Request, args: dict[str, Any]) -> calls.CallFilter:
    since, until = args["since"], args["until"]
    if since is not None and until is not None and since >= until:
        raise BadRequest("until", "must be later than since")
    return calls.CallFilter(
        since=since,
        until=until,
        project=args["project"],
        feature=args["feature"],
        provider=args["provider"],
        model=args["model"],
        user=args["user"],
        status=args["status"],
        min_cost=args["min_cost"],
        visible_projects=apiauth.visible_projects(request),
    )


call_filter = _call_filter


def _beyond_own_grant(request: Request, role: str, projects: Sequence[str]) -> JSONResponse | None:
    """A 403 when the key asked for would grant more than the caller's key: a project outside the caller's
    (an unlimited key is outside any limited one) or a role the caller does not have."""
    caller = apiauth.principal(request)
    if caller is None:
        return None
    if not apiauth.within(request, [p.strip() for p in projects]):
        own = ", ".join(caller.projects)
        return JSONResponse(
            {"error": f"projects: this key may only create keys limited to its projects ({own})", "field": "projects"},
            status_code=403,
        )
    if role in ROLES and not caller.allows(role):  # an unknown role is the store's 400
        return JSONResponse({"error": f"role: a {caller.role} key cannot create a {role} key", "field": "role"}, 403)
    return None


def routes(collector: Collector) -> list[Route]:
    """The REST API's routes, mounted by the collector service."""

    def endpoint(
        op: Operation, handler: Callable[[Request, dict[str, Any]], Any]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint: parse the query by ``op``, run ``handler`` in a worker thread, answer JSON."""

        async def run(request: Request) -> Response:
            try:
                args = op.parse(request.query_params)
                result = await run_in_threadpool(handler, request, args)
            except BadRequest as exc:
                return _bad(exc)
            return result if isinstance(result, Response) else JSONResponse(result)

        run.__doc__ = op.summary
        return run

    def get_summary(request: Request, args: dict[str, Any]) -> Any:
        visible = apiauth.visible_projects(request)
        body = summary(collector.pool, args["period"], projects=visible, project=args["project"])
        body["budgets"] = budget_statuses(collector, visible, args["project"])
        return body

    def get_calls(request: Request, args: dict[str, Any]) -> Any:
        where = _call_filter(request, args)
        return calls.page(collector.pool, where, order=args["order"], limit=args["limit"], cursor=args["cursor"])

    def get_export(request: Request, args: dict[str, Any]) -> Any:
        where = _call_filter(request, args)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if args["format"] == "jsonl":
            body, media, name = calls.export_jsonl(collector.pool, where), "application/x-ndjson", "jsonl"
        else:
            body, media, name = calls.export_csv(collector.pool, where), "text/csv; charset=utf-8", "csv"
        headers = {"Content-Disposition": f'attachment; filename="llmmeter-calls-{stamp}.{name}"'}
        return StreamingResponse(body, media_type=media, headers=headers)

    def get_recommendations(request: Request, args: dict[str, Any]) -> Any:
        return insights.recommend(
            collector.pool,
            collector.catalog,
            days=args["days"],
            project=args["project"],
            visible_projects=apiauth.visible_projects(request),
        )

    def get_forecast(request: Request, args: dict[str, Any]) -> Any:
        return spend_forecast(
            collector.pool,
            period=args["period"],
            method=args["method"],
            level=args["level"] / 100,
            project=args["project"],
            feature=args["feature"],
            projects=apiauth.visible_projects(request),
        )

    def get_anomalies(request: Request, args: dict[str, Any]) -> Any:
        return anomalies.detect(
            collector.pool,
            granularity=args["granularity"],
            threshold=float(args["threshold"]),
            min_usd=args["min_usd"],
            project=args["project"],
            visible_projects=apiauth.visible_projects(request),
        )

    def get_dimensions(request: Request, args: dict[str, Any]) -> Any:
        return dimensions(collector.pool, apiauth.visible_projects(request))

    async def get_openapi(request: Request) -> Response:
        return JSONResponse(document(request.app.routes, OPERATIONS))

    def _key_json(info: Any) -> dict[str, Any]:
        return {
            "id": info.key_id,
            "name": info.name,
            "prefix": info.prefix,
            "role": info.role,
            "projects": list(info.projects),
            "created_at": info.created_at.isoformat(),
            "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        }

    def list_keys(request: Request, args: dict[str, Any]) -> Any:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        within = apiauth.visible_projects(request)  # a scoped admin lists only keys within its projects
        found = collector.keys.list_keys(include_revoked=args["include_revoked"], within=within)
        return {"keys": [_key_json(k) for k in found]}

    async def create_key(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body: must be a JSON object", "field": "body"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body: must be a JSON object", "field": "body"}, status_code=400)
        name, role, projects = body.get("name"), body.get("role"), body.get("projects", [])
        if not isinstance(name, str) or not isinstance(role, str):
            missing = "name" if not isinstance(name, str) else "role"
            return JSONResponse({"error": f"{missing}: is required (a string)", "field": missing}, 400)
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            return JSONResponse({"error": "projects: must be a list of strings", "field": "projects"}, 400)
        unknown = set(body) - {"name", "role", "projects"}
        if unknown:
            first = sorted(unknown)[0]
            return JSONResponse({"error": f"{first}: unknown field", "field": first}, status_code=400)
        refused = _beyond_own_grant(request, role, projects)
        if refused is not None:
            return refused
        try:
            token = await run_in_threadpool(collector.keys.create, name, role, projects)
        except KeyStoreError as exc:
            field_name = str(exc).split(":", 1)[0]
            return JSONResponse({"error": str(exc), "field": field_name}, status_code=400)
        created = [k for k in collector.keys.list_keys() if k.name == name.strip()]
        return JSONResponse({"key": token, **(_key_json(created[0]) if created else {"name": name})}, status_code=201)

    async def revoke_key(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        raw = request.path_params["key_id"]
        if not raw.isdigit():
            return JSONResponse({"error": f"key_id: must be a whole number, got {raw!r}", "field": "key_id"}, 400)
        within = apiauth.visible_projects(request)  # a scoped admin revokes only keys within its projects
        if not await run_in_threadpool(collector.keys.revoke, int(raw), within):
            return JSONResponse({"error": f"key_id: no active key with id {raw}", "field": "key_id"}, 404)
        return JSONResponse({"revoked": int(raw)})

    get_openapi.__doc__ = OPENAPI.summary
    create_key.__doc__ = KEYS_CREATE.summary
    revoke_key.__doc__ = KEYS_REVOKE.summary
    return [
        Route(SUMMARY.path, endpoint(SUMMARY, get_summary)),
        Route(CALLS.path, endpoint(CALLS, get_calls)),
        Route(EXPORT.path, endpoint(EXPORT, get_export)),
        Route(RECOMMENDATIONS.path, endpoint(RECOMMENDATIONS, get_recommendations)),
        Route(FORECAST.path, endpoint(FORECAST, get_forecast)),
        Route(ANOMALIES.path, endpoint(ANOMALIES, get_anomalies)),
        Route(OPENAPI.path, get_openapi),
        Route(KEYS_LIST.path, endpoint(KEYS_LIST, list_keys), methods=["GET"]),
        Route(KEYS_CREATE.path, create_key, methods=["POST"]),
        Route(KEYS_REVOKE.path, revoke_key, methods=["DELETE"]),
        Route(DIMENSIONS.path, endpoint(DIMENSIONS, get_dimensions)),
    ]
