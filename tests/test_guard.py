"""The SDK budget guard: policy validation naming the field, model swap and BudgetExceeded driven by the real
collector's budget status, fail-open when the collector is unreachable (logged once), the API key sent."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter
from llmmeter import guard, semconv
from llmmeter.budget_policy import PolicyError, load
from llmmeter_collector.config import Settings
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .realprom import free_port

POLICY = """
refresh_seconds: 0.2
rules:
  - budget: search-team
    over: 100%
    match: {feature: search, model: gpt-4o}
    use: gpt-4o-mini
  - budget: total
    over: 100%
    raise: true
"""


class StatusServer:
    """A stand-in budget endpoint the test controls (for the guard's own logic; the collector is used below)."""

    def __init__(self) -> None:
        self.budgets: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.headers.append(dict(self.headers))
                body = json.dumps({"budgets": outer.budgets}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def status_server() -> Iterator[StatusServer]:
    server = StatusServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_guard() -> Iterator[None]:
    yield
    guard.disable()


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"rules": []}, "budget_policy.rules"),
        ({"rules": [{"over": 1, "use": "m"}]}, r"rules\[0\]\.budget"),
        ({"rules": [{"budget": "b"}]}, r"rules\[0\]: give exactly one of use"),
        ({"rules": [{"budget": "b", "use": "m", "raise": True}]}, r"rules\[0\]: give exactly one"),
        ({"rules": [{"budget": "b", "raise": "yes"}]}, r"rules\[0\]\.raise"),
        ({"rules": [{"budget": "b", "use": "m", "over": "lots"}]}, r"rules\[0\]\.over"),
        ({"rules": [{"budget": "b", "use": "m", "match": {"team": "x"}}]}, r"rules\[0\]\.match\.team"),
        ({"rules": [{"budget": "b", "use": "m", "match": {"feature": ""}}]}, r"rules\[0\]\.match\.feature"),
        ({"rules": [{"budget": "b", "use": "m", "colour": 1}]}, r"rules\[0\]\.colour"),
        ({"rules": [{"budget": "b", "use": "m"}], "refresh_seconds": 0}, "refresh_seconds"),
        ({"rules": [{"budget": "b", "use": "m"}], "collector_url": "ftp://x"}, "collector_url"),
    ],
)
def test_a_bad_policy_names_the_field(policy: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError, match=field):
        guard.configure(policy)
    assert not guard.active()


def test_policy_files_yaml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    policy = load(path)
    assert [r.budget for r in policy.rules] == ["search-team", "total"]
    assert policy.rules[0].use == "gpt-4o-mini" and policy.rules[1].use is None
    as_json = tmp_path / "policy.json"
    as_json.write_text(json.dumps({"rules": [{"budget": "x", "over": "80%", "use": "m"}]}))
    assert load(as_json).rules[0].over == pytest.approx(0.8)
    (tmp_path / "bad.yaml").write_text("rules: [unclosed")
    with pytest.raises(PolicyError, match=r"bad\.yaml: not valid YAML"):
        load(tmp_path / "bad.yaml")


