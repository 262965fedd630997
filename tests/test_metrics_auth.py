"""/metrics behind a bearer token (``LLMMETER_METRICS_TOKEN``), scraped by a real Prometheus with the shipped
scrape job's ``authorization``, and the project label only when the operator wants it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from prometheus_client.parser import text_string_to_metric_families

from llmmeter_collector.config import ConfigError, Settings
from llmmeter_collector.service import BackgroundCollector
from tests.realprom import Prometheus

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "metrics-token-for-the-test"


def _export(*projects: str) -> bytes:
    """One chat span of gpt-4o (1000 input tokens) per project named."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i, project in enumerate(projects, start=1):
        span = spans.spans.add()
        span.trace_id, span.span_id, span.name = bytes.fromhex("ab" * 16), (now + i).to_bytes(8, "big"), "chat gpt-4o"
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 10**8
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                      "gen_ai.request.model": "gpt-4o", "llmmeter.project": project}  # fmt: skip
        for k, v in attributes.items():
            span.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
        span.attributes.append(KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=1000)))
    return request.SerializeToString()


def _send(url: str, *projects: str) -> None:
    sent = httpx.post(
        url + "/v1/traces", content=_export(*projects), headers={"Content-Type": "application/x-protobuf"}
    )
    assert sent.status_code == 200, sent.text


def _samples(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of ``name``'s samples in an exposition."""
    return [
        dict(sample.labels)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_metrics_token_is_required_when_set(settings: Settings) -> None:
    token_settings = Settings(**{**settings.__dict__, "metrics_token": TOKEN})
    with BackgroundCollector(token_settings, grpc=False) as collector:
        _send(collector.url, "shop")
        missing = httpx.get(collector.url + "/metrics")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "llmmeter_cost_usd_total" not in missing.text and "shop" not in missing.text
        wrong = httpx.get(collector.url + "/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        right = httpx.get(collector.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert {s["project"] for s in _samples(right.text, "llmmeter_calls_total")} == {"shop"}
        assert httpx.get(collector.url + "/healthz").status_code == 200  # probes stay open


def test_without_a_token_metrics_stay_open(collector: BackgroundCollector) -> None:
    assert httpx.get(collector.url + "/metrics").status_code == 200


def _scrape_config(tmp_path: Path, target: str, token: str) -> Path:
    """The shipped prometheus.yml's llmmeter job (its ``authorization`` block as shipped), aimed at ``target``,
    with its token file written next to the config as the compose stack does."""
    shipped = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "llmmeter")
    job["static_configs"] = [{"targets": [target]}]
    workdir = tmp_path / token
    (workdir / "secrets").mkdir(parents=True)
    (workdir / job["authorization"]["credentials_file"]).write_text(token)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [job]}
    (workdir / "shipped-job.yml").write_text(yaml.safe_dump(config))
    return workdir


@pytest.mark.parametrize(("token", "up"), [(TOKEN, 1), ("a-wrong-token", 0)])
def test_prometheus_scrapes_with_the_shipped_scrape_job(
    settings: Settings, tmp_path: Path, token: str, up: int
) -> None:
    token_settings = Settings(**{**settings.__dict__, "metrics_token": TOKEN})
    with BackgroundCollector(token_settings, grpc=False) as collector:
        _send(collector.url, "shop")
        workdir = _scrape_config(tmp_path, collector.url.removeprefix("http://"), token)
        prom = Prometheus(workdir, scrape_targets=[])
        prom.config_path = workdir / "shipped-job.yml"  # ours, with the shipped job, instead of the generated one
        with prom:
            result = prom.wait_for(f'up{{job="llmmeter"}} == {up}')
            assert result[0]["value"][1] == str(up)
            if up:
                calls = prom.wait_for('llmmeter_calls_total{project="shop"}')
                assert calls[0]["value"][1] == "1"


def test_project_labels_can_be_left_out(settings: Settings) -> None:
    quiet = Settings(**{**settings.__dict__, "metrics_project_labels": False})
    with BackgroundCollector(quiet, grpc=False) as collector:
        _send(collector.url, "shop", "shop", "bank")
        text = httpx.get(collector.url + "/metrics").text
        for name in ("llmmeter_calls_total", "llmmeter_cost_usd_total", "llmmeter_tokens_total",
                     "llmmeter_call_duration_seconds_count"):  # fmt: skip
            samples = _samples(text, name)
            assert samples and all("project" not in s for s in samples), name
        assert "shop" not in text and "bank" not in text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        calls = [s for s in families["llmmeter_calls"].samples if s.name == "llmmeter_calls_total"]
        assert [(s.labels["status"], s.value) for s in calls] == [("ok", 3.0)]  # summed over both projects
        inputs = [s for s in families["llmmeter_tokens"].samples if s.labels.get("type") == "input"]
        assert [s.value for s in inputs] == [3000.0]
        # the REST API still has the per-project figures
        by_project = httpx.get(collector.url + "/api/v1/summary", params={"period": "all"}).json()["by_project"]
        assert {r["project"]: r["calls"] for r in by_project} == {"shop": 2, "bank": 1}
    # and after a restart the counters seeded from Postgres are summed the same way
    with BackgroundCollector(quiet, grpc=False) as collector:
        text = httpx.get(collector.url + "/metrics").text
        calls = _samples(text, "llmmeter_calls_total")
        assert len(calls) == 1 and "project" not in calls[0]


def test_project_label_setting_is_validated() -> None:
    with pytest.raises(ConfigError, match="LLMMETER_METRICS_PROJECT_LABELS must be true or false"):
        Settings.from_env({"LLMMETER_METRICS_PROJECT_LABELS": "sometimes"})
    assert Settings.from_env({}).metrics_project_labels is True  # today's behaviour by default
