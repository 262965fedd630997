"""Reconciliation: real SDK calls through llmmeter into a collector, set against the fake provider's organisation
usage and cost reports (OpenAI's Usage and Costs APIs, Anthropic's Admin API), read by the collector over HTTP."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import llmmeter
from llmmeter_collector.cli import cli
from llmmeter_collector.config import ConfigError, Settings
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.insights import provider_reports
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export

TODAY = datetime.now(timezone.utc).date().isoformat()
PROMPT = [{"role": "user", "content": "one two three four five"}]  # 15 input tokens, 20 output (fake's rule)


@pytest.fixture
def admin(fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LLMMETER_OPENAI_ADMIN_KEY", "sk-admin-test")
    monkeypatch.setenv("LLMMETER_OPENAI_ADMIN_BASE_URL", fake.url)
    monkeypatch.setenv("LLMMETER_ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-test")
    monkeypatch.setenv("LLMMETER_ANTHROPIC_ADMIN_BASE_URL", fake.url)
    yield


def _traffic(fake: FakeProvider, collector: BackgroundCollector, *, exported: bool = True) -> None:
    """Three OpenAI calls (two models, a cached prompt) and two Anthropic calls, through llmmeter."""
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces")) if exported else None
    try:
        oai = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-app", project="proj_shop")
        oai.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        stream = oai.chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
        for _ in stream:  # read to the end: the usage comes with the last chunk
            pass
        cached = {"input_tokens": 20_000, "cached_tokens": 12_000, "output_tokens": 500}
        oai.chat.completions.create(model="gpt-4o", messages=PROMPT, extra_headers={"x-fake-usage": json.dumps(cached)})
        ant = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="sk-ant-app")
        writes = {"input_tokens": 5_000, "cached_tokens": 1_000, "cache_creation_input_tokens": 2_000}
        ant.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=PROMPT,
                            extra_headers={"x-fake-usage": json.dumps(writes)})  # fmt: skip
        ant.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=PROMPT)
    finally:
        if processor is not None:
            stop_export(processor)


def _reconcile(url: str, provider: str, *extra: str) -> dict:
    result = CliRunner().invoke(cli, ["reconcile", "--provider", provider, "--from", TODAY, "--to", TODAY, "--url", url,
                                      "--json", *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_fully_instrumented_app_agrees_exactly_with_both_providers_bills(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None, admin: None
) -> None:
    _traffic(fake, collector)
    for provider, models in (("openai", ["gpt-4o", "gpt-4o-mini"]), ("anthropic", ["claude-haiku-4-5",
                                                                                 "claude-sonnet-4-5"])):  # fmt: skip
        data = _reconcile(collector.url, provider)
        assert [r["model"] for r in data["rows"]] == models
        assert Decimal(data["provider_usd"]) > 0 and data["provider_usd"] == data["ledger_usd"]
        assert Decimal(data["difference_usd"]) == 0 and data["coverage"] == "1.0000"
        for row in data["rows"]:
            assert row["findings"] == ["match"], row
            assert row["provider_input_tokens"] == row["ledger_input_tokens"]
            assert row["provider_output_tokens"] == row["ledger_output_tokens"]
            assert row["provider_cache_read_tokens"] == row["ledger_cache_read_tokens"]
        assert data["summary"].startswith(
            f"100.0 % of {provider_reports.NAMES[provider]}'s billed spend is instrumented"
        )
    metrics = httpx.get(collector.url + "/metrics").text
    assert 'llmmeter_reconcile_coverage_ratio{provider="openai"} 1.0' in metrics
    assert 'llmmeter_reconcile_drift_usd{provider="anthropic"} 0.0' in metrics
    assert 'llmmeter_reconcile_last_success_timestamp_seconds{provider="openai"}' in metrics


def test_uninstrumented_calls_show_as_the_uncovered_part_of_the_bill(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None, admin: None
) -> None:
    _traffic(fake, collector)
    # a script the instrumentation never saw: three more gpt-4o calls reach the bill, not the ledger
    processor = None
    llmmeter.uninstrument()
    try:
        raw = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-batch-job")
        usage = {"input_tokens": 100_000, "output_tokens": 1_000}
        for _ in range(3):
            raw.chat.completions.create(
                model="gpt-4o", messages=PROMPT, extra_headers={"x-fake-usage": json.dumps(usage)}
            )
    finally:
        llmmeter.instrument(configure_export=False)
        del processor
    data = _reconcile(collector.url, "openai", "--group-by", "api_key")
    gpt4o = next(r for r in data["rows"] if r["model"] == "gpt-4o")
    missing = 3 * (Decimal(100_000) * Decimal("2.50") + Decimal(1_000) * Decimal("10.00")) / 10**6
    assert gpt4o["findings"] == ["uninstrumented"]
    assert Decimal(gpt4o["provider_usd"]) - Decimal(gpt4o["ledger_usd"]) == missing
    assert Decimal(data["uninstrumented_usd"]) == pytest.approx(missing, abs=Decimal("1e-9"))
    assert Decimal(data["price_difference_usd"]) == pytest.approx(0, abs=Decimal("1e-9"))
    coverage = Decimal(data["coverage"])
    assert Decimal("0.01") < coverage < Decimal("0.1")
    assert (
        f"{coverage * 100:.1f} % of OpenAI's billed spend is instrumented; the rest is $0.78 of gpt-4o on {TODAY}"
        in (data["summary"])
    )
    # the provider's figures by API key show where the gap comes from (costs have no key breakdown)
    keys = [g for g in data["groups"] if g["model"] == "gpt-4o"]
    assert sorted(g["input_tokens"] for g in keys) == [20_000, 300_000] and all(g["usd"] is None for g in keys)
    text = CliRunner().invoke(cli, ["reconcile", "--provider", "openai", "--from", TODAY, "--to", TODAY,
                                    "--url", collector.url], env={"COLUMNS": "200"})  # fmt: skip
    assert text.exit_code == 0 and "uninstrumented" in text.output and "the rest is $0.78 of gpt-4o" in text.output


def test_a_price_the_catalog_has_wrong_shows_as_a_price_difference_with_the_same_tokens(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None, admin: None
) -> None:
    fake.bill_models_at("gpt-4o-mini", "1.1")  # the provider bills 10 % more than llmmeter's catalog says
    fake.bill_models_at("claude-haiku-4-5", "0.5")
    _traffic(fake, collector)
    data = _reconcile(collector.url, "openai", "--group-by", "project")
    mini = next(r for r in data["rows"] if r["model"] == "gpt-4o-mini")
    assert mini["findings"] == ["price"] and mini["coverage"] == "1.0000"
    assert Decimal(mini["provider_usd"]) == Decimal(mini["ledger_usd"]) * Decimal("1.1")
    assert Decimal(data["difference_usd"]) == -Decimal(mini["ledger_usd"]) / 10
    assert "llmmeter's prices differ from the bill" in data["summary"] and "gpt-4o-mini" in data["summary"]
    assert {g["group"] for g in data["groups"]} == {"proj_shop"} and all(g["usd"] for g in data["groups"])
    haiku = next(r for r in _reconcile(collector.url, "anthropic")["rows"] if r["model"] == "claude-haiku-4-5")
    assert haiku["findings"] == ["price"] and Decimal(haiku["provider_usd"]) * 2 == Decimal(haiku["ledger_usd"])
    metrics = httpx.get(collector.url + "/metrics").text
    ratio = next(
        line for line in metrics.splitlines() if line.startswith('llmmeter_reconcile_drift_ratio{provider="openai"}')
    )
    assert float(ratio.split()[-1]) > 0


def test_every_page_of_a_long_range_is_read(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None, admin: None
) -> None:
    _traffic(fake, collector)
    start = (datetime.now(timezone.utc) - timedelta(days=45)).date().isoformat()
    answer = httpx.get(
        collector.url + "/api/v1/reconcile", params={"provider": "anthropic", "from": start, "to": TODAY}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["provider_usd"] == answer.json()["ledger_usd"] != "0"
    pages = [r for r in fake.requests if r.path == "/v1/organizations/usage_report/messages"]
    assert len(pages) == 2 and pages[1].query["page"]  # 46 days in pages of 31


def test_bad_requests_and_unreadable_reports_are_clear_errors(
    fake: FakeProvider, collector: BackgroundCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = collector.url + "/api/v1/reconcile"
    monkeypatch.delenv("LLMMETER_OPENAI_ADMIN_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    no_key = httpx.get(url, params={"provider": "openai"})
    assert no_key.status_code == 400 and "LLMMETER_OPENAI_ADMIN_KEY" in no_key.json()["error"]
    for params, field in (
        ({"provider": "gemini"}, "provider"),
        ({"provider": "openai", "from": "2026-11-05", "to": "2026-11-01"}, "to"),
        ({"provider": "openai", "from": "yesterday"}, "from"),
        ({"provider": "openai", "to": "2999-01-01"}, "to"),
        ({"provider": "openai", "group_by": "user"}, "group_by"),
    ):
        answer = httpx.get(url, params=params)
        assert answer.status_code == 400 and answer.json()["field"] == field, (params, answer.text)
    monkeypatch.setenv("LLMMETER_OPENAI_ADMIN_KEY", "sk-not-an-admin-key")
    monkeypatch.setenv("LLMMETER_OPENAI_ADMIN_BASE_URL", fake.url)
    refused = httpx.get(url, params={"provider": "openai"})
    assert refused.status_code == 502 and "OpenAI answered 401" in refused.json()["error"]
    assert "admin key" in refused.json()["error"]
    cli_answer = CliRunner().invoke(cli, ["reconcile", "--provider", "openai", "--url", collector.url])
    assert (
        cli_answer.exit_code == 1
        and "OpenAI answered 401" in cli_answer.output
        and "Traceback" not in cli_answer.output
    )
    bad_day = CliRunner().invoke(cli, ["reconcile", "--provider", "openai", "--from", "11/01", "--url", collector.url])
    assert bad_day.exit_code == 2 and "must be a date" in bad_day.output
    assert (
        'llmmeter_reconcile_failures_total{provider="openai"} 3.0'
    )  # no key, and twice refused in httpx.get(collector.url + "/metrics").text


def test_the_scheduled_reconcile_sets_the_gauges_for_every_provider_with_a_key(
    fake: FakeProvider, settings: Settings, admin: None
) -> None:
    scheduled = dataclasses.replace(settings, reconcile_interval_seconds=3600, reconcile_days=2)
    with BackgroundCollector(scheduled, grpc=False) as running:
        reconciler = running.collector.reconciler
        assert reconciler is not None
        for _ in range(200):
            if reconciler.runs:
                break
            time.sleep(0.02)
        metrics = httpx.get(running.url + "/metrics").text
    for provider in ("openai", "anthropic"):
        assert f'llmmeter_reconcile_billed_usd{{provider="{provider}"}} 0.0' in metrics
        assert f'llmmeter_reconcile_last_success_timestamp_seconds{{provider="{provider}"}}' in metrics
    days = {r.query.get("start_time") for r in fake.requests if r.path == "/v1/organization/costs"}
    first = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    assert days == {str(int(first.timestamp()))}  # the last 2 complete UTC days
    with pytest.raises(ConfigError, match="LLMMETER_RECONCILE_DAYS"):
        Settings.from_env({"LLMMETER_RECONCILE_DAYS": "0"})
