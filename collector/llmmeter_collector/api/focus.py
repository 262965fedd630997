"""FOCUS over REST (``exporters/focus.py``):

    GET  /api/v1/export/focus     the ledger as a FOCUS 1.2 CSV (call filters, ``by=feature,user``), streamed
    POST /api/v1/focus/import     keep the AI-service rows of a cloud's FOCUS export (admin of every project)
    GET  /api/v1/focus/costs      what the imports hold, per UTC day and service (keys of every project)

The export counts only priced calls: FOCUS costs must not be null, and a missing price is never a $0 row. The
number of unpriced calls left out is in the ``X-Llmmeter-Unpriced-Calls`` header (and the CLI says it).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from psycopg import sql
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmmeter_collector.api import auth as apiauth
from llmmeter_collector.api import routes as api
from llmmeter_collector.api.context import Collector
from llmmeter_collector.api.openapi import BadRequest, Operation, Param, register
from llmmeter_collector.exporters import focus

BY = ("feature", "user")
EXPORT = Operation(
    "GET",
    "/api/v1/export/focus",
    "The ledger as a FOCUS 1.2 dataset (CSV): one row per UTC day, provider, model, token class and project",
    description="`by=feature,user` splits rows further. Unpriced calls are left out (FOCUS costs are never null); "
    "their number is in the X-Llmmeter-Unpriced-Calls header.",
    params=(*api.CALL_FILTERS, Param("by", "string", "Also split rows by feature and/or user: feature, user.")),
    response={"type": "string"},
    media_types=("text/csv",),
    tag="spend",
)
IMPORT = Operation(
    "POST",
    "/api/v1/focus/import",
    "Keep the AI-service rows of a cloud's FOCUS export beside the ledger (idempotent per file)",
    role="admin",
    request_body={
        "type": "object",
        "properties": {
            "file_name": {"type": "string"},
            "sha256": {"type": "string"},
            "rows_read": {"type": "integer"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["file_name", "sha256", "rows_read", "columns", "rows"],
    },
    tag="spend",
)
COSTS = Operation(
    "GET",
    "/api/v1/focus/costs",
    "Cloud AI spend from FOCUS imports, per UTC day and service, and the imports",
    params=(Param("since", "datetime", "From this day."), Param("until", "datetime", "Before this day.")),
    tag="spend",
)
register(EXPORT, IMPORT, COSTS)

_SUMS = """count(*) AS calls,
    count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced,
    sum(greatest(0, input_tokens - cache_read_tokens - cache_write_tokens - input_audio_tokens))
        FILTER (WHERE cost_usd IS NOT NULL) AS t_input,
    sum(cache_read_tokens) FILTER (WHERE cost_usd IS NOT NULL) AS t_cache_read,
    sum(cache_write_tokens) FILTER (WHERE cost_usd IS NOT NULL) AS t_cache_write,
    sum(greatest(0, output_tokens - output_audio_tokens)) FILTER (WHERE cost_usd IS NOT NULL) AS t_output,
    sum(input_audio_tokens) FILTER (WHERE cost_usd IS NOT NULL) AS t_input_audio,
    sum(output_audio_tokens) FILTER (WHERE cost_usd IS NOT NULL) AS t_output_audio,
    count(*) FILTER (WHERE cost_request_usd IS NOT NULL) AS t_request,
    sum(cost_input_usd), sum(cost_cache_read_usd), sum(cost_cache_write_usd), sum(cost_output_usd),
    sum(cost_input_audio_usd), sum(cost_output_audio_usd), sum(cost_request_usd)"""
_CLASSES = ("input", "cache_read", "cache_write", "output", "input_audio", "output_audio", "request")


def _by(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    wanted = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [w for w in wanted if w not in BY]
    if unknown:
        raise BadRequest("by", f"must be feature and/or user, got {unknown[0]!r}")
    return wanted


def _usages(rows: list[tuple[Any, ...]], by: tuple[str, ...]) -> Iterator[focus.Usage]:
    for row in rows:
        day, provider, model, project, *rest = row
        feature = rest.pop(0) if "feature" in by else None
        user = rest.pop(0) if "user" in by else None
        calls, unpriced, *numbers = rest
        tokens, costs = numbers[: len(_CLASSES)], numbers[len(_CLASSES) :]
        if calls == unpriced:
            continue
        yield focus.Usage(
            day=day, provider=provider, model=model, project=project, feature=feature, user=user,
            calls=int(calls) - int(unpriced),
            quantities={c: int(t or 0) for c, t in zip(_CLASSES, tokens, strict=True)},
            costs={c: v for c, v in zip(_CLASSES, costs, strict=True) if v is not None},
        )  # fmt: skip


def _csv(rows: Iterator[dict[str, str]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=focus.COLUMNS, lineterminator="\n")
    writer.writeheader()
    for n, row in enumerate(rows, start=1):
        writer.writerow(row)
        if n % 1000 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def routes(collector: Collector) -> list[Route]:
    def export(request: Request) -> Response:
        try:
            args = EXPORT.parse(request.query_params)
            by = _by(args.pop("by"))
            where, params = api.call_filter(request, args).where()
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        dims = ["date_trunc('day', ts)::date", "provider", "model", "project"]
        dims += ["feature"] if "feature" in by else []
        dims += ["user_id"] if "user" in by else []
        query = sql.SQL(
            "SELECT {dims}, " + _SUMS + " FROM llm_calls WHERE {where} AND price_source <> 'not_billed'"
            " GROUP BY {n} ORDER BY {n}"
        ).format(dims=sql.SQL(", ".join(dims)), where=where, n=sql.SQL(", ".join(str(i + 1) for i in range(len(dims)))))
        with collector.pool.connection() as conn:
            found = conn.execute(query, params).fetchall()
        unpriced = sum(int(r[len(dims) + 1]) for r in found)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        headers = {
            "Content-Disposition": f'attachment; filename="llmmeter-focus-{stamp}.csv"',
            "X-Llmmeter-Unpriced-Calls": str(unpriced),
            "X-Focus-Version": focus.FOCUS_VERSION,
        }
        body = _csv(iter(focus.rows(_usages(found, by))))
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)

    def store(request: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            return JSONResponse({"error": "body: must be a JSON object", "field": "body"}, status_code=400)
        for name, kind in (("file_name", str), ("sha256", str), ("rows_read", int), ("columns", list), ("rows", list)):
            if not isinstance(body.get(name), kind):
                return JSONResponse({"error": f"{name}: is required ({kind.__name__})", "field": name}, 400)
        rows = body["rows"]
        if not all(isinstance(r, dict) and isinstance(r.get("_row"), int) for r in rows):
            return JSONResponse({"error": "rows: each must be an object with its _row number", "field": "rows"}, 400)
        try:
            kept, _ = focus.parse_rows(rows, body["columns"])
        except focus.FocusError as exc:
            return JSONResponse({"error": str(exc), "field": "rows"}, status_code=400)
        numbers = [r["_row"] for r in rows if focus.is_ai(r)]
        found = apiauth.principal(request)
        actor = f"key {found.key_id} ({found.name})" if found is not None else "no key"
        with collector.pool.connection() as conn, conn.transaction():
            created = conn.execute(
                "INSERT INTO focus_imports (sha256, file_name, actor, rows_read, rows_kept) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (sha256) DO NOTHING RETURNING id",
                (body["sha256"], body["file_name"][:500], actor, body["rows_read"], len(kept)),
            ).fetchone()
            if created is None:
                (existing,) = conn.execute(
                    "SELECT id FROM focus_imports WHERE sha256 = %s", (body["sha256"],)
                ).fetchone()  # type: ignore[misc]
                return JSONResponse({"import_id": existing, "already_imported": True, "rows_kept": 0})
            with conn.cursor().copy(
                "COPY focus_costs (import_id, row_number, charge_start, charge_end, provider, service, category, sku,"
                " description, billed_cost, effective_cost, currency, quantity, unit, sub_account, tags,"
                " ledger_provider) FROM STDIN"
            ) as copy:
                for number, c in zip(numbers, kept, strict=True):
                    copy.write_row((
                        created[0], number, c.charge_start, c.charge_end, c.provider, c.service, c.category, c.sku,
                        c.description, c.billed, c.effective, c.currency, c.quantity, c.unit, c.sub_account,
                        json.dumps(c.tags), c.ledger_provider,
                    ))  # fmt: skip
        usd = sum((c.billed for c in kept), Decimal(0))
        return JSONResponse(
            {"import_id": created[0], "already_imported": False, "rows_read": body["rows_read"],
             "rows_kept": len(kept), "billed_usd": format(usd, "f")},
            status_code=201,
        )  # fmt: skip

    async def post_import(request: Request) -> Response:
        denied = apiauth.require_admin(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body: must be JSON", "field": "body"}, status_code=400)
        return await run_in_threadpool(store, request, body)

    def costs(request: Request) -> Response:
        try:
            args = COSTS.parse(request.query_params)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        where, params = ["TRUE"], {}
        if args["since"] is not None:
            where.append("charge_start >= %(since)s")
            params["since"] = args["since"]
        if args["until"] is not None:
            where.append("charge_start < %(until)s")
            params["until"] = args["until"]
        with collector.pool.connection() as conn:
            days = conn.execute(
                "SELECT charge_start::date, provider, service, ledger_provider, currency, sum(billed_cost),"
                f" sum(effective_cost), count(*) FROM focus_costs WHERE {' AND '.join(where)}"
                " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3",
                params,
            ).fetchall()
            imports = conn.execute(
                "SELECT id, file_name, imported_at, actor, rows_read, rows_kept FROM focus_imports ORDER BY id"
            ).fetchall()
        return JSONResponse({
            "costs": [
                {"day": d.isoformat(), "provider": p, "service": s, "ledger_provider": lp, "currency": cur,
                 "billed_usd": format(b, "f"), "effective_usd": format(e, "f"), "rows": n}
                for d, p, s, lp, cur, b, e, n in days
            ],
            "imports": [
                {"id": i, "file_name": f, "imported_at": t.isoformat(), "actor": a, "rows_read": r, "rows_kept": k}
                for i, f, t, a, r, k in imports
            ],
        })  # fmt: skip

    def threaded(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            return await run_in_threadpool(handler, request)

        return run

    return [
        Route(EXPORT.path, threaded(export), methods=["GET"]),
        Route(IMPORT.path, post_import, methods=["POST"]),
        Route(COSTS.path, threaded(costs), methods=["GET"]),
    ]
