"""REST routes for budgets, mounted by ``budgets.routes(collector)``; also starts the budget engine.

    GET    /api/v1/budgets            every budget (file and API) with its current status
    POST   /api/v1/budgets            create an API budget (409 if the name exists)
    GET    /api/v1/budgets/status     the cached evaluation of every budget (the SDK guard polls this)
    POST   /api/v1/budgets/reload     re-read the budgets file (SIGHUP does the same); a bad file keeps the old set
    GET    /api/v1/budgets/{name}     one budget and its status
    PUT    /api/v1/budgets/{name}     create or replace an API budget
    DELETE /api/v1/budgets/{name}     delete an API budget (file budgets are read-only: 409)
    GET    /api/v1/report             the weekly / monthly cost report (``insights/report.py``)

Money is returned as strings. Writes need an admin key when keys are in use (``apiauth``). A budget belongs
to its scope: a key limited to projects sees, creates, replaces and deletes only budgets whose
``scope.project`` lies within its projects (never a budget of every project). A replacement is checked
against the stored budget's scope and the new one; another scope's budget answers 404 to GET and DELETE
and 403 to PUT (its name is taken).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmmeter_collector.budgets import definition as b
from llmmeter_collector.budgets.status import (
    BudgetEngine,
    delete_api_budget,
    load_api_budgets,
    save_api_budget,
)
from llmmeter_collector.insights import report

if TYPE_CHECKING:
    from llmmeter_collector.api.context import Collector

logger = logging.getLogger("llmmeter.collector")
_ENGINES: weakref.WeakKeyDictionary[Collector, BudgetEngine] = weakref.WeakKeyDictionary()


def engine_for(collector: Collector) -> BudgetEngine:
    """The collector's budget engine, created, registered on its Prometheus registry and started once."""
    engine = _ENGINES.get(collector)
    if engine is None:
        settings = collector.settings
        engine = BudgetEngine(
            lambda: collector.pool,
            settings.budgets_file,
            settings.budgets_refresh_seconds,
            alive=lambda: collector.ready,
        )
        collector.metrics.registry.register(engine)
        engine.start()
        _ENGINES[collector] = engine
        _reload_on_sighup(engine)
    return engine


def _reload_on_sighup(engine: BudgetEngine) -> None:
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None or threading.current_thread() is not threading.main_thread() or not engine.budgets_file:
        return
    previous = signal.getsignal(sighup)  # e.g. the price overrides reload installed by ``serve``: keep it

    def reload(signum: int, frame: FrameType | None) -> None:
        engine.request_reload()
        if callable(previous):
            previous(signum, frame)

    signal.signal(sighup, reload)


def _visible(request: Request) -> tuple[str, ...] | None:
    try:
        from llmmeter_collector.api.auth import visible_projects
    except ImportError:  # pragma: no cover - API keys not installed
        return None
    return visible_projects(request)


def _may_see(budget: b.Budget, projects: tuple[str, ...] | None) -> bool:
    return projects is None or (bool(budget.scope.project) and set(budget.scope.project) <= set(projects))


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise b.BudgetError("body", f"not valid JSON: {exc}") from None


