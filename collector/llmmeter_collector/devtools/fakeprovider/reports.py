"""The organisation usage and cost reports, as OpenAI's and Anthropic's admin APIs serve them.

Every chat, responses, completions, embeddings and messages answer the fake gives on the providers' own paths
(not Azure's) is recorded with its time, model, usage, API key and project or workspace; the reports sum those
records in the providers' response shapes, time buckets, grouping and pagination:

* OpenAI ``GET /v1/organization/usage/completions`` (``start_time``/``end_time`` in Unix seconds, ``bucket_width``
  ``1d``/``1h``/``1m``, ``group_by`` model, project_id, api_key_id, batch; ``limit``, ``page``) and
  ``GET /v1/organization/costs`` (``1d`` buckets, ``group_by`` project_id, line_item; amounts in USD).
* Anthropic ``GET /v1/organizations/usage_report/messages`` (RFC 3339 ``starting_at``/``ending_at``,
  ``group_by[]`` model, workspace_id, api_key_id, service_tier) and ``GET /v1/organizations/cost_report``
  (``group_by[]`` workspace_id, description; amounts in cents, as decimal strings).

Reports need an admin key (OpenAI ``sk-admin-...``, Anthropic ``sk-ant-admin...``): anything else is a 401 in the
provider's error format. The fake bills each call at llmmeter's catalog rates for its model (so a fully instrumented
app agrees exactly), times the factor ``FakeProvider.bill_models_at(model, factor)`` sets (a price the catalog has
wrong); a model the catalog does not know costs $1 / $2 per million input / output tokens. Audio tokens are billed as
text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from .usage import Usage
from .wire import Call, RouteTable, error_response

BILLED = "billed"  # fake.state key: the calls answered, for the reports
FACTORS = "billing_factors"  # fake.state key: model -> factor on the catalog price
WORKSPACES = "workspaces"  # fake.state key: Anthropic API key -> workspace id
_MILLION = Decimal(1_000_000)
_UNKNOWN_RATES = {"input": Decimal(1) / _MILLION, "output": Decimal(2) / _MILLION}
_WIDTHS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
# bucket width -> (default, maximum) buckets per page, as both providers document them
_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}


@dataclass(frozen=True)
class Billed:
    """One answered call, as the provider's billing sees it."""

    at: datetime
    provider: str
    model: str
    usage: Usage
    api_key_id: str
    project: str | None  # OpenAI project id; Anthropic workspace id (None: the default workspace)
    batch: bool


def bill(call: Call, usage: Usage) -> Usage:
    """Remember an answered call for the reports (Azure's paths are another bill); returns ``usage``."""
    path = call.request.url.path
    batch = "/batches" in path
    if call.provider not in ("openai", "anthropic") or not path.startswith("/v1/"):
        return usage
    headers = call.headers
    key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
    key_id = "apikey_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    if call.provider == "openai":
        project: str | None = headers.get("openai-project") or "proj_default"
    else:
        project = call.fake.state.get(WORKSPACES, {}).get(key)
    model = str(call.json.get("model") or "")
    entry = Billed(datetime.now(timezone.utc), call.provider, model, usage, key_id, project, batch)
    call.fake.state.setdefault(BILLED, []).append(entry)
    return usage


# ---- prices: what the fake bills --------------------------------------------------------------------------------


def _parts(entry: Billed, factor: Decimal) -> dict[str, tuple[int, Decimal]]:
    """token class -> (tokens, USD) of one call, at llmmeter's catalog rates times ``factor``."""
    u = entry.usage
    rates = _catalog().rates(entry.provider, entry.model, entry.at, batch=entry.batch)
    if rates is not None and rates.long_context:
        rates = rates.for_prompt(u.input_tokens)
    per = (
        {
            "input": rates.input, "cache_read": rates.cache_read, "cache_write_5m": rates.cache_write_5m,
            "cache_write_1h": rates.cache_write_1h, "output": rates.output,
        }
        if rates is not None
        else {"input": _UNKNOWN_RATES["input"], "cache_read": _UNKNOWN_RATES["input"],
              "cache_write_5m": _UNKNOWN_RATES["input"], "cache_write_1h": _UNKNOWN_RATES["input"],
              "output": _UNKNOWN_RATES["output"]}
    )  # fmt: skip
    tokens = {
        "input": u.uncached_input_tokens,
        "cache_read": u.cached_tokens,
        "cache_write_5m": u.cache_creation_5m_input_tokens,
        "cache_write_1h": u.cache_creation_1h_input_tokens,
        "output": u.output_tokens,
    }
    return {k: (n, n * per[k] * factor) for k, n in tokens.items() if n}


