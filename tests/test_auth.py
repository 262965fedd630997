"""API keys on the REST API: roles, project isolation on every read endpoint, and per-project rate limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from llmmeter_collector.access.ratelimit import RateLimiter
from llmmeter_collector.cli import cli
from llmmeter_collector.config import Settings
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector


def _seed(collector: BackgroundCollector) -> None:
    """Calls of projects a and b over the last ten days (enough for recommendations and anomalies)."""
    core = collector.collector
    now = datetime.now(timezone.utc)
    calls = []
    for i in range(240):
        project = "a" if i % 2 else "b"
        start = int((now - timedelta(hours=i)).timestamp() * 1e9)
        calls.append(
            LlmCall(
                trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", start_ns=start, end_ns=start + 10**9,
                provider="openai", operation="chat", request_model="gpt-4o", project=project,
                feature=f"{project}-feature", user_id=f"{project}-user", usage=Usage(1000, 100),
            )
        )  # fmt: skip
    for c in calls:
        c.cost = core.catalog.price(c)
    ledger = Ledger(core.dsn, core.schema)
    ledger.write(calls)
    ledger.close()


@pytest.fixture
def keyed(collector: BackgroundCollector) -> Iterator[tuple[BackgroundCollector, dict[str, str]]]:
    _seed(collector)
    store = collector.collector.keys
    keys = {
        "admin": store.create("admin", "admin"),
        "viewer": store.create("viewer", "viewer"),
        "a": store.create("team-a", "viewer", ["a"]),
        "a-admin": store.create("team-a-admin", "admin", ["a"]),
        "ingest": store.create("ingest", "ingest", ["a"]),
    }
    yield collector, keys


def _get(url: str, path: str, key: str | None = None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(url + path, params=params, headers=headers)


def test_once_keys_exist_the_api_needs_one(keyed: tuple[BackgroundCollector, dict[str, str]]) -> None:
    collector, keys = keyed
    missing = _get(collector.url, "/api/v1/summary")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert _get(collector.url, "/api/v1/summary", "llmm_not-a-real-key").status_code == 401
    assert _get(collector.url, "/api/v1/summary", keys["ingest"]).status_code == 403  # ingest keys only send
    assert _get(collector.url, "/api/v1/summary", keys["viewer"]).status_code == 200
    assert httpx.get(collector.url + "/api/v1/summary", headers={"x-llmmeter-key": keys["viewer"]}).status_code == 200
    assert _get(collector.url, "/api/v1/openapi.json").status_code == 200  # the document is public


def test_a_viewer_cannot_change_budgets_or_keys(keyed: tuple[BackgroundCollector, dict[str, str]]) -> None:
    collector, keys = keyed
    budget = {"name": "team-a", "limit_usd": "100", "scope": {"project": "a"}}

    def send(method: str, path: str, key: str, body: object = None) -> httpx.Response:
        return httpx.request(method, collector.url + path, json=body, headers={"Authorization": f"Bearer {key}"})

    for key in ("viewer", "a"):
        assert send("POST", "/api/v1/budgets", keys[key], budget).status_code == 403
        assert send("PUT", "/api/v1/budgets/team-a", keys[key], budget).status_code == 403
        assert send("POST", "/api/v1/keys", keys[key], {"name": "x", "role": "admin"}).status_code == 403
        assert _get(collector.url, "/api/v1/keys", keys[key]).status_code == 403  # listing keys is admin-only
    assert send("POST", "/api/v1/budgets", keys["admin"], budget).status_code in (200, 201)
    assert send("DELETE", "/api/v1/budgets/team-a", keys["viewer"]).status_code == 403
    assert _get(collector.url, "/api/v1/budgets/team-a", keys["viewer"]).status_code == 200  # reading is fine
    assert send("DELETE", "/api/v1/budgets/team-a", keys["admin"]).status_code in (200, 204)


def test_a_key_of_project_a_sees_nothing_of_project_b(keyed: tuple[BackgroundCollector, dict[str, str]]) -> None:
    collector, keys = keyed
    url, a = collector.url, keys["a"]
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    for name in ("a-only", "b-only"):
        project = name[0]
        body = {"name": name, "limit_usd": "1", "scope": {"project": project}}
        assert httpx.post(url + "/api/v1/budgets", json=body, headers=admin).status_code in (200, 201)

    summary = _get(url, "/api/v1/summary", a, period="all").json()
    assert [r["project"] for r in summary["by_project"]] == ["a"]
    assert {r["feature"] for r in summary["by_feature"]} == {"a-feature"}
    assert summary["calls"] == 120
    everything = _get(url, "/api/v1/summary", keys["viewer"], period="all").json()
    assert everything["calls"] == 240

    calls = _get(url, "/api/v1/calls", a, limit="1000").json()["calls"]
    assert len(calls) == 120 and {c["project"] for c in calls} == {"a"}
    assert _get(url, "/api/v1/calls", a, user="b-user").json()["calls"] == []
    export = _get(url, "/api/v1/export", a, format="jsonl").text.splitlines()
    assert len(export) == 120 and all('"project":"a"' in line for line in export)
    recs = _get(url, "/api/v1/recommendations", a).json()
    assert recs["calls"] == 120
    assert all(r["evidence"].get("project", "a") == "a" for r in recs["recommendations"])
    anomalies = _get(url, "/api/v1/anomalies", a).json()
    assert all(x["project"] == "a" for x in anomalies["anomalies"]) and anomalies["series_checked"] <= 2
    forecast_a = _get(url, "/api/v1/forecast", a).json()
    forecast_all = _get(url, "/api/v1/forecast", keys["viewer"]).json()
    assert forecast_a["spent_usd"] != forecast_all["spent_usd"] or forecast_all["spent_usd"] == "0"
    assert [b["name"] for b in _get(url, "/api/v1/budgets", a).json()["budgets"]] == ["a-only"]
    status = _get(url, "/api/v1/budgets/status", a).json()["budgets"]
    assert {b["name"] for b in status} <= {"a-only"}
    assert {b["name"] for b in summary["budgets"]} <= {"a-only"}

    # asking for project b by name is refused, on every read endpoint
    for path in ("/api/v1/summary", "/api/v1/calls", "/api/v1/export", "/api/v1/recommendations",
                 "/api/v1/forecast", "/api/v1/anomalies"):  # fmt: skip
        response = _get(url, path, a, project="b")
        assert response.status_code == 403, path
        assert "project" in response.json()["error"]
    # an admin limited to project a cannot create a budget for b either
    body = {"name": "b-too", "limit_usd": "1", "scope": {"project": "b"}}
    limited = httpx.post(url + "/api/v1/budgets", json=body, headers={"Authorization": f"Bearer {keys['a-admin']}"})
    assert limited.status_code == 403


def test_keys_cli_creates_lists_and_revokes(collector: BackgroundCollector, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LLMMETER_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("LLMMETER_API_KEY", raising=False)
    runner = CliRunner()
    # no key exists yet: the API is open, so the first (admin) key can be created over it
    created = runner.invoke(cli, ["keys", "create", "root", "--role", "admin", "--url", collector.url])
    assert created.exit_code == 0, created.output
    admin_key = created.output.strip().splitlines()[-1]
    assert admin_key.startswith("llmm_")
    denied = runner.invoke(cli, ["keys", "list", "--url", collector.url])
    assert denied.exit_code == 1 and "401" in denied.output and "--api-key" in denied.output
    args = ["keys", "create", "dash", "--role", "viewer", "--project", "a", "--url", collector.url, "--json"]
    viewer = runner.invoke(cli, [*args, "--api-key", admin_key])
    assert viewer.exit_code == 0, viewer.output
    listed = runner.invoke(cli, ["keys", "list", "--url", collector.url, "--json"], env={"LLMMETER_API_KEY": admin_key})
    names = {k["name"]: k for k in __import__("json").loads(listed.output)["keys"]}
    assert set(names) == {"root", "dash"} and names["dash"]["projects"] == ["a"]
    assert all("key" not in k for k in names.values())  # never the key itself
    revoked = runner.invoke(
        cli, ["keys", "revoke", str(names["dash"]["id"]), "--url", collector.url, "--api-key", admin_key]
    )
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(
        cli, ["keys", "revoke", str(names["dash"]["id"]), "--url", collector.url, "--api-key", admin_key]
    )
    assert again.exit_code == 1 and "no active key" in again.output


def test_api_rate_limit_answers_429_with_retry_after_per_client_without_keys(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_API_RATE_LIMIT", "0.001")  # one token per 1000 s: no refill during the test
    monkeypatch.setenv("LLMMETER_API_RATE_BURST", "2")
    with BackgroundCollector(settings) as collector:
        codes = [_get(collector.url, "/api/v1/summary", project="a").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = _get(collector.url, "/api/v1/summary", project="a")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # naming another project does not open a new bucket: without keys, the client's address is limited
        assert _get(collector.url, "/api/v1/summary", project="b").status_code == 429


def _export(*projects: str) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i, project in enumerate(projects, start=1):
        span = spans.spans.add()
        span.trace_id, span.span_id, span.name = bytes.fromhex("cd" * 16), (now + i).to_bytes(8, "big"), "chat gpt-4o"
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 10**8
        for k, v in (("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
                     ("gen_ai.request.model", "gpt-4o"), ("llmmeter.project", project)):  # fmt: skip
            span.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
    return request.SerializeToString()


def test_ingest_rate_limit_answers_429_with_retry_after_per_key_whatever_the_project(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_INGEST_RATE_LIMIT", "0.001")
    monkeypatch.setenv("LLMMETER_INGEST_RATE_BURST", "3")
    with BackgroundCollector(settings) as collector:
        one, two = (collector.collector.keys.create(name, "ingest") for name in ("app-one", "app-two"))

        def post(body: bytes, key: str) -> httpx.Response:
            headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"}
            return httpx.post(collector.url + "/v1/traces", content=body, headers=headers)

        assert post(_export("a", "a"), one).status_code == 200
        refused = post(_export("a", "a"), one)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert post(_export("fresh", "fresh"), one).status_code == 429  # naming a new project opens no bucket
        assert post(_export("b", "b", "b"), two).status_code == 200  # another key has its own
        viewer = collector.collector.keys.create("reader", "viewer")
        summary = httpx.get(
            collector.url + "/api/v1/summary", params={"period": "all"}, headers={"Authorization": f"Bearer {viewer}"}
        ).json()
        assert {r["project"]: r["calls"] for r in summary["by_project"]} == {"a": 2, "b": 3}  # nothing of the 429s


def test_ingest_rate_limit_without_keys_is_per_client_address(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_INGEST_RATE_LIMIT", "0.001")
    monkeypatch.setenv("LLMMETER_INGEST_RATE_BURST", "3")
    headers = {"Content-Type": "application/x-protobuf"}
    with BackgroundCollector(settings) as collector:
        assert httpx.post(collector.url + "/v1/traces", content=_export("a", "b"), headers=headers).status_code == 200
        for project in ("c", "d"):  # new projects from the same address share its bucket
            refused = httpx.post(collector.url + "/v1/traces", content=_export(project, project), headers=headers)
            assert refused.status_code == 429


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=4, clock=lambda: now[0])
    assert [limiter.take("p") for _ in range(4)] == [0.0] * 4
    assert limiter.take("p") == pytest.approx(0.5)  # one token comes back every 0.5 s
    now[0] = 1.0
    assert limiter.take("p", 2) == 0.0 and limiter.take("p") == pytest.approx(0.5)
    assert limiter.take("q", 10) == 0.0  # larger than the burst: allowed once from a full bucket
    assert limiter.take("q") == pytest.approx(3.5)  # then the debt is paid back at the rate
