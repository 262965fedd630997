"""One LLM call priced end to end: instrumented real OpenAI client → fake provider → OTLP/HTTP →
collector → Postgres → ``llmmeter status``."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import llmmeter
from llmmeter_collector.cli import cli
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export

# Published prices, USD per 1M tokens (openai.com/api/pricing):
# gpt-4o-mini: input 0.15, output 0.60. gpt-4o: input 2.50, cached input 1.25, output 10.00.
MINI_COST = Decimal(15) * Decimal("0.15") / 10**6 + Decimal(20) * Decimal("0.60") / 10**6
GPT4O_COST = (
    Decimal(600_000) * Decimal("2.50") / 10**6
    + Decimal(400_000) * Decimal("1.25") / 10**6
    + Decimal(100_000) * Decimal("10.00") / 10**6
)


def _send_traffic(fake: FakeProvider, collector: BackgroundCollector) -> None:
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
        with llmmeter.attributes(feature="search", user_id="u1"):
            # 5 words + 10 = 15 input tokens; 20 output tokens (fake provider's rule)
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three four five"}]
            )
        with llmmeter.attributes(feature="support"):
            usage = {"input_tokens": 1_000_000, "cached_tokens": 400_000, "output_tokens": 100_000}
            client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "long prompt"}],
                extra_headers={"x-fake-usage": json.dumps(usage)},
            )
    finally:
        stop_export(processor)


def test_status_shows_the_dollars_of_the_tokens_the_provider_returned(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None
) -> None:
    _send_traffic(fake, collector)

    result = CliRunner().invoke(cli, ["status", "--url", collector.url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert Decimal(data["spend"]["all"]) == MINI_COST + GPT4O_COST
    assert Decimal(data["spend"]["today"]) == MINI_COST + GPT4O_COST
    by_feature = {row["feature"]: Decimal(row["cost_usd"]) for row in data["by_feature"]}
    assert by_feature == {"search": MINI_COST, "support": GPT4O_COST}
    by_model = {row["model"]: row for row in data["by_model"]}
    assert by_model["gpt-4o-mini"]["input_tokens"] == 15
    assert by_model["gpt-4o-mini"]["output_tokens"] == 20
    assert Decimal(by_model["gpt-4o"]["cost_usd"]) == GPT4O_COST

    table = CliRunner().invoke(cli, ["status", "--url", collector.url], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    assert "$3.00" in table.output  # all time, rounded for display
    assert "search" in table.output and "support" in table.output and "gpt-4o-mini" in table.output


def test_a_retried_export_is_not_counted_twice(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None, spans
) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
    with llmmeter.attributes(feature="search"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finished = spans.get_finished_spans()
    assert len(finished) == 1
    exporter = OTLPSpanExporter(endpoint=collector.url + "/v1/traces")
    for _ in range(3):  # the same span exported three times, as a retrying exporter would
        exporter.export(finished)
    summary = httpx.get(collector.url + "/api/v1/summary").json()
    assert summary["calls"] == 1
    metrics_text = httpx.get(collector.url + "/metrics").text
    assert 'llmmeter_calls_total{feature="search",model="gpt-4o-mini"' in metrics_text
    line = next(x for x in metrics_text.splitlines() if x.startswith('llmmeter_calls_total{feature="search"'))
    assert line.endswith(" 1.0")


def test_cli_reports_an_unreachable_collector(capsys) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, ["status", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the collector at http://127.0.0.1:9" in result.output