@functools.cache
def _catalog() -> Any:
    from llmmeter_collector.pricing import PriceCatalog

    return PriceCatalog()


# ---- buckets and pages ------------------------------------------------------------------------------------------


class _BadQuery(ValueError):
    pass


def _buckets(
    start: datetime, end: datetime, width: str, page: str | None, limit: int
) -> tuple[list[datetime], str | None]:
    step = _WIDTHS[width]
    snapped = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
    while snapped + step <= start:
        snapped += step
    if page:
        try:
            snapped = datetime.fromisoformat(base64.urlsafe_b64decode(page.removeprefix("page_")).decode())
        except ValueError:
            raise _BadQuery(f"invalid page token {page!r}") from None
    starts: list[datetime] = []
    at = snapped
    while at < end and len(starts) < limit:
        starts.append(at)
        at += step
    more = at < end
    token = "page_" + base64.urlsafe_b64encode(at.isoformat().encode()).decode() if more else None
    return starts, token


def _limit(raw: str | None, width: str, maximum: int | None = None) -> int:
    default, top = _LIMITS[width]
    top = maximum or top
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= top:
        raise _BadQuery(f"limit must be between 1 and {top}")
    return int(raw)


def _sum(entries: Iterable[Billed], key: Callable[[Billed], tuple[Any, ...]]) -> dict[tuple[Any, ...], list[Billed]]:
    out: dict[tuple[Any, ...], list[Billed]] = {}
    for e in entries:
        out.setdefault(key(e), []).append(e)
    return out


def _json(body: Any) -> Response:
    """JSON with exact decimal numbers (OpenAI's amounts are JSON numbers)."""
    text = json.dumps(body, default=lambda d: f"__decimal__{d}")
    return Response(re.sub(r'"__decimal__([-0-9.Ee+]+)"', r"\1", text), media_type="application/json")


def _entries(call: Call, provider: str, start: datetime, end: datetime) -> list[Billed]:
    return [e for e in call.fake.state.get(BILLED, []) if e.provider == provider and start <= e.at < end]


def _factor(call: Call, model: str) -> Decimal:
    return Decimal(call.fake.state.get(FACTORS, {}).get(model, 1))


# ---- OpenAI -----------------------------------------------------------------------------------------------------


def _openai_admin(call: Call) -> Response | None:
    key = call.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if key.startswith("sk-admin-"):
        return None
    return error_response(
        "openai", 401, "Invalid authorization header: this endpoint needs an admin key (sk-admin-...)"
    )


def _openai_window(call: Call) -> tuple[datetime, datetime, str, list[str]]:
    q = call.request.query_params
    raw = q.get("start_time")
    if raw is None or not raw.isdigit():
        raise _BadQuery("start_time is required (Unix seconds)")
    start = datetime.fromtimestamp(int(raw), timezone.utc)
    end_raw = q.get("end_time")
    if end_raw is not None and not end_raw.isdigit():
        raise _BadQuery("end_time must be Unix seconds")
    end = datetime.fromtimestamp(int(end_raw), timezone.utc) if end_raw else datetime.now(timezone.utc)
    width = q.get("bucket_width", "1d")
    if width not in _WIDTHS:
        raise _BadQuery(f"bucket_width must be one of 1m, 1h, 1d, got {width!r}")
    return start, end, width, q.getlist("group_by")


