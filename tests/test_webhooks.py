"""Event webhooks against a local receiver: signed JSON (or Slack) deliveries of real events, retried after a 500,
never delivered twice; subscriptions and delivery logs over REST and the CLI."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.config import Settings
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import Cost, LlmCall, Usage
from llmmeter_collector.notify import events, webhooks
from llmmeter_collector.service import BackgroundCollector


class Receiver:
    """A local endpoint recording what it gets; ``fail`` answers the next N posts with a 500."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if receiver.fail else 200
                receiver.fail = max(0, receiver.fail - 1)
                receiver.received.append({"headers": dict(self.headers), "body": body, "answered": status})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


@pytest.fixture
def running(settings: Settings) -> Iterator[BackgroundCollector]:
    fast = dataclasses.replace(settings, webhook_interval_seconds=1, webhook_retry_seconds=0, budgets_refresh_seconds=1)
    with BackgroundCollector(fast, grpc=False) as collector:
        yield collector


def _call(n: int, model: str, cost: str | None, project: str = "shop") -> LlmCall:
    start = time.time_ns() - n * 1_000_000
    return LlmCall(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", start_ns=start, end_ns=start + 10**9, provider="openai",
        operation="chat", request_model=model, project=project, usage=Usage(input_tokens=100, output_tokens=10),
        cost=Cost(total=Decimal(cost), parts={"input": Decimal(cost)}, price_source="catalog") if cost else None,
    )  # fmt: skip


def _write(collector: BackgroundCollector, *calls: LlmCall) -> None:
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    ledger.write(list(calls))
    ledger.close()


def test_a_signed_event_is_retried_after_a_500_and_delivered_once(running: BackgroundCollector,
                                                                  receiver: Receiver) -> None:  # fmt: skip
    made = httpx.post(running.url + "/api/v1/webhooks", json={"url": receiver.url, "events": ["model.unpriced"]})
    assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
    secret, webhook_id = made.json()["secret"], made.json()["id"]
    receiver.fail = 1
    _write(running, _call(1, "acme-secret-model", None), _call(2, "acme-secret-model", None))
    first, second = receiver.wait(2)[:2]
    assert (first["answered"], second["answered"]) == (500, 200)
    assert first["body"] == second["body"]  # the same event, tried again
    body = json.loads(second["body"])
    assert body["event"] == "model.unpriced" and body["data"]["model"] == "acme-secret-model"
    assert body["data"]["calls"] == 2 and body["id"] == "unpriced:openai:acme-secret-model"
    headers = {k.lower(): v for k, v in second["headers"].items()}
    assert headers["x-llmmeter-event"] == "model.unpriced"
    assert webhooks.verify(secret, headers["x-llmmeter-signature"], second["body"])
    assert not webhooks.verify("whsec_other", headers["x-llmmeter-signature"], second["body"])
    assert not webhooks.verify(secret, headers["x-llmmeter-signature"], second["body"] + b" ")
    assert not webhooks.verify(secret, headers["x-llmmeter-signature"], second["body"], now=time.time() + 600)
    time.sleep(3)  # more rounds: the event is noticed again, never delivered again
    assert len(receiver.received) == 2
    log = httpx.get(f"{running.url}/api/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"]
    assert [(d["event"], d["status"], d["attempts"], d["last_status"]) for d in log] == [
        ("model.unpriced", "delivered", 2, 200)
    ]
    listed = CliRunner().invoke(cli, ["webhooks", "list", "--url", running.url], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and receiver.url in listed.output and "model.unpriced" in listed.output


def test_a_budget_crossing_reaches_slack_and_bad_subscriptions_are_refused(running: BackgroundCollector,
                                                                           receiver: Receiver) -> None:  # fmt: skip
    added = CliRunner().invoke(cli, ["webhooks", "add", receiver.url, "--event", "budget.threshold", "--format",
                                     "slack", "--url", running.url])  # fmt: skip
    assert added.exit_code == 0 and "whsec_" in added.output, added.output
    assert httpx.post(running.url + "/api/v1/budgets", json={"name": "tiny", "limit_usd": "1"}).status_code == 201
    _write(running, _call(1, "gpt-4o", "0.9"))  # 90 %: past the warning threshold (80 %)
    (delivery,) = receiver.wait(1)
    assert json.loads(delivery["body"]) == {"text": json.loads(delivery["body"])["text"]}  # Slack's shape
    assert json.loads(delivery["body"])["text"].startswith("llmmeter budget.threshold: budget tiny is warning")
    _write(running, _call(2, "gpt-4o", "0.2"))  # 110 %: exceeded, a new event
    assert "is exceeded" in json.loads(receiver.wait(2)[1]["body"])["text"]
    for body, field in (
        ({"url": "ftp://x", "events": ["anomaly"]}, "url"),
        ({"url": receiver.url, "events": ["budget.exploded"]}, "events"),
        ({"url": receiver.url, "events": ["anomaly"], "format": "xml"}, "format"),
        ({"url": receiver.url, "events": ["anomaly"], "colour": "red"}, "colour"),
    ):
        answer = httpx.post(running.url + "/api/v1/webhooks", json=body)
        assert answer.status_code == 400 and answer.json()["field"] == field, (body, answer.text)
    assert httpx.delete(running.url + "/api/v1/webhooks/999").status_code == 404


def test_an_event_is_queued_once_per_subscription_and_drift_is_an_event(running: BackgroundCollector,
                                                                        receiver: Receiver) -> None:  # fmt: skip
    pool = running.collector.pool
    webhooks.create(pool, receiver.url, ["anomaly"], "json", "test")
    assert webhooks.emit(pool, "anomaly", "anomaly:x", {"summary": "spike"}) == 1
    assert webhooks.emit(pool, "anomaly", "anomaly:x", {"summary": "spike"}) == 0
    assert webhooks.emit(pool, "reconcile.drift", "drift:x", {}) == 0  # nobody subscribed to it
    result = {"provider": "openai", "from": "2026-11-01", "to": "2026-11-07", "provider_usd": "100",
              "ledger_usd": "80", "difference_usd": "-20", "coverage": "0.8", "drift_ratio": "0.2000",
              "summary": "80.0 % of OpenAI's billed spend is instrumented"}  # fmt: skip
    drift = events.reconcile_drift(result)
    assert drift is not None and drift[1] == "drift:openai:2026-11-01:2026-11-07"
    assert events.reconcile_drift({**result, "drift_ratio": "0.0100"}) is None
    assert json.loads(receiver.wait(1)[0]["body"])["data"] == {"summary": "spike"}
