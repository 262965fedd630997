"""The REST API against a real collector and Postgres: summaries, call pages, exports, validation, OpenAPI.

Seeded by the instrumented OpenAI and Anthropic SDKs talking to the fake provider, and by the data generator
(three providers, several projects, features and users, 30 days) written through the collector's ledger.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import llmmeter
from llmmeter_collector.api import routes as api
from llmmeter_collector.api.openapi import document
from llmmeter_collector.devtools import datagen
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.ledger import storage
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import Cost, LlmCall
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _generate(collector: BackgroundCollector, count: int, seed: int = 7) -> list[LlmCall]:
    core = collector.collector
    calls = list(datagen.calls(count, now=NOW, seed=seed))
    for c in calls:
        c.cost = core.catalog.price(c)
    ledger = Ledger(core.dsn, core.schema)
    try:
        ledger.write(calls)
    finally:
        ledger.close()
    return calls


@pytest.fixture
def generated(collector: BackgroundCollector) -> list[LlmCall]:
    return _generate(collector, 1500)


def _cost(calls: list[LlmCall]) -> Decimal:
    return sum((c.cost.total for c in calls if c.cost is not None), Decimal(0))


def _write(collector: BackgroundCollector, calls: list[LlmCall]) -> None:
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    try:
        ledger.write(calls)
    finally:
        ledger.close()


def _all_pages(collector: BackgroundCollector, **params: str) -> list[dict[str, object]]:
    """Every call of a listing, page after page through next_cursor."""
    rows: list[dict[str, object]] = []
    cursor = None
    while True:
        page = httpx.get(
            collector.url + "/api/v1/calls", params={**params, **({"cursor": cursor} if cursor else {})}
        ).json()
        rows += page["calls"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def test_summary_breaks_spend_down_by_model_provider_feature_and_project(
    collector: BackgroundCollector, generated: list[LlmCall]
) -> None:
    data = httpx.get(collector.url + "/api/v1/summary", params={"period": "all"}).json()
    assert Decimal(data["spend"]["all"]) == _cost(generated)
    assert data["calls"] == len(generated)
    unpriced = [c for c in generated if c.cost is None]
    assert unpriced and data["unpriced_calls"] == len(unpriced)
    assert data["unpriced_models"] == [{"provider": "openai", "model": "acme-finetune-7b", "calls": len(unpriced)}]
    for key, dim in (("by_project", "project"), ("by_provider", "provider"), ("by_feature", "feature")):
        expected: dict[str, Decimal] = defaultdict(Decimal)
        for c in generated:
            expected[getattr(c, dim)] += c.cost.total if c.cost else Decimal(0)
        assert {r[dim]: Decimal(r["cost_usd"]) for r in data[key]} == expected, key
    assert {r["provider"] for r in data["by_provider"]} == {"openai", "anthropic", "gcp.gemini"}
    costs = [Decimal(r["cost_usd"]) for r in data["by_model"]]
    assert costs == sorted(costs, reverse=True)
    shop = httpx.get(collector.url + "/api/v1/summary", params={"period": "all", "project": "shop"}).json()
    assert Decimal(shop["spend"]["all"]) == _cost([c for c in generated if c.project == "shop"])
    assert [r["project"] for r in shop["by_project"]] == ["shop"]


def test_calls_filters_match_the_ledger(collector: BackgroundCollector, generated: list[LlmCall]) -> None:
    since = NOW - timedelta(days=7)
    cases = {
        (("project", "support"),): lambda c: c.project == "support",
        (("feature", "search"), ("user", "user-007")): lambda c: c.feature == "search" and c.user_id == "user-007",
        (("model", "gpt-4o"), ("status", "error")): lambda c: c.model == "gpt-4o" and c.status == "error",
        (("provider", "gcp.gemini"), ("since", since.isoformat())): lambda c: (
            c.provider == "gcp.gemini" and c.start_ns >= since.timestamp() * 1e9
        ),
        (("min_cost", "0.05"),): lambda c: c.cost is not None and c.cost.total >= Decimal("0.05"),
    }
    for params, keep in cases.items():
        expected = {c.span_id for c in generated if keep(c)}
        assert expected, params
        got = [r["span_id"] for r in _all_pages(collector, limit="1000", **dict(params))]
        assert len(got) == len(set(got)) and set(got) == expected, params


def test_most_expensive_first_pages_through_every_priced_call(
    collector: BackgroundCollector, generated: list[LlmCall]
) -> None:
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"order": "cost", "limit": "200", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(collector.url + "/api/v1/calls", params=params).json()
        seen += page["calls"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    costs = [Decimal(str(r["cost_usd"])) for r in seen]
    assert costs == sorted(costs, reverse=True)
    assert len(seen) == len({r["span_id"] for r in seen}) == sum(1 for c in generated if c.cost is not None)


def test_pages_stay_correct_while_calls_are_inserted(collector: BackgroundCollector, generated: list[LlmCall]) -> None:
    """Calls written between page requests (newer ones and late, older ones) never shift, repeat or hide
    the calls that were there when paging started."""
    before = {c.span_id for c in generated}
    seen: list[str] = []
    cursor = None
    extra_seed = 100
    while True:
        params = {"limit": "250", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(collector.url + "/api/v1/calls", params=params).json()
        seen += [r["span_id"] for r in page["calls"]]
        times = [r["ts"] for r in page["calls"]]
        assert times == sorted(times, reverse=True)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        _generate(collector, 50, seed=extra_seed)  # 50 more calls spread over the same 30 days
        extra_seed += 1
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


def test_pages_walk_calls_of_the_same_microsecond_and_cost_in_key_order(collector: BackgroundCollector) -> None:
    """Newest first is (ts, trace_id, span_id) descending, most expensive first (cost_usd, ts, span_id,
    trace_id) descending: pages of 2 cut through runs of equal timestamps and equal costs without repeating
    or skipping a call, with and without a filter."""
    base = int((NOW - timedelta(hours=2)).timestamp()) * 10**9
    template = next(datagen.calls(1, now=NOW, seed=5))
    calls = []
    # spans of one trace, traces whose order differs from their spans' order, all in one microsecond
    ids = [("b" * 32, "1" * 16), ("b" * 32, "2" * 16), ("a" * 32, "3" * 16), ("c" * 32, "0" * 16)]
    for n, (trace_id, span_id) in enumerate(ids * 3):
        at = base + (n // len(ids)) * 1000  # three microseconds, four calls each
        price = None if n == 5 else Cost(Decimal("0.5") if n % 2 else Decimal("0.25"), {}, "test")
        calls.append(
            LlmCall(
                trace_id=trace_id, span_id=span_id, start_ns=at, end_ns=at + 10**9, provider=template.provider,
                operation=template.operation, request_model=template.request_model,
                project="shop" if n % 3 else "support", cost=price,
            )
        )  # fmt: skip
    _write(collector, calls)

    def key(row: dict[str, object], columns: tuple[str, ...]) -> tuple[object, ...]:
        parse = {"ts": datetime.fromisoformat, "cost_usd": lambda v: Decimal(str(v))}
        return tuple(parse.get(c, str)(row[c]) for c in columns)

    time_key = ("ts", "trace_id", "span_id")
    cost_key = ("cost_usd", "ts", "span_id", "trace_id")
    for params in ({}, {"project": "shop"}):
        stored = _all_pages(collector, limit="1000", **params)  # one page: the order Postgres gives
        assert len(stored) == sum(1 for c in calls if not params or c.project == params["project"])
        newest = _all_pages(collector, limit="2", **params)
        assert [key(r, time_key) for r in newest] == sorted((key(r, time_key) for r in stored), reverse=True)
        expensive = _all_pages(collector, limit="2", order="cost", **params)
        priced = [r for r in stored if r["cost_usd"] is not None]
        assert [key(r, cost_key) for r in expensive] == sorted((key(r, cost_key) for r in priced), reverse=True)


def test_a_newest_first_cursor_from_before_the_key_change_is_refused(
    collector: BackgroundCollector, generated: list[LlmCall]
) -> None:
    """Cursors of newest-first pages issued before migration 0022 carried (ts, span_id, trace_id): refused
    with a clear 400. Most-expensive-first cursors kept their key and still work."""

    def old_cursor(order: str, key: list[str]) -> str:
        raw = json.dumps({"o": order, "k": key}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    row = httpx.get(collector.url + "/api/v1/calls", params={"limit": "1"}).json()["calls"][0]
    response = httpx.get(
        collector.url + "/api/v1/calls",
        params={"cursor": old_cursor("time", [row["ts"], row["span_id"], row["trace_id"]])},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "cursor: was issued by an older llmmeter version; page again without a cursor",
        "field": "cursor",
    }
    first = httpx.get(collector.url + "/api/v1/calls", params={"order": "cost", "limit": "3"}).json()["calls"]
    top = first[0]
    cursor = old_cursor("cost", [top["cost_usd"], top["ts"], top["span_id"], top["trace_id"]])
    after = httpx.get(collector.url + "/api/v1/calls", params={"order": "cost", "limit": "2", "cursor": cursor})
    assert [r["span_id"] for r in after.json()["calls"]] == [r["span_id"] for r in first[1:]]


def test_export_streams_every_call_as_csv_and_json_lines(
    collector: BackgroundCollector, generated: list[LlmCall]
) -> None:
    response = httpx.get(collector.url + "/api/v1/export", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(generated)
    assert sum(Decimal(r["cost_usd"]) for r in rows if r["cost_usd"]) == _cost(generated)
    assert sum(1 for r in rows if r["cost_usd"] == "") == sum(1 for c in generated if c.cost is None)
    assert {r["streaming"] for r in rows} == {"true", "false"}
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)

    lines = httpx.get(
        collector.url + "/api/v1/export", params={"format": "jsonl", "project": "support", "status": "error"}
    )
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in lines.text.splitlines()]
    expected = [c for c in generated if c.project == "support" and c.status == "error"]
    assert {r["span_id"] for r in records} == {c.span_id for c in expected}
    assert all(isinstance(r["cost_usd"], str) for r in records)  # money stays exact
    assert sum(Decimal(r["cost_usd"]) for r in records) == _cost(expected)


def test_json_lines_are_byte_for_byte_what_postgres_row_to_json_renders(collector: BackgroundCollector) -> None:
    """The JSON-lines format: these keys in this order, ISO 8601 times as Postgres writes them, money as a
    decimal string, null for no price, true/false, tags as an object; odd text, tiny and huge floats included,
    exactly what Postgres's row_to_json renders (what the export sent before it was built outside Postgres)."""
    odd = 'q"uote \\ back\\\\slash \\N \\t \n\r\t\b\f\v \x01\x1f\x7f é 中 🙂'
    at = (NOW - timedelta(days=1)).replace(microsecond=600000)
    start = int(at.timestamp()) * 10**9 + 600_000_000
    plain = LlmCall(
        trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331", start_ns=start,
        end_ns=start + 1_500_000_000, provider="openai", operation="chat", request_model="gpt-4o-mini",
        project="shop", environment="production", feature="search", user_id="u-1", tags={"team": "search"},
        streaming=True, ttfc_s=0.25, cost=Cost(Decimal("0.000210"), {}, "test"),
    )  # fmt: skip
    strange = LlmCall(
        trace_id="1" * 32, span_id="2" * 16, start_ns=start + 10**9, end_ns=start + 10**9 + 7, provider="openai",
        operation="chat", request_model="acme-finetune-7b", project="shop", feature=odd, user_id=odd,
        session_id=odd, tags={"note": odd, odd: "x"}, status="error", error_type=odd, batch=True, ttfc_s=1e-05,
    )  # fmt: skip
    huge = LlmCall(
        trace_id="3" * 32, span_id="4" * 16, start_ns=start + 2 * 10**9, end_ns=start + 2 * 10**9 + 10**18,
        provider="openai", operation="chat", request_model="gpt-4o", ttfc_s=1.2345678901234567e17,
        cost=Cost(Decimal("12.5"), {}, "test"),
    )  # fmt: skip
    _write(collector, [plain, strange, huge])

    body = httpx.get(collector.url + "/api/v1/export", params={"format": "jsonl"}).content
    assert body.decode().splitlines()[0] == (
        f'{{"ts":"{at:%Y-%m-%dT%H:%M:%S}.6+00:00","trace_id":"0af7651916cd43dd8448eb211c80319c",'
        '"span_id":"b7ad6b7169203331","project":"shop","environment":"production","feature":"search",'
        '"user_id":"u-1","session_id":"","provider":"openai","operation":"chat","request_model":"gpt-4o-mini",'
        '"model":"gpt-4o-mini","input_tokens":0,"output_tokens":0,"cache_read_tokens":0,"cache_write_tokens":0,'
        '"reasoning_tokens":0,"cost_usd":"0.000210","duration_s":1.5,"ttfc_s":0.25,"status":"ok","error_type":"",'
        '"retries":0,"streaming":true,"batch":false,"service_tier":"","prompt_fingerprint":"",'
        '"tags":{"team": "search"}}'
    )
    columns = (
        "ts, trace_id, span_id, project, environment, feature, user_id, session_id, provider, operation, "
        "request_model, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
        "cost_usd::text AS cost_usd, duration_s, ttfc_s, status, error_type, retries, streaming, batch, service_tier, "
        "prompt_fingerprint, tags"
    )
    with storage.connect(collector.collector.dsn, collector.collector.schema) as conn:
        rendered = conn.execute(
            f"SELECT row_to_json(t)::text FROM (SELECT {columns} FROM llm_calls ORDER BY ts) t"
        ).fetchall()
    assert body == "".join(line + "\n" for (line,) in rendered).encode()
    assert json.loads(body.decode().splitlines()[1])["tags"] == {"note": odd, odd: "x"}


