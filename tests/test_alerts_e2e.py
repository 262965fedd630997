"""End to end on loopback, real processes: instrumented OpenAI SDK -> fake provider; spans -> collector ->
Postgres -> budget gauges -> real Prometheus (the repo's rules) -> real Alertmanager (the repo's routes and
inhibition, receivers pointed at a webhook in this test). Spend passes 80 % then 100 % of a budget: the
webhook gets the warning, then the exceeded alert (the warning inhibited), and the SDK guard swaps the model
of the next call."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter
from llmmeter import guard, semconv
from llmmeter_collector.config import Settings
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .realprom import Alertmanager, Prometheus

pytestmark = pytest.mark.real_clock  # a real Prometheus and Alertmanager, which keep the real time

ROOT = Path(__file__).resolve().parents[1]


class WebhookReceiver:
    """The Alertmanager webhook receiver: records every notification (alert name, budget, status)."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.notifications.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self) -> list[tuple[str, str, str]]:
        """(receiver, alertname, budget) of every firing alert notified so far, in order."""
        with self.lock:
            return [
                (n["receiver"], a["labels"]["alertname"], a["labels"].get("budget", ""))
                for n in self.notifications
                for a in n["alerts"]
                if a["status"] == "firing"
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_alertmanager_config(receiver_url: str) -> str:
    """The repo's alertmanager.yml with every receiver replaced by the test webhook and short timings."""
    config = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())
    config["global"] = {"resolve_timeout": "5m"}
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": receiver_url, "send_resolved": True}]}
        for r in config["receivers"]
    ]

    def fast(route: dict[str, Any]) -> None:
        route.update({"group_wait": "1s", "group_interval": "1s"})
        for child in route.get("routes", []):
            fast(child)

    fast(config["route"])
    return yaml.safe_dump(config)


test_alertmanager_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(autouse=True)
def _no_guard() -> Iterator[None]:
    yield
    guard.disable()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def test_budget_alerts_and_guard_end_to_end(
    tmp_path: Path,
    settings: Settings,
    fake: FakeProvider,
    instrumented: None,
    spans: InMemorySpanExporter,
    webhook: WebhookReceiver,
) -> None:
    budgets_file = tmp_path / "budgets.yaml"
    budgets_file.write_text(
        "budgets:\n  - {name: search-team, limit: 1, period: monthly, scope: {feature: search}}\n"
        "  - {name: total, limit: 1000}\n"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "refresh_seconds: 0.2\nrules:\n"
        "  - {budget: search-team, over: 100%, match: {feature: search, model: gpt-4o}, use: gpt-4o-mini}\n"
    )
    collector_settings = Settings(
        **{**settings.__dict__, "budgets_file": str(budgets_file), "budgets_refresh_seconds": 1}
    )
    rules = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    (tmp_path / "am").mkdir()
    (tmp_path / "prom").mkdir()

    with (
        BackgroundCollector(collector_settings) as running,
        Alertmanager(tmp_path / "am", test_alertmanager_config(webhook.url)) as am,
        Prometheus(
            tmp_path / "prom",
            scrape_targets=[running.url.removeprefix("http://")],
            rule_files=rules,
            alertmanager=am.address,
            interval="1s",
        ) as prom,
    ):
        llmmeter.instrument(configure_export=False, budget_policy=str(policy), endpoint=running.url)
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
        processor = export_to(OTLPSpanExporter(endpoint=running.url + "/v1/traces"))
        try:

            def search_call(input_tokens: int, output_tokens: int) -> None:
                usage = json.dumps({"input_tokens": input_tokens, "output_tokens": output_tokens})
                with llmmeter.attributes(feature="search"):
                    client.chat.completions.create(
                        model="gpt-4o",
                        messages=[{"role": "user", "content": "find shoes"}],
                        extra_headers={"x-fake-usage": usage},
                    )

            prom.wait_for('llmmeter_budget_utilization_ratio{budget="search-team"} == 0')
            # gpt-4o: $2.50 / 1M input, $10 / 1M output -> $0.10 + $0.75 = $0.85 of the $1 budget
            search_call(40_000, 75_000)
            prom.wait_for('llmmeter_budget_utilization_ratio{budget="search-team"} == 0.85')
            wait_until(
                "the warning notification",
                lambda: ("budget-owners", "LLMBudgetWarning", "search-team") in webhook.firing(),
            )
            assert not [f for f in webhook.firing() if f[1] == "LLMBudgetExceeded"]
            assert guard.check("openai", "gpt-4o") == "gpt-4o"  # not over 100 % yet

            # + $0.10 + $0.10 -> $1.05: exceeded
            search_call(40_000, 10_000)
            wait_until(
                "the exceeded notification",
                lambda: ("budget-critical", "LLMBudgetExceeded", "search-team") in webhook.firing(),
            )
            firing = webhook.firing()
            first_warning = firing.index(("budget-owners", "LLMBudgetWarning", "search-team"))
            assert first_warning < firing.index(("budget-critical", "LLMBudgetExceeded", "search-team"))

            # the exceeded alert inhibits the warning of the same budget
            def warning_inhibited() -> bool:
                alerts = httpx.get(am.url + "/api/v2/alerts", params={"filter": 'alertname="LLMBudgetWarning"'}).json()
                return bool(alerts) and all(a["status"]["inhibitedBy"] for a in alerts)

            wait_until("the warning to be inhibited", warning_inhibited)
            assert not [f for f in webhook.firing() if f[2] == "total"]

            # the guard learns the budget is over and swaps the model of the next call
            wait_until("the guard to see search-team over", lambda: guard.state()["tripped"] == ["search-team"], 10)
            spans.clear()
            search_call(100, 100)
        finally:
            stop_export(processor)
        assert fake.requests[-1].json["model"] == "gpt-4o-mini"
        (span,) = spans.get_finished_spans()
        assert span.attributes[semconv.REQUESTED_MODEL] == "gpt-4o"
        assert span.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        # the swapped call is priced as gpt-4o-mini ($0.15 / $0.60 per 1M): 100 + 100 tokens = $0.000075

        def spent() -> Decimal:
            return Decimal(httpx.get(running.url + "/api/v1/budgets/search-team").json()["status"]["spent_usd"])

        wait_until("the swapped call in the budget", lambda: spent() == Decimal("1.050075"), 10)
