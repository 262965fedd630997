"""Helpers for the data-lifecycle and scale-out tests: GenAI spans at chosen times, exported over real OTLP/HTTP,
and exact totals read back from the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

# gpt-4o-mini, USD per 1M tokens (openai.com/api/pricing): input 0.15, output 0.60.
INPUT_PRICE = Decimal("0.15") / 10**6
OUTPUT_PRICE = Decimal("0.60") / 10**6


@dataclass(frozen=True)
class Call:
    at: datetime
    input_tokens: int
    output_tokens: int
    feature: str = "search"

    @property
    def cost(self) -> Decimal:
        return self.input_tokens * INPUT_PRICE + self.output_tokens * OUTPUT_PRICE


def make_spans(calls: Sequence[Call]) -> list[ReadableSpan]:
    """One finished GenAI span per call, from a private tracer provider (random trace and span ids)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lifecycle-test")
    for n, call in enumerate(calls):
        start = int(call.at.timestamp() * 1e9)
        span = tracer.start_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes={
                "gen_ai.provider.name": "openai",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini",
                "gen_ai.response.id": f"chatcmpl-{start}-{n}",
                "gen_ai.usage.input_tokens": call.input_tokens,
                "gen_ai.usage.output_tokens": call.output_tokens,
                "llmmeter.feature": call.feature,
                "user.id": "u-" + call.feature,
            },
        )
        span.end(end_time=start + 750_000_000)
    provider.shutdown()
    return list(memory.get_finished_spans())


def export(url: str, spans: Sequence[ReadableSpan]) -> None:
    """Send spans to a collector in one OTLP/HTTP export; fail the test unless it was acknowledged."""
    result = OTLPSpanExporter(endpoint=url.rstrip("/") + "/v1/traces", timeout=30).export(spans)
    assert result is SpanExportResult.SUCCESS, f"export of {len(spans)} spans to {url} failed"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)  # type: ignore[misc]


def totals(dsn: str, schema: str) -> dict[str, Any]:
    """Row counts and exact sums of the ledger and of every rollup table."""
    out: dict[str, Any] = {}
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        for table in ("llm_calls", "llm_rollup_minute", "llm_rollup_hour", "llm_rollup_user_day"):
            calls = "count(*)" if table == "llm_calls" else "coalesce(sum(calls), 0)"
            row = conn.execute(
                f"SELECT {calls}, coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
                f" coalesce(sum(cost_usd), 0) FROM {table}"
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), int(row[1]), int(row[2]), Decimal(row[3]))
    return out
