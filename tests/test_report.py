"""``llmmeter report``: last week's / month's spend, exact, compared with the period before, sent to a webhook
and to a Slack incoming webhook."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.insights.report import ReportError, period_bounds
from llmmeter_collector.ledger import storage
from llmmeter_collector.llmcall import Cost, LlmCall
from llmmeter_collector.service import BackgroundCollector

UTC = timezone.utc


def call(ts: datetime, cost: str | None, model: str = "gpt-4o", feature: str = "search") -> LlmCall:
    ns = int(ts.timestamp() * 1e9)
    return LlmCall(
        trace_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        start_ns=ns,
        end_ns=ns + 1_000_000,
        provider="openai",
        operation="chat",
        request_model=model,
        feature=feature,
        project="shop",
        cost=None if cost is None else Cost(total=Decimal(cost), parts={}, price_source="test"),
    )


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.bodies: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_period_bounds() -> None:
    now = datetime(2025, 3, 20, 15, 30, tzinfo=UTC)  # a Thursday
    assert period_bounds("week", now) == (
        datetime(2025, 3, 10, tzinfo=UTC),
        datetime(2025, 3, 17, tzinfo=UTC),
        datetime(2025, 3, 3, tzinfo=UTC),
        datetime(2025, 3, 10, tzinfo=UTC),
    )
    assert period_bounds("month", now) == (
        datetime(2025, 2, 1, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 2, 1, tzinfo=UTC),
    )
    start, end, prev_start, prev_end = period_bounds("month", now, current=True)
    assert (start, end, prev_start) == (datetime(2025, 3, 1, tzinfo=UTC), now, datetime(2025, 2, 1, tzinfo=UTC))
    assert prev_end == datetime(2025, 2, 20, 15, 30, tzinfo=UTC)
    with pytest.raises(ReportError, match="period"):
        period_bounds("year", now)


def test_weekly_report_printed_and_sent(collector: BackgroundCollector, receiver: Receiver) -> None:
    now = datetime.now(UTC)
    this_week = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=now.weekday())
    last_week, week_before = this_week - timedelta(days=7), this_week - timedelta(days=14)
    calls = [
        call(last_week + timedelta(days=1, hours=3), "2.50"),
        call(last_week + timedelta(days=4), "0.000125", model="gpt-4o-mini", feature="chat"),
        call(last_week + timedelta(days=5), None, model="mystery-model"),
        call(week_before + timedelta(days=2), "2.000125"),
        call(this_week + timedelta(minutes=1), "99"),  # this week: not in last week's report
    ]
    ledger = storage.Ledger(collector.collector.settings.database_url, collector.collector.settings.database_schema)
    ledger.write(calls)
    ledger.close()
    assert httpx.put(collector.url + "/api/v1/budgets/total", json={"limit": "500"}).status_code == 200

    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--period", "week", "--json", "--url", collector.url])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["start"] == last_week.isoformat() and data["end"] == this_week.isoformat()
    assert Decimal(data["total_usd"]) == Decimal("2.500125")
    assert Decimal(data["previous_total_usd"]) == Decimal("2.000125")
    assert data["change_pct"] == "25.0"
    assert (data["calls"], data["unpriced_calls"]) == (3, 1)
    assert data["unpriced_models"] == [{"provider": "openai", "model": "mystery-model", "calls": 1}]
    assert [(r["model"], Decimal(r["cost_usd"])) for r in data["by_model"]][:2] == [
        ("gpt-4o", Decimal("2.50")),
        ("gpt-4o-mini", Decimal("0.000125")),
    ]
    assert [b["name"] for b in data["budgets"]] == ["total"]

    send = ["--send-webhook", receiver.url, "--send-slack", receiver.url]
    result = runner.invoke(cli, ["report", "--format", "markdown", *send, "--url", collector.url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("### LLM cost report, last week")
    assert "**$2.50**" in result.output and "up 25.0% from $2.00" in result.output
    assert "1 calls have no known price" in result.output and "- openai/gpt-4o: $2.50 (1 calls)" in result.output
    webhook, slack = receiver.bodies
    assert webhook["text"] == result.output and Decimal(webhook["report"]["total_usd"]) == Decimal("2.500125")
    assert set(slack) == {"text"} and "*$2.50*" in slack["text"] and "• search: $2.50" in slack["text"]

    current = runner.invoke(cli, ["report", "--current", "--json", "--url", collector.url])
    assert Decimal(json.loads(current.output)["total_usd"]) == Decimal(99)


def test_a_failing_destination_is_an_error(collector: BackgroundCollector) -> None:
    failing = Receiver(status=500)
    try:
        result = CliRunner().invoke(cli, ["report", "--send-webhook", failing.url, "--url", collector.url])
    finally:
        failing.server.shutdown()
        failing.server.server_close()
    assert result.exit_code == 1 and "500" in result.output
