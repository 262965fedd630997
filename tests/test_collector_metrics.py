"""Prometheus /metrics: the series a user queries, bounded labels (overflow → ``other``), self-metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF, export_request


def _samples(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_a_runaway_label_is_capped_to_other_and_self_metrics_are_exposed(settings: Settings) -> None:
    capped = Settings(**{**settings.__dict__, "max_label_values": 2})
    spans = [
        {**CHAT, "llmmeter.feature": f"f{i}", "gen_ai.request.stream": True, "gen_ai.response.time_to_first_chunk": 1}
        for i in range(1, 6)
    ]
    with BackgroundCollector(capped) as running:
        body = export_request(
            *spans, {**CHAT, "gen_ai.usage.input_tokens": -1}, {"http.route": "/"}
        ).SerializeToString()
        assert httpx.post(running.url + "/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        s = _samples(running.url)
    calls = {labels["feature"]: value for labels, value in s["llmmeter_calls_total"]}
    assert calls == {"f1": 1.0, "f2": 1.0, "other": 3.0}
    assert {labels["status"] for labels, _ in s["llmmeter_calls_total"]} == {"ok"}
    token_types = {labels["type"] for labels, _ in s["llmmeter_tokens_total"]}
    assert token_types == {"input", "output"}
    assert sum(v for _, v in s["llmmeter_cost_usd_total"]) > 0
    assert sum(v for labels, v in s["llmmeter_time_to_first_chunk_seconds_count"]) == 5
    assert sum(v for labels, v in s["llmmeter_call_duration_seconds_count"]) == 5
    allowed = {"provider", "model", "project", "feature", "operation", "status", "type", "le"}
    for name in ("llmmeter_calls_total", "llmmeter_tokens_total", "llmmeter_cost_usd_total"):
        for labels, _ in s[name]:
            assert set(labels) <= allowed  # never user or session ids
    received = {labels["kind"]: v for labels, v in s["llmmeter_collector_spans_received_total"]}
    assert received == {"genai": 6.0, "other": 1.0}
    assert s["llmmeter_collector_spans_rejected_total"][0][1] == 1.0
    assert s["llmmeter_collector_commit_duration_seconds_count"][0][1] >= 1
    assert s["llmmeter_collector_postgres_up"][0][1] == 1.0
    for name in ("llmmeter_collector_queue_spans", "llmmeter_collector_spool_bytes"):
        assert name in s