def routes(collector: Collector) -> list[Route]:
    engine = engine_for(collector)

    def detail(budget: b.Budget) -> dict[str, Any]:
        status = engine.statuses.get(budget.name)
        return {**budget.to_json(), "status": status.to_json() if status else None}

    async def _owned(name: str, projects: tuple[str, ...] | None) -> bool:
        """Whether every budget named ``name`` (the file's, and the API's as stored in Postgres now, not as
        last refreshed: another process may have changed it) is one ``projects`` may see; True when none."""
        if projects is None:
            return True
        stored = await run_in_threadpool(load_api_budgets, collector.pool)
        return all(_may_see(x, projects) for x in (*engine.file_budgets, *stored) if x.name == name)

    async def refresh() -> None:
        try:
            await run_in_threadpool(engine.refresh)
        except Exception as exc:  # the write succeeded; the next background refresh retries
            logger.warning("budget evaluation after a change failed: %r", exc)

    async def list_budgets(request: Request) -> Response:
        projects = _visible(request)
        items = [detail(x) for x in engine.budgets() if _may_see(x, projects)]
        file_names = {x.name for x in engine.file_budgets}
        shadowed = [x.name for x in engine.api_budgets if x.name in file_names and _may_see(x, projects)]
        return JSONResponse({"budgets": items, "shadowed_by_file": shadowed, "budgets_file": engine.budgets_file})

    async def status(request: Request) -> Response:
        projects = _visible(request)
        visible = {x.name for x in engine.budgets() if _may_see(x, projects)}
        items = [s.to_json() for name, s in sorted(engine.statuses.items()) if name in visible]
        return JSONResponse(
            {
                "evaluated_at": engine.evaluated_at.isoformat() if engine.evaluated_at else None,
                "refresh_seconds": engine.refresh_seconds,
                "error": engine.last_error or None,
                "budgets": items,
            }
        )

    async def create(request: Request) -> Response:
        try:
            budget = b.parse_budget(await _body(request), source="api")
        except b.BudgetError as exc:
            return _error(400, str(exc), exc.field)
        if any(x.name == budget.name for x in engine.file_budgets):
            return _error(409, f"budget {budget.name!r} is defined in the budgets file (read-only)", "name")
        if not _may_see(budget, _visible(request)):
            return _error(403, "the budget's scope.project must lie within your key's projects", "scope.project")
        if not await run_in_threadpool(save_api_budget, collector.pool, budget, create_only=True):
            return _error(409, f"budget {budget.name!r} already exists (PUT /api/v1/budgets/{budget.name} replaces it)")
        await refresh()
        return JSONResponse(detail(budget), status_code=201)

    async def get_one(request: Request) -> Response:
        budget = engine.get(request.path_params["name"])
        if budget is None or not _may_see(budget, _visible(request)):
            return _error(404, f"no budget named {request.path_params['name']!r}")
        return JSONResponse(detail(budget))

    async def put(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            data = await _body(request)
            if isinstance(data, dict) and data.setdefault("name", name) != name:
                raise b.BudgetError("name", f"must match the URL ({name!r}), got {data['name']!r}")
            budget = b.parse_budget(data, source="api")
        except b.BudgetError as exc:
            return _error(400, str(exc), exc.field)
        projects = _visible(request)
        if not await _owned(name, projects):  # the old scope: the name is taken by another scope's budget
            return _error(403, f"budget {name!r} belongs to projects outside your key's", "name")
        if any(x.name == name for x in engine.file_budgets):
            return _error(409, f"budget {name!r} is defined in the budgets file (read-only)", "name")
        if not _may_see(budget, projects):  # the new scope
            return _error(403, "the budget's scope.project must lie within your key's projects", "scope.project")
        await run_in_threadpool(save_api_budget, collector.pool, budget)
        await refresh()
        return JSONResponse(detail(budget))

    async def delete(request: Request) -> Response:
        name = request.path_params["name"]
        projects = _visible(request)
        if not await _owned(name, projects):
            return _error(404, f"no budget named {name!r}")
        if any(x.name == name for x in engine.file_budgets):
            return _error(409, f"budget {name!r} is defined in the budgets file (read-only); edit the file")
        if not await run_in_threadpool(delete_api_budget, collector.pool, name):
            return _error(404, f"no budget named {name!r}")
        await refresh()
        return JSONResponse({"deleted": name})

    async def reload(request: Request) -> Response:
        if not engine.budgets_file:
            return _error(400, "no budgets file configured (set LLMMETER_BUDGETS_FILE)")
        try:
            loaded = await run_in_threadpool(engine.reload_file)
        except b.BudgetError as exc:
            return _error(400, f"{exc}; the previous budgets stay in force", exc.field)
        await refresh()
        return JSONResponse({"budgets_file": engine.budgets_file, "budgets": [x.name for x in loaded]})

    return [
        *_report_routes(lambda: collector.pool, engine, _visible),
        Route("/api/v1/budgets", list_budgets, methods=["GET"]),
        Route("/api/v1/budgets", create, methods=["POST"]),
        Route("/api/v1/budgets/status", status, methods=["GET"]),
        Route("/api/v1/budgets/reload", reload, methods=["POST"]),
        Route("/api/v1/budgets/{name}", get_one, methods=["GET"]),
        Route("/api/v1/budgets/{name}", put, methods=["PUT"]),
        Route("/api/v1/budgets/{name}", delete, methods=["DELETE"]),
    ]


def _report_routes(pool: Any, engine: BudgetEngine | None, visible: Any = lambda request: None) -> list[Route]:
    """``GET /api/v1/report``; ``pool`` returns the read pool, ``visible(request)`` the key's projects."""

    async def get_report(request: Request) -> Response:
        params = request.query_params
        current = params.get("current", "false").lower()
        if current not in ("true", "false", "1", "0"):
            return JSONResponse({"error": f"current must be true or false, got {current!r}"}, status_code=400)
        try:
            body = await run_in_threadpool(
                report.build,
                pool(),
                params.get("period", "week"),
                None,
                current in ("true", "1"),
                engine,
                visible(request),
            )
        except report.ReportError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(body)

    return [Route("/api/v1/report", get_report, methods=["GET"])]
