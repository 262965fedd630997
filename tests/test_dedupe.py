"""One provider call traced by two instrumentations is priced once: in one export, in two exports in either order,
and through two collectors sharing one database. The ledger keeps the span that reports the most usage; the other
is kept as a duplicate for audit; rollups and /metrics count the call once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import PROTOBUF, _kv

TRACE = bytes.fromhex("5e" * 16)
START = time.time_ns() - 60 * 10**9
# The official openai-v2 instrumentation's span (outer) and llmmeter's (inner, its child) for one OpenAI call:
# same trace, same response id. llmmeter reports cached and reasoning tokens, openai-v2 does not.
OFFICIAL = (
    "opentelemetry.instrumentation.openai_v2",
    b"\x00" * 7 + b"\x01",
    b"",
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.id": "chatcmpl-dup-1",
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 300,
    },
)
LLMMETER = (
    "llmmeter.openai",
    b"\x00" * 7 + b"\x02",
    b"\x00" * 7 + b"\x01",
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.id": "chatcmpl-dup-1",
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 1500,
        "gen_ai.usage.reasoning.output_tokens": 100,
    },
)
# OpenLLMetry's anthropic.chat span over anthropic's own messages.create span, no response id on either.
OPENLLMETRY = (
    "opentelemetry.instrumentation.anthropic",
    b"\x00" * 7 + b"\x11",
    b"",
    {
        "gen_ai.system": "Anthropic",
        "llm.request.type": "chat",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
    },
)
ANTHROPIC_OWN = (
    "com.anthropic.sdk.python",
    b"\x00" * 7 + b"\x12",
    b"\x00" * 7 + b"\x11",
    {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
    },
)

Span = tuple[str, bytes, bytes, dict[str, Any]]


def export(*spans: Span) -> bytes:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for scope_name, span_id, parent, attrs in spans:
        scope = resource.scope_spans.add()
        scope.scope.name = scope_name
        span = scope.spans.add()
        span.trace_id, span.span_id, span.parent_span_id = TRACE, span_id, parent
        span.name = "chat gpt-4o"
        span.start_time_unix_nano = START + span_id[-1]  # the inner span starts a little later
        span.end_time_unix_nano = START + 2 * 10**9
        span.attributes.extend(_kv(k, v) for k, v in attrs.items())
    return request.SerializeToString()


def send(collector: BackgroundCollector, body: bytes) -> None:
    response = httpx.post(collector.url + "/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200, response.text


def ledger(collector: BackgroundCollector, sql: str) -> list[tuple[Any, ...]]:
    core = collector.collector
    with psycopg.connect(core.dsn, options=f"-c search_path={core.schema}") as conn:
        return conn.execute(sql).fetchall()


def expected_cost(collector: BackgroundCollector, body: bytes) -> Decimal:
    """What the collector's catalog charges for the call as the given (single-span) export reports it."""
    from llmmeter_collector.ingest.normalize import normalize

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    (call,) = normalize(request).calls
    cost = collector.collector.catalog.price(call)
    assert cost is not None
    return cost.total