def openai_usage(call: Call) -> Response:
    denied = _openai_admin(call)
    if denied is not None:
        return denied
    try:
        start, end, width, group_by = _openai_window(call)
        unknown = set(group_by) - {"model", "project_id", "api_key_id", "batch", "user_id"}
        if unknown:
            raise _BadQuery(f"invalid group_by {sorted(unknown)[0]!r}")
        starts, token = _buckets(
            start,
            end,
            width,
            call.request.query_params.get("page"),
            _limit(call.request.query_params.get("limit"), width),
        )
    except _BadQuery as exc:
        return error_response("openai", 400, str(exc))
    step = _WIDTHS[width]
    fields = {"model": "model", "project_id": "project", "api_key_id": "api_key_id", "batch": "batch"}
    data = []
    for bucket in starts:
        groups = _sum(
            _entries(call, "openai", bucket, bucket + step),
            lambda e: tuple(getattr(e, fields[g]) for g in group_by if g in fields),
        )
        results = []
        for values, entries in sorted(groups.items(), key=lambda kv: str(kv[0])):
            named = dict(zip([g for g in group_by if g in fields], values, strict=True))
            results.append({
                "object": "organization.usage.completions.result",
                "input_tokens": sum(e.usage.input_tokens for e in entries),
                "output_tokens": sum(e.usage.output_tokens for e in entries),
                "input_cached_tokens": sum(e.usage.cached_tokens for e in entries),
                "input_audio_tokens": sum(e.usage.audio_input_tokens for e in entries),
                "output_audio_tokens": sum(e.usage.audio_output_tokens for e in entries),
                "num_model_requests": len(entries),
                "project_id": named.get("project_id"),
                "user_id": None,
                "api_key_id": named.get("api_key_id"),
                "model": named.get("model"),
                "batch": named.get("batch"),
            })  # fmt: skip
        data.append({
            "object": "bucket", "start_time": int(bucket.timestamp()), "end_time": int((bucket + step).timestamp()),
            "results": results,
        })  # fmt: skip
    return _json({"object": "page", "data": data, "has_more": token is not None, "next_page": token})


_OPENAI_LINE_ITEMS = {
    "input": "input", "cache_read": "cached input", "cache_write_5m": "cache write", "cache_write_1h": "cache write",
    "output": "output",
}  # fmt: skip


def openai_costs(call: Call) -> Response:
    denied = _openai_admin(call)
    if denied is not None:
        return denied
    try:
        start, end, width, group_by = _openai_window(call)
        if width != "1d":
            raise _BadQuery("bucket_width: only 1d is supported")
        unknown = set(group_by) - {"project_id", "line_item"}
        if unknown:
            raise _BadQuery(f"invalid group_by {sorted(unknown)[0]!r}")
        q = call.request.query_params
        starts, token = _buckets(start, end, width, q.get("page"), _limit(q.get("limit"), width, maximum=180))
    except _BadQuery as exc:
        return error_response("openai", 400, str(exc))
    data = []
    for bucket in starts:
        amounts: dict[tuple[str | None, str | None], Decimal] = {}
        for e in _entries(call, "openai", bucket, bucket + timedelta(days=1)):
            for part, (_, usd) in _parts(e, _factor(call, e.model)).items():
                line = f"{e.model}, {_OPENAI_LINE_ITEMS[part]}" if "line_item" in group_by else None
                project = e.project if "project_id" in group_by else None
                amounts[(line, project)] = amounts.get((line, project), Decimal(0)) + usd
        results = [
            {"object": "organization.costs.result", "amount": {"value": usd, "currency": "usd"}, "line_item": line,
             "project_id": project}
            for (line, project), usd in sorted(amounts.items(), key=lambda kv: str(kv[0]))
        ]  # fmt: skip
        data.append({
            "object": "bucket", "start_time": int(bucket.timestamp()),
            "end_time": int((bucket + timedelta(days=1)).timestamp()), "results": results,
        })  # fmt: skip
    return _json({"object": "page", "data": data, "has_more": token is not None, "next_page": token})


# ---- Anthropic --------------------------------------------------------------------------------------------------


def _anthropic_admin(call: Call) -> Response | None:
    if call.headers.get("x-api-key", "").startswith("sk-ant-admin"):
        return None
    return error_response("anthropic", 401, "invalid x-api-key: the Admin API needs an admin key (sk-ant-admin...)")


