"""``GET /api/v1/usage``: calls, tokens and dollars per UTC day, project, feature and end user (the user-day rollup),
for billing one's own customers (``llmmeter export stripe``). A key limited to projects sees only its projects."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.openapi import BadRequest, Operation, Param, register

USAGE = Operation(
    "GET",
    "/api/v1/usage",
    "Calls, tokens and dollars per UTC day, project, feature and end user",
    params=(
        Param("since", "datetime", "From this day (UTC).", required=True),
        Param("until", "datetime", "Before this day (UTC).", required=True),
        Param("project", "string", "Only this project."),
    ),
    tag="spend",
)
register(USAGE)
MAX_DAYS = 400


def routes(collector: Collector) -> list[Route]:
    def usage(request: Request) -> Response:
        try:
            args = USAGE.parse(request.query_params)
            if args["until"] <= args["since"]:
                raise BadRequest("until", "must be later than since")
            if (args["until"] - args["since"]).days > MAX_DAYS:
                raise BadRequest("until", f"at most {MAX_DAYS} days at once")
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        where = ["bucket >= %(since)s", "bucket < %(until)s"]
        params: dict[str, Any] = {"since": args["since"], "until": args["until"]}
        if args["project"]:
            where.append("project = %(project)s")
            params["project"] = args["project"]
        visible = apiauth.visible_projects(request)
        if visible is not None:
            where.append("project = ANY(%(visible)s)")
            params["visible"] = list(visible)
        with collector.pool.connection() as conn:
            found = conn.execute(
                "SELECT bucket::date, project, feature, user_id, calls, unpriced_calls, input_tokens, output_tokens,"
                f" cost_usd FROM llm_rollup_user_day WHERE {' AND '.join(where)} AND calls > 0"
                " ORDER BY 1, 2, 3, 4",
                params,
            ).fetchall()
        return JSONResponse({
            "usage": [
                {"day": d.isoformat(), "project": p, "feature": f, "user": u, "calls": c, "unpriced_calls": up,
                 "input_tokens": i, "output_tokens": o, "cost_usd": format(usd, "f")}
                for d, p, f, u, c, up, i, o, usd in found
            ]
        })  # fmt: skip

    async def get_usage(request: Request) -> Response:
        return await run_in_threadpool(usage, request)

    get_usage.__doc__ = USAGE.summary
    return [Route(USAGE.path, get_usage, methods=["GET"])]