def test_rules_apply_only_to_matching_calls_over_their_threshold(
    status_server: StatusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_API_KEY", "secret-key")
    policy = {
        "collector_url": status_server.url,
        "refresh_seconds": 60,
        "rules": [
            {"budget": "growth", "over": "90%", "match": {"tags": {"team": "growth"}}, "use": "cheap"},
            {"budget": "total", "raise": True, "match": {"provider": "anthropic"}},
        ],
    }
    status_server.budgets = [{"name": "growth", "utilization": "0.5"}, {"name": "total", "utilization": "0.2"}]
    guard.configure(policy)
    guard.refresh_now()
    with llmmeter.attributes(tags={"team": "growth"}):
        assert guard.check("openai", "gpt-4o") == "gpt-4o"  # 50 % < 90 %
    status_server.budgets = [{"name": "growth", "utilization": "0.95"}, {"name": "total", "utilization": "1.2"}]
    guard.refresh_now()
    with llmmeter.attributes(tags={"team": "growth"}):
        assert guard.check("openai", "gpt-4o") == "cheap"
    with llmmeter.attributes(tags={"team": "search"}):
        assert guard.check("openai", "gpt-4o") == "gpt-4o"
        with pytest.raises(llmmeter.BudgetExceeded) as info:
            guard.check("anthropic", "claude-sonnet-4")
    assert info.value.budget == "total" and info.value.utilization == pytest.approx(1.2)
    assert "total" in str(info.value) and "120%" in str(info.value)
    assert status_server.headers[-1]["Authorization"] == "Bearer secret-key"


def test_unreachable_collector_fails_open_and_says_so_once(
    status_server: StatusServer, caplog: pytest.LogCaptureFixture
) -> None:
    status_server.budgets = [{"name": "total", "utilization": "2"}]
    guard.configure(
        {"collector_url": status_server.url, "refresh_seconds": 60, "rules": [{"budget": "total", "raise": True}]}
    )
    guard.refresh_now()
    with pytest.raises(llmmeter.BudgetExceeded):
        guard.check("openai", "gpt-4o")
    status_server.close()
    caplog.set_level(logging.WARNING, logger="llmmeter")
    guard.refresh_now()
    # a recent good state still holds for three refresh periods ...
    with pytest.raises(llmmeter.BudgetExceeded):
        guard.check("openai", "gpt-4o")
    # ... then the guard fails open
    guard._guard.last_success = time.monotonic() - 181  # type: ignore[union-attr]
    guard.refresh_now()
    guard.refresh_now()
    assert guard.check("openai", "gpt-4o") == "gpt-4o"
    warnings = [r for r in caplog.records if "cannot reach the collector" in r.getMessage()]
    assert len(warnings) == 1
    assert guard.state()["reachable"] is False


def test_never_reached_collector_lets_calls_through(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmmeter")
    url = f"http://127.0.0.1:{free_port()}"
    guard.configure({"collector_url": url, "refresh_seconds": 0.1, "rules": [{"budget": "total", "raise": True}]})
    time.sleep(0.5)  # several background refreshes fail
    assert guard.check("openai", "gpt-4o") == "gpt-4o"
    assert len([r for r in caplog.records if "cannot reach the collector" in r.getMessage()]) == 1


def test_the_guard_swaps_and_stops_real_calls_from_collector_budget_state(
    tmp_path: Path, settings: Settings, fake: FakeProvider, instrumented: None, spans: InMemorySpanExporter
) -> None:
    with BackgroundCollector(Settings(**{**settings.__dict__, "budgets_refresh_seconds": 1})) as running:
        api = running.url + "/api/v1/budgets"
        # one gpt-4o call ("hi": 11 input, 20 output tokens) costs $0.0002275
        created = httpx.post(api, json={"name": "search-team", "limit": "0.0002", "scope": {"feature": "search"}})
        assert created.status_code == 201
        assert httpx.post(api, json={"name": "total", "limit": "1000"}).status_code == 201
        path = tmp_path / "policy.yaml"
        path.write_text(POLICY)
        llmmeter.instrument(configure_export=False, budget_policy=str(path), endpoint=running.url)
        assert guard.active()
        guard.refresh_now()
        assert guard.state()["utilization"] == {"search-team": 0.0, "total": 0.0}

        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
        processor = export_to(OTLPSpanExporter(endpoint=running.url + "/v1/traces"))
        try:
            with llmmeter.attributes(feature="search"):
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        finally:
            stop_export(processor)
        assert fake.requests[-1].json["model"] == "gpt-4o"

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = {b["name"]: b for b in httpx.get(api + "/status").json()["budgets"]}
            if status["search-team"]["state"] == "exceeded":
                break
            time.sleep(0.2)
        assert status["search-team"]["spent_usd"] == "0.0002275"
        guard.refresh_now()

        spans.clear()
        with llmmeter.attributes(feature="search"):
            answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "hi"}])
        with llmmeter.attributes(feature="support"):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert [r.json["model"] for r in fake.requests[-3:]] == ["gpt-4o-mini", "o3", "gpt-4o"]
        assert answer.model.startswith("gpt-4o-mini")
        swapped, other_model, other_feature = spans.get_finished_spans()
        assert swapped.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert swapped.attributes[semconv.REQUESTED_MODEL] == "gpt-4o"
        assert semconv.REQUESTED_MODEL not in other_model.attributes
        assert semconv.REQUESTED_MODEL not in other_feature.attributes

        # the total budget over 100 %: the raise rule stops every call before it reaches the provider
        assert httpx.put(api + "/total", json={"limit": "0.0001"}).status_code == 200
        guard.refresh_now()
        sent = len(fake.requests)
        with pytest.raises(llmmeter.BudgetExceeded, match="total"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert len(fake.requests) == sent