def metric(collector: BackgroundCollector, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(collector.url + "/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def assert_priced_once(collector: BackgroundCollector, *, metrics: bool = True) -> None:
    best = expected_cost(collector, export(LLMMETER))
    assert best < expected_cost(collector, export(OFFICIAL))  # cached tokens are cheaper: the spans disagree
    rows = ledger(collector, "SELECT span_id, scope, cost_usd, cache_read_tokens, reasoning_tokens FROM llm_calls")
    assert rows == [("0000000000000002", "llmmeter.openai", best, 1500, 100)]
    dups = ledger(collector, "SELECT span_id, scope, duplicate_of FROM llm_call_duplicates")
    assert dups == [("0000000000000001", "opentelemetry.instrumentation.openai_v2", "0000000000000002")]
    (rollup,) = ledger(collector, "SELECT sum(calls), sum(cost_usd), sum(cache_read_tokens) FROM llm_rollup_minute")
    assert rollup == (1, best, 1500)
    (hourly,) = ledger(collector, "SELECT sum(calls), sum(cost_usd) FROM llm_rollup_hour")
    assert hourly == (1, best)
    (daily,) = ledger(collector, "SELECT sum(calls), sum(cost_usd) FROM llm_rollup_user_day")
    assert daily == (1, best)
    (empty,) = ledger(collector, "SELECT count(*) FROM llm_rollup_minute WHERE calls = 0")
    assert empty == (0,)  # a displaced span leaves no empty rollup row behind (no project with nothing in it)
    summary = httpx.get(collector.url + "/api/v1/summary", params={"period": "all"}).json()
    assert summary["calls"] == 1 and Decimal(summary["spend"]["all"]) == best
    if metrics:
        assert metric(collector, "llmmeter_calls_total") == 1
        assert metric(collector, "llmmeter_collector_duplicate_spans_total") == 1


def test_two_instrumentations_in_one_export_are_one_call(collector: BackgroundCollector) -> None:
    send(collector, export(OFFICIAL, LLMMETER))
    assert_priced_once(collector)
    assert metric(collector, "llmmeter_cost_usd_total") == pytest.approx(
        float(expected_cost(collector, export(LLMMETER)))
    )
    send(collector, export(OFFICIAL, LLMMETER))  # a retried export changes nothing
    assert_priced_once(collector)


@pytest.mark.parametrize("order", ["less complete first", "more complete first"])
def test_two_exports_in_either_order_are_one_call(collector: BackgroundCollector, order: str) -> None:
    first, second = (OFFICIAL, LLMMETER) if order == "less complete first" else (LLMMETER, OFFICIAL)
    send(collector, export(first))
    send(collector, export(second))
    assert_priced_once(collector)
    assert metric(collector, "llmmeter_collector_duplicate_spans_total", scope=OFFICIAL[0]) == 1
    send(collector, export(first))  # retries of either, in any order, change nothing
    send(collector, export(second))
    assert_priced_once(collector)


@pytest.fixture
def two_collectors(settings: Settings) -> Iterator[tuple[BackgroundCollector, BackgroundCollector]]:
    with BackgroundCollector(settings) as one, BackgroundCollector(settings) as two:
        yield one, two


def test_two_collectors_on_one_database_price_the_call_once(
    two_collectors: tuple[BackgroundCollector, BackgroundCollector],
) -> None:
    one, two = two_collectors
    for _ in range(3):  # each collector gets one span, both racing, then both retried
        threads = [
            threading.Thread(target=send, args=(one, export(OFFICIAL))),
            threading.Thread(target=send, args=(two, export(LLMMETER))),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert_priced_once(one, metrics=False)
    assert metric(one, "llmmeter_calls_total") + metric(two, "llmmeter_calls_total") == 1


def test_a_wrapper_span_over_the_sdks_own_span_is_one_call(collector: BackgroundCollector) -> None:
    send(collector, export(OPENLLMETRY, ANTHROPIC_OWN))
    rows = ledger(collector, "SELECT count(*), sum(input_tokens) FROM llm_calls")
    assert rows == [(1, 1200)]
    (dup,) = ledger(collector, "SELECT count(*) FROM llm_call_duplicates")
    assert dup == (1,)
    assert metric(collector, "llmmeter_calls_total") == 1


def test_calls_of_different_response_ids_in_one_trace_are_all_priced(collector: BackgroundCollector) -> None:
    other = (LLMMETER[0], b"\x00" * 7 + b"\x03", b"", {**LLMMETER[3], "gen_ai.response.id": "chatcmpl-dup-2"})
    send(collector, export(LLMMETER, other))
    (row,) = ledger(collector, "SELECT count(*) FROM llm_calls")
    assert row == (2,)
    (dup,) = ledger(collector, "SELECT count(*) FROM llm_call_duplicates")
    assert dup == (0,)
