"""Prompts, prompt families and experiments over REST (``insights/prompts.py``, ``insights/similarity.py``,
``insights/experiments.py``). Reads: every key sees its projects only.

    GET /api/v1/prompts                 every prompt with its versions, calls and spend
    GET /api/v1/prompts/{name}          one prompt's versions, what each change did, its daily series
    GET /api/v1/prompt-families         near-identical prompts across features and models (SimHash)
    GET /api/v1/experiments             every experiment with its variants
    GET /api/v1/experiments/{name}      each variant against the control: intervals, tests, a verdict
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.openapi import BadRequest, Operation, Param, register
from llmmeter_collector.insights import experiments, prompts, similarity

_RANGE = (
    Param("since", "datetime", "From this day (UTC)."),
    Param("until", "datetime", "Before this day."),
    Param("project", "string", "Only this project."),
)
PROMPTS = Operation("GET", "/api/v1/prompts", "Every prompt with its versions, calls and spend", params=_RANGE,
                    tag="prompts")  # fmt: skip
PROMPT = Operation(
    "GET", "/api/v1/prompts/{name}", "One prompt's versions, what each version changed, and its daily series",
    params=_RANGE, tag="prompts",
)  # fmt: skip
FAMILIES = Operation(
    "GET", "/api/v1/prompt-families", "Near-identical prompts across features and models, side by side",
    params=(*_RANGE, Param("max_distance", "integer", "SimHash bits apart that still count as one family.",
                           default=similarity.DEFAULT_DISTANCE, minimum=0, maximum=similarity.MAX_DISTANCE),
            Param("limit", "integer", "Families to return, the most expensive first (total_families counts all).",
                  default=50, minimum=1, maximum=1000)),
    tag="prompts",
)  # fmt: skip
EXPERIMENTS = Operation("GET", "/api/v1/experiments", "Every experiment with its variants", params=_RANGE,
                        tag="prompts")  # fmt: skip
EXPERIMENT = Operation(
    "GET", "/api/v1/experiments/{name}",
    "Each variant against the control: cost per call and per user, latency, error rate, intervals, tests, verdict",
    params=(*_RANGE, Param("control", "string", "The control variant [control, baseline, a, or the first].")),
    tag="prompts",
)  # fmt: skip
register(PROMPTS, PROMPT, FAMILIES, EXPERIMENTS, EXPERIMENT)


def routes(collector: Collector) -> list[Route]:
    pool = lambda: collector.pool  # noqa: E731

    def scope(request: Request, args: dict[str, Any]) -> dict[str, Any]:
        if args["since"] is not None and args["until"] is not None and args["until"] <= args["since"]:
            raise BadRequest("until", "must be later than since")
        return {"since": args["since"], "until": args["until"], "projects": apiauth.visible_projects(request)}

    def list_prompts(request: Request, args: dict[str, Any]) -> Any:
        return {"prompts": prompts.prompts(pool(), project=args["project"], **scope(request, args))}

    def show_prompt(request: Request, args: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        found = prompts.show(pool(), name, project=args["project"], **scope(request, args))
        if found is None:
            return JSONResponse({"error": f"name: no prompt {name!r} in this range", "field": "name"}, 404)
        return found

    def list_families(request: Request, args: dict[str, Any]) -> Any:
        window = scope(request, args)
        if args["project"] is not None:
            window["projects"] = [args["project"]]
        found = similarity.families(pool(), max_distance=args["max_distance"], **window)
        return {
            "max_distance_bits": args["max_distance"],
            "total_families": len(found),
            "families": [similarity.family_json(f) for f in found[: args["limit"]]],
        }

    def list_experiments(request: Request, args: dict[str, Any]) -> Any:
        window = scope(request, args)
        if args["project"] is not None:
            window["projects"] = [args["project"]]
        return {"experiments": experiments.experiments(pool(), **window)}

    def show_experiment(request: Request, args: dict[str, Any]) -> Any:
        name = request.path_params["name"]
        window = scope(request, args)
        if args["project"] is not None:
            window["projects"] = [args["project"]]
        try:
            found = experiments.analyse(pool(), name, control=args["control"], **window)
        except ValueError as exc:
            return JSONResponse({"error": str(exc), "field": "control"}, status_code=400)
        if found is None:
            return JSONResponse({"error": f"name: no experiment {name!r} in this range", "field": "name"}, 404)
        return found

    def endpoint(op: Operation, handler: Callable[[Request, dict[str, Any]], Any]) -> Any:
        async def run(request: Request) -> Response:
            try:
                args = op.parse(request.query_params)
                result = await run_in_threadpool(handler, request, args)
            except BadRequest as exc:
                return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
            return result if isinstance(result, Response) else JSONResponse(result)

        run.__doc__ = op.summary
        return run

    return [
        Route(PROMPTS.path, endpoint(PROMPTS, list_prompts), methods=["GET"]),
        Route(FAMILIES.path, endpoint(FAMILIES, list_families), methods=["GET"]),
        Route(PROMPT.path, endpoint(PROMPT, show_prompt), methods=["GET"]),
        Route(EXPERIMENTS.path, endpoint(EXPERIMENTS, list_experiments), methods=["GET"]),
        Route(EXPERIMENT.path, endpoint(EXPERIMENT, show_experiment), methods=["GET"]),
    ]
