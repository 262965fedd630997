"""Savings recommendations, anomalies and the forecast endpoint against a real collector and Postgres.

Each recommendation fires on calls built to trigger it, stays silent on calls built not to, and its dollar
figure equals the one computed here by hand from the providers' list prices. One call 40 days old (outside
the 30-day window) makes the observed window exactly 30 days, so monthly savings = window savings.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.insights import anomalies
from llmmeter_collector.insights import recommendations as insights
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

M = Decimal("0.000001")  # USD per token = list price per million tokens x M
_ids = itertools.count(1)


def call(at: datetime, provider: str, model: str, inp: int, out: int, **kw: Any) -> LlmCall:
    n = next(_ids)
    start = int(at.timestamp() * 1e9)
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=kw.pop("cache_read", 0))
    kw.setdefault("user_id", "u1")  # interactive unless a test says otherwise
    kw.setdefault("streaming", True)
    return LlmCall(
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
        start_ns=start,
        end_ns=start + 10**9,
        provider=provider,
        operation=kw.pop("operation", "chat"),
        request_model=model,
        project=kw.pop("project", "p"),
        feature=kw.pop("feature", "f"),
        usage=usage,
        **kw,
    )


def write(collector: BackgroundCollector, calls: list[LlmCall]) -> None:
    core = collector.collector
    for c in calls:
        c.cost = core.catalog.price(c)
    ledger = Ledger(core.dsn, core.schema)
    try:
        ledger.write(calls)
    finally:
        ledger.close()


def base(now: datetime) -> list[LlmCall]:
    """A call before the window (fixes the observed window at 30 days) and padding that triggers nothing."""
    calls = [call(now - timedelta(days=40), "openai", "gpt-4o-mini", 100, 10)]
    calls += [call(now - timedelta(hours=3), "openai", "gpt-4o-mini", 100, 10, feature="pad") for _ in range(10)]
    return calls


def triggering(now: datetime) -> list[LlmCall]:
    t = now - timedelta(hours=2)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    calls = base(now)
    # model downgrade: 20 short, simple gpt-4o calls
    calls += [call(t, "openai", "gpt-4o", 1000, 200, feature="chat") for _ in range(20)]
    # prompt caching: one 3000-token prompt sent 10 times in one hour to Claude, no cache reads
    calls += [
        call(hour + timedelta(minutes=i), "anthropic", "claude-sonnet-4-5", 3000, 400, prompt_fingerprint="fp1")
        for i in range(10)
    ]
    # batch API: an offline job (no user, never streamed)
    calls += [
        call(t, "openai", "gpt-4o-mini", 5000, 1000, feature="nightly", user_id="", streaming=False) for _ in range(20)
    ]
    # error waste: 6 billed timeouts
    calls += [
        call(t, "openai", "gpt-4o-mini", 10_000, 5000, feature="gen", status="error", error_type="timeout")
        for _ in range(6)
    ]
    # prompt bloat: 8000 tokens in for 100 out
    calls += [call(t, "openai", "gpt-4o-mini", 8000, 100, feature="rag") for _ in range(10)]
    # embeddings one input at a time, 20 in one minute
    calls += [
        call(hour + timedelta(seconds=i), "gcp.gemini", "gemini-embedding-001", 8000, 0, feature="index",
             operation="embeddings", streaming=False)
        for i in range(20)
    ]  # fmt: skip
    # a model with no price
    calls += [call(t, "openai", "acme-7b", 100, 10, feature="local")]
    return calls


def not_triggering(now: datetime) -> list[LlmCall]:
    """The same shapes, each just on the other side of its rule."""
    t = now - timedelta(hours=2)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    calls = base(now)
    calls += [call(t, "openai", "gpt-4o", 5000, 800, feature="chat") for _ in range(20)]  # not short
    calls += [call(t, "openai", "gpt-4o-mini", 1000, 200, feature="chat2") for _ in range(20)]  # no cheaper sibling
    calls += [  # cache already read
        call(hour + timedelta(minutes=i), "anthropic", "claude-sonnet-4-5", 3000, 400, prompt_fingerprint="fp1",
             cache_read=2000 if i else 0)
        for i in range(10)
    ]  # fmt: skip
    calls += [  # offline but streamed once: interactive
        call(t, "openai", "gpt-4o-mini", 5000, 1000, feature="nightly", user_id="", streaming=(i == 0))
        for i in range(20)
    ]
    calls += [  # only 4 billed errors
        call(t, "openai", "gpt-4o-mini", 10_000, 5000, feature="gen", status="error", error_type="timeout")
        for _ in range(4)
    ]
    calls += [call(t, "openai", "gpt-4o-mini", 8000, 500, feature="rag") for _ in range(10)]  # ratio 16 < 20
    calls += [  # one embedding every 10 minutes
        call(now - timedelta(minutes=10 * i + 5), "gcp.gemini", "gemini-embedding-001", 8000, 0, feature="index",
             operation="embeddings", streaming=False)
        for i in range(20)
    ]  # fmt: skip
    return calls


# Hand-computed from list prices (USD per million tokens): gpt-4o 2.50 in / 10.00 out; gpt-4o-mini 0.15 / 0.60
# (batch: half); claude-sonnet-4-5 3.00 in, 0.30 cache read, 3.75 cache write; gemini-embedding-001 0.15 (batch 0.075).
EXPECTED = {
    "model_downgrade": 20 * (1000 * (Decimal("2.50") - Decimal("0.15")) + 200 * (Decimal("10") - Decimal("0.60"))) * M,
    # nine reads of the 3000-token prefix instead of full input, minus one cache write premium (one hour)
    "prompt_caching": (9 * 3000 * (Decimal("3.00") - Decimal("0.30")) - 3000 * (Decimal("3.75") - Decimal("3.00"))) * M,
    "batch_api": 20 * (5000 * Decimal("0.15") + 1000 * Decimal("0.60")) * M / 2,
    "error_waste": 6 * (10_000 * Decimal("0.15") + 5000 * Decimal("0.60")) * M,
    "prompt_bloat": 10 * 8000 * Decimal("0.15") * M * (1 - Decimal(10 * 100) / 8000),
    "embedding_batching": 20 * 8000 * (Decimal("0.15") - Decimal("0.075")) * M,
}  # fmt: skip


def test_every_recommendation_fires_with_the_hand_computed_dollars(collector: BackgroundCollector) -> None:
    now = datetime.now(timezone.utc)
    write(collector, triggering(now))
    data = httpx.get(collector.url + "/api/v1/recommendations").json()
    by_kind = {r["kind"]: r for r in data["recommendations"]}
    assert set(by_kind) == {*EXPECTED, "unpriced_models"}
    for kind, expected in EXPECTED.items():
        assert Decimal(by_kind[kind]["monthly_savings_usd"]) == expected.quantize(M), kind
        assert by_kind[kind]["evidence"], kind
    assert by_kind["model_downgrade"]["evidence"]["suggested_model"] == "gpt-4o-mini"
    assert by_kind["model_downgrade"]["evidence"]["simple_calls"] == 20
    assert by_kind["prompt_caching"]["evidence"]["top_prompts"][0] == {
        "fingerprint": "fp1",
        "calls": 10,
        "prefix_tokens": 3000,
    }
    assert by_kind["unpriced_models"]["monthly_savings_usd"] is None
    assert by_kind["unpriced_models"]["evidence"]["model"] == "acme-7b"
    # ranked by monthly savings, the unpriced model (no dollar figure) last
    ranked = [r["kind"] for r in data["recommendations"]]
    assert ranked == [*sorted(EXPECTED, key=EXPECTED.__getitem__, reverse=True), "unpriced_models"]


def test_no_recommendation_fires_on_data_just_outside_every_rule(collector: BackgroundCollector) -> None:
    now = datetime.now(timezone.utc)
    write(collector, not_triggering(now))
    data = insights.recommend(collector.collector.pool, collector.collector.catalog, now=now)
    assert data["calls"] > 100
    assert data["recommendations"] == []
    assert data["message"] == "no savings found: nothing to change"


def test_fewer_than_ten_calls_say_so(collector: BackgroundCollector) -> None:
    now = datetime.now(timezone.utc)
    write(collector, [call(now - timedelta(hours=1), "openai", "gpt-4o", 1000, 100) for _ in range(9)])
    data = httpx.get(collector.url + "/api/v1/recommendations").json()
    assert data["recommendations"] == []
    assert data["message"] == "not enough data: 9 calls in the last 30 days; recommendations need at least 10"
    result = CliRunner().invoke(cli, ["optimize", "--url", collector.url])
    assert result.exit_code == 0
    assert "not enough data: 9 calls" in result.output


def test_optimize_shows_the_top_savings_in_dollars(collector: BackgroundCollector) -> None:
    write(collector, triggering(datetime.now(timezone.utc)))
    result = CliRunner().invoke(cli, ["optimize", "--url", collector.url, "--top", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    top = EXPECTED["model_downgrade"].quantize(Decimal("0.01"))
    assert f"${top}" in result.output
    assert "Route short, simple gpt-4o calls to gpt-4o-mini" in result.output
    assert "4 more: llmmeter optimize --top 7" in result.output


def test_sibling_matching_keeps_dated_versions_and_not_other_models() -> None:
    assert insights.sibling_of("gpt-4o-2024-08-06") == "gpt-4o-mini"
    assert insights.sibling_of("gpt-4o-mini") is None
    assert insights.sibling_of("claude-opus-4-1-20250805") == "claude-sonnet-4-5"
    assert insights.sibling_of("models/gemini-2.5-pro") == "gemini-2.5-flash"


def _hourly(now: datetime, hours: int, spike_at: int | None) -> list[LlmCall]:
    """One gpt-4o call of $0.10 every hour (40,000 input tokens), and a $50 hour ``spike_at`` hours ago."""
    top = now.replace(minute=0, second=0, microsecond=0)
    calls = [call(top - timedelta(hours=h, minutes=-30), "openai", "gpt-4o", 40_000, 0) for h in range(1, hours)]
    if spike_at is not None:
        calls += [
            call(top - timedelta(hours=spike_at, minutes=-40), "openai", "gpt-4o", 2_000_000, 0) for _ in range(10)
        ]
    return calls


def test_an_hour_far_above_its_baseline_is_an_anomaly(collector: BackgroundCollector) -> None:
    now = datetime.now(timezone.utc)
    write(collector, _hourly(now, 16 * 24, spike_at=3))
    data = httpx.get(collector.url + "/api/v1/anomalies", params={"granularity": "hour"}).json()
    assert len(data["anomalies"]) == 1
    spike = data["anomalies"][0]
    assert spike["project"] == "p" and spike["feature"] == "f" and spike["direction"] == "spike"
    assert Decimal(spike["spend_usd"]) == Decimal("50.1")  # ten $5 calls and the usual $0.10
    assert Decimal(spike["baseline_median_usd"]) == Decimal("0.1")
    assert spike["bucket"] == (now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)).isoformat()
    days = httpx.get(collector.url + "/api/v1/anomalies", params={"granularity": "day"}).json()["anomalies"]
    assert [a["direction"] for a in days] == ["spike"]


def test_steady_spend_has_no_anomalies(collector: BackgroundCollector) -> None:
    now = datetime.now(timezone.utc)
    write(collector, _hourly(now, 16 * 24, spike_at=None))
    data = anomalies.detect(collector.collector.pool, now=now)
    assert data["series_checked"] == 2  # (p, f) hourly and daily
    assert data["anomalies"] == []
    result = CliRunner().invoke(cli, ["anomalies", "--url", collector.url])
    assert result.exit_code == 0 and "No anomalies in 2 series" in result.output


def test_forecast_starts_from_the_exact_spend_of_the_month(collector: BackgroundCollector) -> None:
    now = datetime.now(timezone.utc)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    calls = [call(now - timedelta(hours=h), "openai", "gpt-4o", 40_000, 0) for h in range(1, 24 * 40, 5)]
    write(collector, calls)
    spent = sum((c.cost.total for c in calls if c.cost and c.start_ns >= month_start.timestamp() * 1e9), Decimal(0))
    data = httpx.get(collector.url + "/api/v1/forecast").json()
    assert Decimal(data["spent_usd"]) == spent
    assert Decimal(data["expected_usd"]) >= spent
    assert data["method"] in ("run_rate", "trend")
    if data["lower_usd"] is not None:  # needs two complete days of the month
        assert Decimal(data["lower_usd"]) <= Decimal(data["expected_usd"]) <= Decimal(data["upper_usd"])
    result = CliRunner().invoke(cli, ["forecast", "--url", collector.url, "--json"])
    assert result.exit_code == 0 and '"expected_usd"' in result.output
    bad = httpx.get(collector.url + "/api/v1/forecast", params={"level": "120"})
    assert bad.status_code == 400 and bad.json()["field"] == "level"


@pytest.mark.parametrize("model", ["gpt-4-turbo"])
def test_prompt_caching_needs_cheaper_cache_reads(collector: BackgroundCollector, model: str) -> None:
    now = datetime.now(timezone.utc)
    calls = base(now) + [
        call(now - timedelta(hours=1), "openai", model, 3000, 400, prompt_fingerprint="fp") for _ in range(10)
    ]
    write(collector, calls)
    kinds = {
        r["kind"] for r in insights.recommend(collector.collector.pool, collector.collector.catalog)["recommendations"]
    }
    assert "prompt_caching" not in kinds
