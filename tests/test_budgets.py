"""Budgets: validation that names the field, period windows, exact spend from the rollups for every scope
kind, the REST API (CRUD, read-only file budgets, reload keeping the last good set), persistence across a
restart, and the budget gauges on /metrics."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import ConnectionPool

from llmmeter_collector.budgets import definition as b
from llmmeter_collector.budgets.status import BudgetEngine, evaluate, source_of
from llmmeter_collector.config import Settings
from llmmeter_collector.ledger import storage
from llmmeter_collector.llmcall import Cost, LlmCall
from llmmeter_collector.service import BackgroundCollector

UTC = timezone.utc
NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)


def call(ts: datetime, cost: str | None, **dims: object) -> LlmCall:
    ns = int(ts.timestamp() * 1e9)
    return LlmCall(
        trace_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        start_ns=ns,
        end_ns=ns + 1_000_000,
        provider=str(dims.pop("provider", "openai")),
        operation="chat",
        request_model=str(dims.pop("model", "gpt-4o")),
        cost=None if cost is None else Cost(total=Decimal(cost), parts={}, price_source="test"),
        **dims,  # type: ignore[arg-type]
    )


@pytest.fixture
def pool(database_url: str, pg_schema: str) -> Iterator[ConnectionPool]:
    storage.migrate(database_url, pg_schema)
    with storage.create_pool(database_url, pg_schema) as p:
        yield p


def write(database_url: str, pg_schema: str, calls: list[LlmCall]) -> None:
    ledger = storage.Ledger(database_url, pg_schema)
    try:
        ledger.write(calls)
    finally:
        ledger.close()


# --- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"limit": 10}, "budgets[0].name"),
        ({"name": "a b", "limit": 10}, "budgets[0].name"),
        ({"name": "status", "limit": 10}, "budgets[0].name"),
        ({"name": "x"}, "budgets[0].limit"),
        ({"name": "x", "limit": -5}, "budgets[0].limit"),
        ({"name": "x", "limit": "lots"}, "budgets[0].limit"),
        ({"name": "x", "limit": "1e400"}, "budgets[0].limit"),  # finite in Decimal, +Inf as a Prometheus gauge
        ({"name": "x", "limit": 1_000_000_001}, "budgets[0].limit"),
        ({"name": "x", "limit": 10, "period": "yearly"}, "budgets[0].period"),
        ({"name": "x", "limit": 10, "scope": {"team": "a"}}, "budgets[0].scope.team"),
        ({"name": "x", "limit": 10, "scope": {"feature": ""}}, "budgets[0].scope.feature"),
        ({"name": "x", "limit": 10, "thresholds": [1.0, 0.8]}, "budgets[0].thresholds"),
        ({"name": "x", "limit": 10, "thresholds": ["eighty"]}, "budgets[0].thresholds[0]"),
        ({"name": "x", "limit": 10, "period": "monthly", "reset_day": 31}, "budgets[0].reset_day"),
        ({"name": "x", "limit": 10, "period": "weekly", "reset_day": "funday"}, "budgets[0].reset_day"),
        ({"name": "x", "limit": 10, "timezone": "Mars/Olympus"}, "budgets[0].timezone"),
        ({"name": "x", "limit": 10, "period": "fixed", "start": "2025-01-01"}, "budgets[0].end"),
        (
            {"name": "x", "limit": 10, "period": "fixed", "start": "2025-02-01", "end": "2025-01-01"},
            "budgets[0].end",
        ),
        ({"name": "x", "limit": 10, "start": "2025-01-01"}, "budgets[0].start"),
        ({"name": "x", "limit": 10, "colour": "red"}, "budgets[0].colour"),
    ],
)
def test_a_bad_budget_file_names_the_field(tmp_path: Path, entry: dict, field: str) -> None:  # type: ignore[type-arg]
    import yaml

    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump({"budgets": [entry]}))
    with pytest.raises(b.BudgetFileError) as info:
        b.load_file(path)
    assert info.value.field == field
    assert str(path) in str(info.value) and field in str(info.value)


def test_duplicate_names_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - {name: a, limit: 1}\n  - {name: a, limit: 2}\n")
    with pytest.raises(b.BudgetFileError, match=r"budgets\[1\]\.name: duplicate"):
        b.load_file(path)
    path.write_text("budgets: [unclosed\n")
    with pytest.raises(b.BudgetFileError, match="not valid YAML"):
        b.load_file(path)
    with pytest.raises(b.BudgetFileError, match="cannot read"):
        b.load_file(tmp_path / "missing.yaml")


def test_a_full_definition_is_read_exactly() -> None:
    budget = b.parse_budget(
        {
            "name": "search-team",
            "limit": "200.10",
            "scope": {"feature": "search", "model": ["gpt-4o", "o3"], "tag.team": "growth"},
            "thresholds": "50%,0.8,100%",
            "period": "weekly",
            "reset_day": "sunday",
            "timezone": "Europe/Berlin",
        }
    )
    assert budget.limit == Decimal("200.10")
    assert budget.scope.feature == ("search",) and budget.scope.model == ("gpt-4o", "o3")
    assert budget.scope.tags == (("team", "growth"),)
    assert budget.thresholds == (Decimal("0.5"), Decimal("0.8"), Decimal("1.0"))
    assert (budget.warning, budget.exceeded) == (Decimal("0.5"), Decimal("1.0"))
    assert budget.reset_day == 7
    # round trip through the API representation
    assert b.parse_budget(budget.to_json()) == budget


# --- periods ---------------------------------------------------------------------------------------------


def test_period_windows_follow_reset_day_and_time_zone() -> None:
    monthly = b.parse_budget({"name": "m", "limit": 1, "reset_day": 15, "timezone": "Europe/Berlin"})
    start, end = monthly.window(NOW)  # 20 March: the period started 15 March, Berlin midnight = 23:00 UTC
    assert start == datetime(2025, 3, 14, 23, 0, tzinfo=UTC)
    assert end == datetime(2025, 4, 14, 22, 0, tzinfo=UTC)  # summer time from 30 March
    before_reset = monthly.window(datetime(2025, 3, 10, tzinfo=UTC))
    assert before_reset[0] == datetime(2025, 2, 14, 23, 0, tzinfo=UTC)

    weekly = b.parse_budget({"name": "w", "limit": 1, "period": "weekly"})
    assert weekly.window(NOW) == (datetime(2025, 3, 17, tzinfo=UTC), datetime(2025, 3, 24, tzinfo=UTC))
    daily = b.parse_budget({"name": "d", "limit": 1, "period": "daily", "timezone": "Asia/Kolkata"})
    assert daily.window(NOW) == (datetime(2025, 3, 19, 18, 30, tzinfo=UTC), datetime(2025, 3, 20, 18, 30, tzinfo=UTC))
    fixed = b.parse_budget({"name": "f", "limit": 1, "period": "fixed", "start": "2025-03-01", "end": "2025-03-07"})
    assert fixed.window(NOW) == (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC))
    assert fixed.local_days(NOW) == (date(2025, 3, 1), date(2025, 3, 8))


# --- spend -----------------------------------------------------------------------------------------------


def test_spend_is_exact_for_every_scope_kind_including_window_edges(
    database_url: str, pg_schema: str, pool: ConnectionPool
) -> None:
    day = datetime(2025, 3, 20, tzinfo=UTC)
    calls = [
        call(day + timedelta(hours=1), "0.100000001", feature="search", user_id="u1", tags={"team": "growth"}),
        call(day + timedelta(hours=2), "0.2", feature="search", user_id="u2", model="gpt-4o-mini"),
        call(day + timedelta(hours=3), "0.3", feature="chat", user_id="u1", environment="prod"),
        call(day + timedelta(hours=4), None, feature="search", user_id="u1", model="mystery-model"),
        # Kolkata's day starts at 18:30 UTC: these two straddle its edge (19 March 18:00 and 18:45 UTC)
        call(day - timedelta(hours=6), "1", feature="search", user_id="u1", tags={"team": "growth"}),
        call(day - timedelta(hours=5, minutes=15), "2", feature="search", user_id="u1", tags={"team": "growth"}),
        call(day - timedelta(days=40), "50", feature="search"),  # previous month
    ]
    write(database_url, pg_schema, calls)

    def spent(**definition: object) -> tuple[Decimal, int]:
        budget = b.parse_budget({"name": "x", "limit": 10, **definition})
        status = evaluate(pool, budget, NOW)
        return status.spent, status.unpriced_calls

    assert spent() == (Decimal("3.600000001"), 1)
    assert spent(scope={"feature": "search"}) == (Decimal("3.300000001"), 1)
    assert spent(scope={"feature": "search", "model": "gpt-4o-mini"}) == (Decimal("0.2"), 0)
    assert spent(scope={"user": "u1"}) == (Decimal("3.400000001"), 1)
    assert spent(scope={"user": "u1", "feature": "chat"}) == (Decimal("0.3"), 0)
    assert spent(scope={"user": "u1", "environment": "prod"}) == (Decimal("0.3"), 0)
    assert spent(scope={"tags": {"team": "growth"}}) == (Decimal("3.100000001"), 0)
    assert spent(scope={"feature": ["search", "chat"], "provider": "openai"}) == (Decimal("3.600000001"), 1)
    # a daily budget in a +05:30 zone: the whole-hour part from the rollup, the half hour from raw calls
    kolkata = {"period": "daily", "timezone": "Asia/Kolkata"}
    assert spent(**kolkata) == (Decimal("2.600000001"), 1)
    assert spent(**kolkata, scope={"user": "u1"}) == (Decimal("2.400000001"), 1)
    assert spent(**kolkata, scope={"tags": {"team": "growth"}}) == (Decimal("2.100000001"), 0)

    assert source_of(b.parse_scope({"feature": "a", "model": "m"})) == "hour"
    assert source_of(b.parse_scope({"user": "u", "project": "p"})) == "user_day"
    assert source_of(b.parse_scope({"user": "u", "model": "m"})) == "calls"
    assert source_of(b.parse_scope({"tags": {"k": "v"}})) == "calls"


def test_status_state_and_forecast(database_url: str, pg_schema: str, pool: ConnectionPool) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    write(database_url, pg_schema, [call(start + timedelta(days=d, hours=1), "3") for d in range(19)])
    # 19 days x $3 = $57 on 20 March at noon: 19.5 days of 31 elapsed, $3/day
    status = evaluate(pool, b.parse_budget({"name": "m", "limit": 70}), NOW)
    assert status.spent == Decimal(57)
    assert status.state == "warning" and status.utilization == Decimal("0.814286")
    assert status.forecast is not None
    assert status.forecast.method == "run_rate"
    assert status.forecast.expected == Decimal(57) + Decimal(repr(57 / 19.5 * 11.5)).quantize(Decimal("0.000001"))
    assert evaluate(pool, b.parse_budget({"name": "m", "limit": 57}), NOW).state == "exceeded"
    assert evaluate(pool, b.parse_budget({"name": "m", "limit": 100}), NOW).state == "ok"


# --- engine and gauges -----------------------------------------------------------------------------------


def gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("llmmeter_budget"):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_reload_keeps_the_last_good_set(tmp_path: Path, pool: ConnectionPool) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - {name: a, limit: 1}\n")
    engine = BudgetEngine(lambda: pool, str(path), refresh_seconds=60, clock=lambda: NOW)
    engine.refresh()
    path.write_text("budgets:\n  - {name: b, limit: -1}\n")
    with pytest.raises(b.BudgetFileError, match=r"budgets\[0\]\.limit"):
        engine.reload_file()
    assert [x.name for x in engine.budgets()] == ["a"]
    path.write_text("budgets:\n  - {name: b, limit: 2}\n")
    engine.reload_file()
    engine.refresh()
    assert [x.name for x in engine.budgets()] == ["b"] and list(engine.statuses) == ["b"]


def test_budget_api_crud_gauges_and_restart(tmp_path: Path, settings: Settings) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    storage.migrate(settings.database_url, settings.database_schema)
    write(
        settings.database_url,
        settings.database_schema,
        [call(day, "1.5", feature="search"), call(day, "0.25", feature="chat")],
    )
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - {name: file-total, limit: 10, period: daily}\n")
    earlier_sighup: list[int] = []  # a handler installed before (serve() reloads prices on SIGHUP) keeps working
    restore = signal.signal(signal.SIGHUP, lambda signum, frame: earlier_sighup.append(signum))
    with BackgroundCollector(Settings(**{**settings.__dict__, "budgets_file": str(path)})) as running:
        api = running.url + "/api/v1/budgets"
        created = httpx.post(
            api, json={"name": "search-team", "limit": "2", "scope": {"feature": "search"}, "period": "daily"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"]["spent_usd"] == "1.5"
        huge = httpx.post(api, json={"name": "typo", "limit": "1e400"})
        assert huge.status_code == 400 and "at most 1,000,000,000 USD" in huge.text  # never an +Inf gauge
        assert created.json()["status"]["state"] == "ok"
        assert httpx.post(api, json={"name": "search-team", "limit": 1}).status_code == 409
        bad = httpx.post(api, json={"name": "x", "limit": 1, "scope": {"colour": "red"}})
        assert bad.status_code == 400 and bad.json()["field"] == "scope.colour"
        assert httpx.put(api + "/file-total", json={"limit": 1}).status_code == 409
        assert httpx.delete(api + "/file-total").status_code == 409
        assert httpx.post(api, json={"name": "file-total", "limit": 1}).status_code == 409

        replaced = httpx.put(api + "/search-team", json={"limit": "1.6", "scope": {"feature": "search"}})
        assert replaced.status_code == 200 and replaced.json()["status"]["state"] == "warning"
        listing = httpx.get(api).json()
        assert [(x["name"], x["source"]) for x in listing["budgets"]] == [
            ("file-total", "file"),
            ("search-team", "api"),
        ]
        status = {x["name"]: x for x in httpx.get(api + "/status").json()["budgets"]}
        assert status["file-total"]["spent_usd"] == "1.75" and status["file-total"]["utilization"] == "0.175000"

        metrics = gauges(httpx.get(running.url + "/metrics").text)
        assert metrics[("llmmeter_budget_limit_usd", (("budget", "search-team"),))] == 1.6
        assert metrics[("llmmeter_budget_spent_usd", (("budget", "search-team"),))] == 1.5
        assert metrics[("llmmeter_budget_utilization_ratio", (("budget", "search-team"),))] == 0.9375
        assert (
            metrics[("llmmeter_budget_threshold_ratio", (("budget", "search-team"), ("threshold", "warning")))] == 0.8
        )
        assert metrics[("llmmeter_budget_threshold_ratio", (("budget", "search-team"), ("threshold", "exceeded")))] == 1
        assert metrics[("llmmeter_budget_forecast_usd", (("budget", "file-total"),))] >= 1.75

        # a bad file on reload: 400 naming the field, the previous budgets stay in force
        path.write_text("budgets:\n  - {name: file-total, limit: 10, period: hourly}\n")
        reload = httpx.post(api + "/reload")
        assert reload.status_code == 400 and reload.json()["field"] == "budgets[0].period"
        assert "file-total" in {x["name"] for x in httpx.get(api).json()["budgets"]}
        # SIGHUP reloads a good file in the background
        path.write_text("budgets:\n  - {name: file-new, limit: 10}\n")
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "file-new" not in {x["name"] for x in httpx.get(api).json()["budgets"]}:
            time.sleep(0.1)
        assert {x["name"] for x in httpx.get(api).json()["budgets"]} == {"file-new", "search-team"}
        assert earlier_sighup == [signal.SIGHUP]
    signal.signal(signal.SIGHUP, restore)

    # after a restart: the API budget is still there and its spend is the same (from Postgres)
    with BackgroundCollector(settings) as running:
        api = running.url + "/api/v1/budgets"
        one = httpx.get(api + "/search-team").json()
        assert one["limit_usd"] == "1.6" and one["status"]["spent_usd"] == "1.5"
        assert httpx.delete(api + "/search-team").status_code == 200
        assert httpx.get(api + "/search-team").status_code == 404
        assert httpx.delete(api + "/search-team").status_code == 404
        assert gauges(httpx.get(running.url + "/metrics").text) == {}


def test_a_bad_budgets_file_stops_the_collector_at_start(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - {name: total, limit: 500, thresholds: [0.8, 0.5]}\n")
    running = BackgroundCollector(Settings(**{**settings.__dict__, "budgets_file": str(path)}))
    try:
        with pytest.raises(b.BudgetFileError, match=r"budgets\[0\]\.thresholds"):
            running.__enter__()
    finally:
        running.collector.close()
