"""Prices wired into the collector: overrides file, reload keeping the last good set, lookup and unpriced
over REST and the ``llmmeter prices`` command."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF, export_request

PRIVATE = {**CHAT, "gen_ai.request.model": "acme-private-7b"}
OVERRIDE_V1 = "version: 1\nmodels:\n  - model: acme-private-7b\n    input_per_mtok: 1\n    output_per_mtok: 2\n"
OVERRIDE_V2 = "version: 1\nmodels:\n  - model: acme-private-7b\n    input_per_mtok: 3\n    output_per_mtok: 4\n"


def test_prices_check_validates_a_file_with_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(OVERRIDE_V1)
    ok = CliRunner().invoke(cli, ["prices", "check", str(good)])
    assert ok.exit_code == 0 and "OK" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodels:\n  - model: x\n    input_per_mtok: -1\n    output_per_mtok: 2\n")
    result = CliRunner().invoke(cli, ["prices", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: models[0].input_per_mtok" in result.output
    missing = CliRunner().invoke(cli, ["prices", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_overrides_price_calls_and_a_reload_keeps_the_last_good_prices(settings: Settings, tmp_path: Path) -> None:
    overrides = tmp_path / "prices.yaml"
    overrides.write_text(OVERRIDE_V1)
    with BackgroundCollector(Settings(**{**settings.__dict__, "prices_file": str(overrides)})) as running:
        url = running.url
        assert httpx.post(url + "/v1/traces", content=export_request(PRIVATE).SerializeToString(), headers=PROTOBUF)
        spend = Decimal(httpx.get(url + "/api/v1/summary").json()["spend"]["all"])
        assert spend == Decimal(1000 * 1 + 100 * 2) / 10**6

        overrides.write_text("version: 1\nmodels:\n  - model: acme-private-7b\n    input_per_mtok: oops\n")
        refused = httpx.post(url + "/api/v1/prices/reload")
        assert refused.status_code == 422
        assert "models[0].input_per_mtok" in " ".join(refused.json()["problems"])
        found = json.loads(
            CliRunner().invoke(cli, ["prices", "lookup", "acme-private-7b", "--url", url, "--json"]).output
        )
        assert found["usd_per_million_tokens"]["input"] == "1" and found["source"] == "override"

        overrides.write_text(OVERRIDE_V2)
        result = CliRunner().invoke(cli, ["prices", "reload", "--url", url])
        assert result.exit_code == 0, result.output
        later = export_request(PRIVATE, start_ns=None)
        later.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x00" * 7 + b"\x09"
        assert httpx.post(url + "/v1/traces", content=later.SerializeToString(), headers=PROTOBUF).status_code == 200
        spend = Decimal(httpx.get(url + "/api/v1/summary").json()["spend"]["all"])
        assert spend == Decimal(1200) / 10**6 + Decimal(1000 * 3 + 100 * 4) / 10**6
        metrics = httpx.get(url + "/metrics").text
        assert 'llmmeter_collector_price_reloads_total{result="error"} 1.0' in metrics
        assert 'llmmeter_collector_price_reloads_total{result="ok"} 1.0' in metrics


def test_lookup_and_unpriced_over_the_rest_api(collector: BackgroundCollector) -> None:
    url = collector.url
    body = export_request(PRIVATE, CHAT).SerializeToString()
    assert httpx.post(url + "/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    table = CliRunner().invoke(cli, ["prices", "lookup", "gpt-4o-mini", "--provider", "openai", "--url", url])
    assert table.exit_code == 0, table.output
    assert "0.15" in table.output and "0.6" in table.output  # $0.15 / $0.60 per 1M (openai.com/api/pricing)
    batch = CliRunner().invoke(cli, ["prices", "lookup", "gpt-4o-mini", "--batch", "--url", url, "--json"])
    assert Decimal(json.loads(batch.output)["usd_per_million_tokens"]["input"]) == Decimal("0.075")
    none = CliRunner().invoke(cli, ["prices", "lookup", "acme-private-7b", "--url", url])
    assert none.exit_code == 1 and "would be stored unpriced" in none.output
    listed = CliRunner().invoke(cli, ["prices", "unpriced", "--url", url, "--json"])
    rows = json.loads(listed.output)
    assert [(r["provider"], r["model"], r["calls"]) for r in rows] == [("openai", "acme-private-7b", 1)]
    bad = httpx.get(url + "/api/v1/prices", params={"model": "gpt-4o", "at": "yesterday"})
    assert bad.status_code == 400 and "at: not an ISO date/time" in bad.json()["error"]


def test_reloading_prices_needs_an_admin_key_once_keys_exist(collector: BackgroundCollector) -> None:
    viewer = collector.collector.keys.create("dash", "viewer")
    admin = collector.collector.keys.create("ops", "admin")
    url = collector.url + "/api/v1/prices/reload"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    assert httpx.post(url, headers={"Authorization": f"Bearer {admin}"}).status_code == 200