def _rfc3339(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _BadQuery(f"{name}: invalid RFC 3339 timestamp {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _anthropic_window(
    call: Call, allowed: set[str], widths: Iterable[str]
) -> tuple[list[datetime], str | None, str, list[str]]:
    q = call.request.query_params
    start = _rfc3339(q.get("starting_at"), "starting_at")
    if start is None:
        raise _BadQuery("starting_at: field required")
    end = _rfc3339(q.get("ending_at"), "ending_at") or datetime.now(timezone.utc)
    width = q.get("bucket_width", "1d")
    if width not in widths:
        raise _BadQuery(f"bucket_width: must be one of {', '.join(widths)}")
    group_by = q.getlist("group_by[]") or q.getlist("group_by")
    unknown = set(group_by) - allowed
    if unknown:
        raise _BadQuery(f"group_by: invalid value {sorted(unknown)[0]!r}")
    starts, token = _buckets(start, end, width, q.get("page"), _limit(q.get("limit"), width))
    return starts, token, width, group_by


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_usage(call: Call) -> Response:
    denied = _anthropic_admin(call)
    if denied is not None:
        return denied
    try:
        starts, token, width, group_by = _anthropic_window(
            call, {"model", "workspace_id", "api_key_id", "service_tier", "context_window"}, ("1m", "1h", "1d")
        )
    except _BadQuery as exc:
        return error_response("anthropic", 400, str(exc))
    step = _WIDTHS[width]
    fields = {"model": "model", "workspace_id": "project", "api_key_id": "api_key_id"}
    data = []
    grouped = [g for g in group_by if g in fields]
    for bucket in starts:
        groups = _sum(
            _entries(call, "anthropic", bucket, bucket + step), lambda e: tuple(getattr(e, fields[g]) for g in grouped)
        )
        results = []
        for values, entries in sorted(groups.items(), key=lambda kv: str(kv[0])):
            named = dict(zip(grouped, values, strict=True))
            results.append({
                "uncached_input_tokens": sum(e.usage.uncached_input_tokens for e in entries),
                "cache_creation": {
                    "ephemeral_1h_input_tokens": sum(e.usage.cache_creation_1h_input_tokens for e in entries),
                    "ephemeral_5m_input_tokens": sum(e.usage.cache_creation_5m_input_tokens for e in entries),
                },
                "cache_read_input_tokens": sum(e.usage.cached_tokens for e in entries),
                "output_tokens": sum(e.usage.output_tokens for e in entries),
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": named.get("api_key_id"),
                "workspace_id": named.get("workspace_id"),
                "model": named.get("model"),
                "service_tier": "standard" if "service_tier" in group_by else None,
                "context_window": "0-200k" if "context_window" in group_by else None,
            })  # fmt: skip
        data.append({"starting_at": _iso(bucket), "ending_at": _iso(bucket + step), "results": results})
    return _json({"data": data, "has_more": token is not None, "next_page": token})


_ANTHROPIC_TOKEN_TYPES = {
    "input": ("uncached_input_tokens", "Input Tokens"),
    "cache_read": ("cache_read_input_tokens", "Cache Read Input Tokens"),
    "cache_write_5m": ("cache_creation.ephemeral_5m_input_tokens", "Cache Write (5m) Input Tokens"),
    "cache_write_1h": ("cache_creation.ephemeral_1h_input_tokens", "Cache Write (1h) Input Tokens"),
    "output": ("output_tokens", "Output Tokens"),
}


def anthropic_costs(call: Call) -> Response:
    denied = _anthropic_admin(call)
    if denied is not None:
        return denied
    try:
        starts, token, _, group_by = _anthropic_window(call, {"workspace_id", "description"}, ("1d",))
    except _BadQuery as exc:
        return error_response("anthropic", 400, str(exc))
    described = "description" in group_by
    data = []
    for bucket in starts:
        cents: dict[tuple[Any, ...], Decimal] = {}
        for e in _entries(call, "anthropic", bucket, bucket + timedelta(days=1)):
            for part, (_, usd) in _parts(e, _factor(call, e.model)).items():
                key = (
                    e.project if "workspace_id" in group_by else None,
                    e.model if described else None,
                    part if described else None,
                )
                cents[key] = cents.get(key, Decimal(0)) + usd * 100
        results = []
        for (workspace, model, part), amount in sorted(cents.items(), key=lambda kv: str(kv[0])):
            token_type, label = _ANTHROPIC_TOKEN_TYPES[part] if part else (None, "")
            results.append({
                "currency": "USD",
                "amount": format(amount, "f"),
                "workspace_id": workspace,
                "description": f"{model} Usage - {label}" if described else None,
                "cost_type": "tokens" if described else None,
                "context_window": "0-200k" if described else None,
                "model": model,
                "service_tier": "standard" if described else None,
                "token_type": token_type,
            })  # fmt: skip
        data.append({"starting_at": _iso(bucket), "ending_at": _iso(bucket + timedelta(days=1)), "results": results})
    return _json({"data": data, "has_more": token is not None, "next_page": token})


OPENAI_ROUTES: RouteTable = [
    ("/v1/organization/usage/completions", ["GET"], openai_usage),
    ("/v1/organization/costs", ["GET"], openai_costs),
]
ANTHROPIC_ROUTES: RouteTable = [
    ("/v1/organizations/usage_report/messages", ["GET"], anthropic_usage),
    ("/v1/organizations/cost_report", ["GET"], anthropic_costs),
]