def test_sdk_calls_appear_in_summary_and_calls(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None
) -> None:
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
    try:
        with llmmeter.attributes(project="shop", feature="search", user_id="u9"):
            openai.OpenAI(base_url=fake.openai_base_url, api_key="x").chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-fake-usage": json.dumps({"input_tokens": 1000, "output_tokens": 100})},
            )
        with llmmeter.attributes(project="support", feature="triage"):
            anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x").messages.create(
                model="claude-haiku-4-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-fake-usage": json.dumps({"input_tokens": 2000, "output_tokens": 300})},
            )
    finally:
        stop_export(processor)
    data = httpx.get(collector.url + "/api/v1/summary").json()
    # list prices per 1M tokens: gpt-4o-mini 0.15 / 0.60, claude-haiku-4-5 1.00 / 5.00
    mini = (1000 * Decimal("0.15") + 100 * Decimal("0.60")) / 10**6
    haiku = (2000 * Decimal("1.00") + 300 * Decimal("5.00")) / 10**6
    assert {r["project"]: Decimal(r["cost_usd"]) for r in data["by_project"]} == {"shop": mini, "support": haiku}
    assert {r["provider"]: Decimal(r["cost_usd"]) for r in data["by_provider"]} == {"openai": mini, "anthropic": haiku}
    page = httpx.get(collector.url + "/api/v1/calls", params={"user": "u9"}).json()
    assert [(c["model"], c["feature"], Decimal(c["cost_usd"])) for c in page["calls"]] == [
        ("gpt-4o-mini", "search", mini)
    ]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/summary", {"period": "year"}, "period"),
        ("/api/v1/calls", {"limit": "0"}, "limit"),
        ("/api/v1/calls", {"limit": "ten"}, "limit"),
        ("/api/v1/calls", {"since": "yesterday"}, "since"),
        ("/api/v1/calls", {"since": "2025-02-01", "until": "2025-01-01"}, "until"),
        ("/api/v1/calls", {"min_cost": "-1"}, "min_cost"),
        ("/api/v1/calls", {"status": "failed"}, "status"),
        ("/api/v1/calls", {"cursor": "not-a-cursor"}, "cursor"),
        ("/api/v1/calls", {"colour": "red"}, "colour"),
        ("/api/v1/export", {"format": "xlsx"}, "format"),
        ("/api/v1/recommendations", {"days": "0"}, "days"),
        ("/api/v1/anomalies", {"granularity": "minute"}, "granularity"),
    ],
)
def test_bad_parameters_get_400_naming_the_field(
    collector: BackgroundCollector, path: str, params: dict[str, str], field: str
) -> None:
    response = httpx.get(collector.url + path, params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field
    assert body["error"].startswith(field + ":")


def test_a_cursor_of_one_order_is_refused_for_the_other(
    collector: BackgroundCollector, generated: list[LlmCall]
) -> None:
    cursor = httpx.get(collector.url + "/api/v1/calls", params={"limit": "1"}).json()["next_cursor"]
    response = httpx.get(collector.url + "/api/v1/calls", params={"order": "cost", "cursor": cursor})
    assert response.status_code == 400
    assert response.json()["error"] == "cursor: was issued for order=time, not order=cost"


def test_openapi_documents_every_route_and_only_real_ones(collector: BackgroundCollector) -> None:
    doc = httpx.get(collector.url + "/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    app = collector._server.config.app  # type: ignore[union-attr]  # the application being served
    served = {
        (path, method.lower())
        for route in app.routes
        if getattr(route, "path", "").startswith("/api/")
        for path, method in ((route.path, m) for m in getattr(route, "methods", None) or {"GET"})  # type: ignore[attr-defined]
        if method != "HEAD"
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == served
    # the operations declared in api/routes.py carry their query parameters, from the same declaration that validates
    for op in api.OPERATIONS:
        entry = doc["paths"][op.path][op.method.lower()]
        assert [p["name"] for p in entry["parameters"] if p["in"] == "query"] == [p.name for p in op.params]
        assert entry["summary"] == op.summary
    limit = next(p for p in doc["paths"]["/api/v1/calls"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}
    assert document(app.routes, api.OPERATIONS) == doc


def test_export_keeps_quotes_backslashes_and_newlines_intact(collector: BackgroundCollector) -> None:
    odd = 'a "quoted" \\ back\\slash,\nnew line\ttab \x01'
    call = next(datagen.calls(1, now=NOW, seed=3))
    call.user_id, call.feature, call.tags = odd, odd, {"note": odd}
    call.cost = collector.collector.catalog.price(call)
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    ledger.write([call])
    ledger.close()
    record = json.loads(httpx.get(collector.url + "/api/v1/export", params={"format": "jsonl"}).text)
    assert (record["user_id"], record["feature"], record["tags"]) == (odd, odd, {"note": odd})
    row = next(csv.DictReader(io.StringIO(httpx.get(collector.url + "/api/v1/export").text, newline="")))
    assert (row["user_id"], json.loads(row["tags"])) == (odd, {"note": odd})
