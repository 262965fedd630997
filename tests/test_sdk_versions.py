"""The SDK versions sending data: kept per instrumentation scope, listed by ``llmmeter status`` and
``/api/v1/sdk-versions``, counted on /metrics, and flagged when the collector no longer supports them."""

from __future__ import annotations

import json
from importlib.metadata import version

import httpx
import openai
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from llmmeter_collector.cli import cli
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.insights import sdk_versions
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .test_receiver import CHAT, PROTOBUF, export_request


def _send(url: str, scope: str, scope_version: str, first_span: int) -> None:
    request = export_request(CHAT, CHAT)
    scoped = request.resource_spans[0].scope_spans[0]
    scoped.scope.name, scoped.scope.version = scope, scope_version
    for i, span in enumerate(scoped.spans):
        span.span_id = (first_span + i).to_bytes(8, "big")
    assert httpx.post(url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF).status_code == 200


def test_the_versions_sending_data_are_listed_and_old_ones_flagged(
    fake: FakeProvider, collector: BackgroundCollector, instrumented: None
) -> None:
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
    try:
        openai.OpenAI(base_url=fake.openai_base_url, api_key="x").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
    finally:
        stop_export(processor)
    _send(collector.url, "llmmeter", "0.0.9", 100)
    _send(collector.url, "opentelemetry.instrumentation.openai_v2", "2.4b0", 200)
    found = {(v["scope"], v["version"]): v for v in httpx.get(collector.url + "/api/v1/sdk-versions").json()[
        "sdk_versions"]}  # fmt: skip
    current = version("llmmeter")
    assert found[("llmmeter", current)]["calls"] == 1 and found[("llmmeter", current)]["flags"] == []
    assert found[("llmmeter", "0.0.9")]["calls"] == 2
    assert found[("llmmeter", "0.0.9")]["flags"] == ["older than this collector supports (llmmeter 0.1.0): upgrade it"]
    assert found[("opentelemetry.instrumentation.openai_v2", "2.4b0")]["flags"] == []  # not ours to judge
    status = CliRunner().invoke(cli, ["status", "--url", collector.url], env={"COLUMNS": "200"})
    assert status.exit_code == 0 and "SDK llmmeter 0.0.9: 2 calls" in status.output and "upgrade it" in status.output
    as_json = json.loads(CliRunner().invoke(cli, ["status", "--url", collector.url, "--json"]).output)
    assert {v["version"] for v in as_json["sdk_versions"]} == {current, "0.0.9", "2.4b0"}
    metrics = httpx.get(collector.url + "/metrics").text
    assert 'llmmeter_collector_sdk_calls_total{scope="llmmeter",version="0.0.9"} 2.0' in metrics


def test_a_pricing_change_flags_the_versions_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_versions, "PRICING_CHANGES", [("llmmeter", "0.2.0", "cache writes reported per TTL")])
    assert sdk_versions.flags("llmmeter", "0.1.5") == [
        "pricing behaviour changed in llmmeter 0.2.0: cache writes reported per TTL"
    ]
    assert sdk_versions.flags("llmmeter", "0.2.0") == []
    assert sdk_versions.flags("llmmeter", "dev-build")[0].startswith("version 'dev-build' is not a release version")
    assert sdk_versions.flags("someone.else", "0.0.1") == []


def test_a_scope_version_that_is_not_one_is_dropped_and_the_call_kept(collector: BackgroundCollector) -> None:
    _send(collector.url, "llmmeter", "\x1b[31m" + "9" * 200, 300)
    found = httpx.get(collector.url + "/api/v1/sdk-versions").json()["sdk_versions"]
    assert [(v["scope"], v["version"], v["calls"]) for v in found] == [("llmmeter", "", 2)]
