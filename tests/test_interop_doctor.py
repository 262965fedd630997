"""Nothing GenAI-like vanishes silently: each peer's real span, stripped of what makes it a call, is counted by
its instrumentation scope in ``llmmeter_unrecognized_genai_spans_total`` and listed by ``llmmeter doctor``; a call
priced on incomplete usage shows with its missing classes and spend."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.service import BackgroundCollector

from .interop.fixtures import Fixture, edited, load, replay

PROVIDER_KEYS = frozenset({"gen_ai.provider.name", "gen_ai.system", "llm.system", "llm.provider"})
# One real capture per dialect whose spans name their provider (Langfuse's do not: see the unpriced test).
PER_DIALECT = [
    f
    for f in load(duplicates=False)
    if (f.case == "openai-plain" and f.peer != "langfuse")
    or f.id in ("otel-google-genai/gemini-plain",)
    or f.id == "anthropic-sdk/anthropic-plain"
]


def _doctor(url: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["doctor", "--url", url, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def _llm_scope(fixture: Fixture) -> str:
    """The scope of the span that carries the usage (not an HTTP client span beside it)."""
    return next(scope for scope, span in fixture.spans() if any("token" in a["key"] for a in span["attributes"]))


@pytest.mark.parametrize("fixture", PER_DIALECT, ids=[f.peer for f in PER_DIALECT])
def test_a_span_without_a_provider_is_counted_by_scope_and_listed(
    collector: BackgroundCollector, fixture: Fixture
) -> None:
    stripped = edited(fixture, lambda attrs: [a for a in attrs if a["key"] not in PROVIDER_KEYS])
    replay(collector.url, stripped)
    scope = _llm_scope(fixture)
    metrics = httpx.get(collector.url + "/metrics").text
    assert f'llmmeter_unrecognized_genai_spans_total{{reason="no_provider",scope="{scope}"}} 1.0' in metrics
    rows = {r["scope"]: r for r in _doctor(collector.url)["scopes"]}
    assert rows[scope]["not_counted"] == {"no_provider": 1} and rows[scope]["calls"] == 0
    text = CliRunner().invoke(cli, ["doctor", "--url", collector.url])
    assert "1 GenAI-looking span(s) not counted" in text.output and "no provider attribute" in text.output


def test_a_dialect_nobody_knows_is_counted_as_unknown_attributes(collector: BackgroundCollector) -> None:
    source = next(f for f in load(duplicates=False) if f.id == "openinference/openai-plain")
    renamed = edited(source, lambda attrs: [{**a, "key": "acme." + a["key"].replace("llm.", "")} for a in attrs])
    replay(collector.url, renamed)
    metrics = httpx.get(collector.url + "/metrics").text
    scope = _llm_scope(source)
    assert f'llmmeter_unrecognized_genai_spans_total{{reason="unknown_attributes",scope="{scope}"}} 1.0' in metrics
    assert {r["scope"]: r["not_counted"] for r in _doctor(collector.url)["scopes"]}[scope] == {"unknown_attributes": 1}


def test_a_counted_peer_shows_its_calls_and_nothing_unrecognised(collector: BackgroundCollector) -> None:
    for fixture in load(duplicates=False):
        if fixture.case.endswith("-plain"):
            replay(collector.url, fixture)
    report = _doctor(collector.url)
    assert all(not row["not_counted"] for row in report["scopes"]), report["scopes"]
    calls = {row["scope"]: row["calls"] for row in report["scopes"]}
    assert calls["com.anthropic.sdk.python"] == 1 and calls["langfuse-sdk"] == 1
    assert "llmmeter_unrecognized_genai_spans_total{" not in httpx.get(collector.url + "/metrics").text


def test_langfuse_generation_of_an_unknown_model_is_listed_unpriced(collector: BackgroundCollector) -> None:
    source = next(f for f in load(duplicates=False) if f.id == "langfuse/openai-plain")

    def rename(attrs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = {"stringValue": "acme-private-7b"}
        return [{**a, "value": model} if a["key"] == "langfuse.observation.model.name" else a for a in attrs]

    replay(collector.url, edited(source, rename))
    unpriced = _doctor(collector.url)["unpriced_models"]
    assert [(r["provider"], r["model"], r["calls"]) for r in unpriced] == [("unknown", "acme-private-7b", 1)]
    assert "acme-private-7b" in CliRunner().invoke(cli, ["doctor", "--url", collector.url]).output


def test_spend_on_incomplete_usage_is_shown_with_the_missing_classes(collector: BackgroundCollector) -> None:
    for fixture in load(duplicates=False):
        if fixture.peer in ("otel-openai-v2", "anthropic-sdk"):
            replay(collector.url, fixture)
    incomplete = _doctor(collector.url)["incomplete_usage"]
    assert incomplete["calls"] == 2  # openai-v2's plain and streamed calls; anthropic's own tracing is complete
    (row,) = incomplete["by_model"]
    assert (row["provider"], row["model"], row["missing"], row["calls"]) == (
        "openai",
        "o4-mini",
        "cache_read,reasoning",
        2,
    )
    assert Decimal(row["cost_usd"]) == Decimal(incomplete["cost_usd"]) == 2 * Decimal("0.00264")
    status = CliRunner().invoke(cli, ["status", "--url", collector.url])
    assert status.exit_code == 0, status.output
    assert "$0.005280 on incomplete usage (2 calls)" in status.output
