"""The ``llmmeter`` CLI against a real collector: init and config, status with budgets and forecast, calls,
export, and exit codes (0 ok, 1 collector error, 2 usage)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import stat
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import time_machine
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.cli.status import budget_colour
from llmmeter_collector.devtools import datagen
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.service import BackgroundCollector

from .conftest import CALENDAR_EDGES


@pytest.fixture(autouse=True)
def _config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "llmmeter" / "config.toml"
    monkeypatch.setenv("LLMMETER_CONFIG", str(path))
    monkeypatch.delenv("LLMMETER_URL", raising=False)
    monkeypatch.delenv("LLMMETER_API_KEY", raising=False)
    return path


def _seed(collector: BackgroundCollector, count: int = 600) -> list:  # type: ignore[type-arg]
    core = collector.collector
    calls = list(datagen.calls(count, now=datetime.now(timezone.utc), days=20))
    for c in calls:
        c.cost = core.catalog.price(c)
    ledger = Ledger(core.dsn, core.schema)
    ledger.write(calls)
    ledger.close()
    return calls


def test_init_checks_the_collector_and_writes_a_private_config(
    collector: BackgroundCollector, _config_file: Path
) -> None:
    key = collector.collector.keys.create("cli", "viewer")
    result = CliRunner().invoke(cli, ["init", "--url", collector.url, "--api-key", key])
    assert result.exit_code == 0, result.output
    assert "import llmmeter\n    llmmeter.instrument()" in result.output
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT={collector.url}" in result.output
    assert stat.S_IMODE(_config_file.stat().st_mode) == 0o600
    # the saved URL and key are used without flags
    status = CliRunner().invoke(cli, ["status", "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(CliRunner().invoke(cli, ["config", "--json"]).output)
    assert shown["url"] == collector.url and shown["url_source"] == "config file"
    assert shown["api_key_source"] == "config file" and shown["api_key"] != key  # masked
    assert shown["config_file_mode"] == "0o600"


def test_init_asks_when_not_given_and_refuses_a_bad_key(collector: BackgroundCollector, _config_file: Path) -> None:
    collector.collector.keys.create("someone", "admin")
    result = CliRunner().invoke(cli, ["init"], input=f"{collector.url}\nllmm_wrong\n")
    assert result.exit_code == 1
    assert "refused the API key" in result.output
    assert not _config_file.exists()  # nothing saved when the check fails


def test_init_against_nothing_fails_with_exit_code_1(_config_file: Path) -> None:
    result = CliRunner().invoke(cli, ["init", "--url", "http://127.0.0.1:9", "--api-key", ""])
    assert result.exit_code == 1 and "cannot reach the collector" in result.output
    saved = CliRunner().invoke(cli, ["init", "--url", "http://127.0.0.1:9", "--api-key", "", "--no-check"])
    assert saved.exit_code == 0 and _config_file.exists()


def test_url_and_key_precedence_is_flag_then_env_then_file(_config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["init", "--url", "http://file:1", "--api-key", "llmm_file", "--no-check"])
    data = json.loads(runner.invoke(cli, ["config", "--json", "--show-key"]).output)
    assert (data["url"], data["api_key"]) == ("http://file:1", "llmm_file")
    monkeypatch.setenv("LLMMETER_URL", "http://env:2")
    monkeypatch.setenv("LLMMETER_API_KEY", "llmm_env")
    data = json.loads(runner.invoke(cli, ["config", "--json", "--show-key"]).output)
    assert (data["url"], data["api_key"], data["url_source"]) == ("http://env:2", "llmm_env", "env LLMMETER_URL")
    # a flag beats both: the error names the URL from the flag
    result = runner.invoke(cli, ["status", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "http://127.0.0.1:9" in result.output


def _seed_this_month(collector: BackgroundCollector, count: int = 40) -> list:  # type: ignore[type-arg]
    """``count`` priced calls spread over the part of this month that has passed, however little: the month's
    spend is never zero, even in its first minutes."""
    core = collector.collector
    now = datetime.now(timezone.utc)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    step = (now - month_start) / (count + 1)
    calls = []
    for i, call in enumerate(datagen.calls(count, now=now, days=1, seed=11), start=1):
        start = month_start + step * i
        call = dataclasses.replace(call, start_ns=int(start.timestamp() * 1e9), end_ns=int(start.timestamp() * 1e9))
        call.cost = core.catalog.price(call)
        calls.append(call)
    ledger = Ledger(core.dsn, core.schema)
    ledger.write(calls)
    ledger.close()
    return calls


@pytest.mark.parametrize("clock", CALENDAR_EDGES)
def test_status_shows_budget_bars_and_the_month_end_forecast(collector: BackgroundCollector, clock: str) -> None:
    with time_machine.travel(datetime.fromisoformat(clock), tick=True):
        calls = _seed(collector) + _seed_this_month(collector)
        month_start = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        month = sum((c.cost.total for c in calls if c.cost and c.start_ns >= month_start.timestamp() * 1e9), Decimal(0))
        assert month > Decimal("0.05")  # a limit of dollars and cents that the rounding barely moves
        limit = (month / Decimal("0.9")).quantize(Decimal("0.01"))  # about 90 % used: a warning
        created = httpx.post(collector.url + "/api/v1/budgets", json={"name": "monthly-total", "limit_usd": str(limit)})
        assert created.status_code in (200, 201), created.text
        result = CliRunner().invoke(cli, ["status", "--url", collector.url], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "monthly-total" in result.output and "█" in result.output
        assert f"{month / limit * 100:5.1f}%" in result.output  # the month's spend over the limit, in percent
        assert "Month-end forecast:" in result.output
        data = json.loads(CliRunner().invoke(cli, ["status", "--url", collector.url, "--json"]).output)
        assert [b["name"] for b in data["budgets"]] == ["monthly-total"]
        assert Decimal(data["budgets"][0]["spent_usd"]) == month
        assert data["budgets"][0]["period_start"][:10] == month_start.date().isoformat()
        assert Decimal(data["forecast"]["spent_usd"]) == month
        assert Decimal(data["forecast"]["expected_usd"]) >= month


def test_budget_colours_change_at_80_and_100_percent() -> None:
    assert budget_colour(Decimal("0.79"), [0.8, 1.0]) == "green"
    assert budget_colour(Decimal("0.80"), [0.8, 1.0]) == "yellow"
    assert budget_colour(Decimal("0.99"), [0.8, 1.0]) == "yellow"
    assert budget_colour(Decimal("1.00"), [0.8, 1.0]) == "red"
    assert budget_colour(Decimal("0.6"), [0.5, 1.0]) == "yellow"  # a budget's own first threshold


def test_calls_lists_the_most_expensive_first(collector: BackgroundCollector) -> None:
    calls = _seed(collector)
    top = max((c for c in calls if c.cost), key=lambda c: c.cost.total)  # type: ignore[union-attr]
    result = CliRunner().invoke(cli, ["calls", "--url", collector.url, "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["calls"][0]["span_id"] == top.span_id and data["next_cursor"]
    table = CliRunner().invoke(cli, ["calls", "--url", collector.url, "--limit", "3"], env={"COLUMNS": "200"})
    assert "Most expensive calls" in table.output and top.model in table.output
    bad = CliRunner().invoke(cli, ["calls", "--url", collector.url, "--since", "last tuesday"])
    assert bad.exit_code == 2  # usage error, caught before any request


def test_export_writes_a_file_with_a_progress_bar(collector: BackgroundCollector, tmp_path: Path) -> None:
    calls = _seed(collector)
    since = datetime.now(timezone.utc) - timedelta(days=5)
    expected = [c for c in calls if c.start_ns >= since.timestamp() * 1e9 and c.project == "shop"]
    out = tmp_path / "calls.csv"
    args = ["export", "--url", collector.url, "--project", "shop", "--since", since.strftime("%Y-%m-%dT%H:%M:%S")]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "--progress"])
    assert result.exit_code == 0, result.output
    assert f"exported {len(expected):,} calls" in result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["span_id"] for r in rows} == {c.span_id for c in expected}
    jsonl = CliRunner().invoke(cli, ["export", "--url", collector.url, "--format", "jsonl", "--status", "error"])
    assert jsonl.exit_code == 0
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(records) == sum(1 for c in calls if c.status == "error")


def test_every_read_command_speaks_json(collector: BackgroundCollector) -> None:
    _seed(collector, 100)
    for command in (["status"], ["optimize"], ["forecast"], ["anomalies"], ["calls"], ["config"]):
        result = CliRunner().invoke(
            cli, [*command, "--json"] + (["--url", collector.url] if command != ["config"] else [])
        )
        assert result.exit_code == 0, (command, result.output)
        assert isinstance(json.loads(result.output), dict), command


def test_a_collector_error_is_exit_code_1_with_its_message(collector: BackgroundCollector) -> None:
    result = CliRunner().invoke(cli, ["anomalies", "--url", collector.url, "--min-usd", "lots"])
    assert result.exit_code == 1
    assert "collector answered 400: min_usd: must be a decimal number" in result.output
