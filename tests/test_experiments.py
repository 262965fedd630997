"""A/B experiments: the statistics find a real difference, do not report one where there is none (checked over
many seeded A/A runs), and answer over REST and the CLI from the experiment rollups of real ledger writes."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.insights import experiments as ex
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import Cost, LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector


def _sample(values: list[float]) -> ex.Sample:
    return ex.Sample.from_sums(len(values), sum(values), sum(v * v for v in values))


def _costs(rng: random.Random, n: int, scale: float) -> list[float]:
    return [rng.lognormvariate(0, 0.8) * scale for _ in range(n)]


def test_no_difference_is_reported_as_one_only_at_the_expected_rate() -> None:
    """400 seeded A/A experiments: Welch's test and the two-proportion test each flag about 5 % of them."""
    runs, flagged_cost, flagged_errors = 400, 0, 0
    for seed in range(runs):
        rng = random.Random(seed)
        a, b = _costs(rng, 300, 0.002), _costs(rng, 300, 0.002)
        result = ex.holm([ex.welch(_sample(a), _sample(b))])[0]
        assert result is not None
        flagged_cost += result.significant
        errors = ex.holm([ex.proportions((sum(rng.random() < 0.05 for _ in range(300)), 300),
                                         (sum(rng.random() < 0.05 for _ in range(300)), 300))])[0]  # fmt: skip
        assert errors is not None
        flagged_errors += errors.significant
    assert 0.02 <= flagged_cost / runs <= 0.09, flagged_cost
    assert flagged_errors / runs <= 0.09, flagged_errors


def test_a_real_difference_is_found_and_several_variants_are_corrected() -> None:
    rng = random.Random(7)
    control, cheaper, same = _costs(rng, 400, 0.002), _costs(rng, 400, 0.0014), _costs(rng, 400, 0.002)
    found = ex.holm([ex.welch(_sample(control), _sample(cheaper)), ex.welch(_sample(control), _sample(same))])
    assert found[0] is not None and found[0].significant and found[0].relative is not None
    assert -0.4 < found[0].relative < -0.2 and found[0].interval is not None and found[0].interval[1] < 0
    assert found[1] is not None and not found[1].significant
    assert found[0].adjusted_p >= found[0].p_value  # Holm never lowers a p-value
    text = ex.verdict("B", found[0], found[1], None)
    assert text.startswith("variant B costs ") and "% less per call, p < 0.001" in text
    assert "latency difference not significant" in text


def test_latency_percentiles_from_the_histogram() -> None:
    hist = [0] * (len(ex.LATENCY_BOUNDS) + 1)
    hist[6] = 100  # 100 calls between 0.75 and 1 s
    assert ex.percentile(hist, 0.5) == 0.875
    assert ex.percentile([0] * len(hist), 0.5) is None


NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _experiment_calls(n: int) -> list[LlmCall]:
    """Variant 'control' and 'short' (a prompt 30 % shorter: cheaper, the same latencies and failures), 'broken'
    (failing ten times as often). Each triple of calls shares its latency: no latency difference at all."""
    rng, same = random.Random(11), random.Random(12)
    calls = []
    for i in range(n):
        variant = ("control", "short", "broken")[i % 3]
        tokens = int(rng.lognormvariate(7, 0.5) * (0.7 if variant == "short" else 1))
        start = int((NOW - timedelta(hours=2, seconds=i)).timestamp() * 1e9)
        if i % 3 == 0:
            duration = int(same.lognormvariate(0, 0.3) * 1e9)
        cost = Decimal(tokens) * Decimal("0.0000025")
        failed = (i // 3) % (5 if variant == "broken" else 50) == 0
        calls.append(
            LlmCall(
                trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", start_ns=start, end_ns=start + duration,
                provider="openai", operation="chat", request_model="gpt-4o", project="shop", feature="answer",
                user_id=f"user-{i % 150}", experiment="shorter-prompt", variant=variant,
                usage=Usage(input_tokens=tokens, output_tokens=50), status="error" if failed else "ok",
                cost=Cost(total=cost, parts={"input": cost}, price_source="catalog"),
            )
        )  # fmt: skip
    return calls


def test_an_experiment_over_rest_and_the_cli(collector: BackgroundCollector) -> None:
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    ledger.write(_experiment_calls(1800))
    ledger.close()
    listed = httpx.get(collector.url + "/api/v1/experiments").json()["experiments"]
    assert [(e["experiment"], e["variants"], e["calls"]) for e in listed] == [
        ("shorter-prompt", ["broken", "control", "short"], 1800)
    ]
    data = httpx.get(collector.url + "/api/v1/experiments/shorter-prompt").json()
    assert data["control"] == "control"
    by = {v["variant"]: v for v in data["variants"]}
    short, broken = by["short"]["against_control"], by["broken"]["against_control"]
    assert short["cost_per_call"]["significant"] and -0.36 < short["cost_per_call"]["relative"] < -0.24
    assert short["cost_per_user"]["significant"]
    assert not short["latency"]["significant"] and not short["error_rate"]["significant"]
    assert broken["error_rate"]["significant"] and broken["error_rate"]["difference"] > 0.1
    assert not broken["cost_per_call"]["significant"]
    assert by["control"]["users"] == 50 and by["control"]["latency_p95_s"] > by["control"]["latency_p50_s"]
    verdicts = dict(zip(["broken", "short"], data["verdict"], strict=True))
    assert verdicts["short"].startswith("short against control: variant short costs ")
    assert "% less per call, p < 0.001" in verdicts["short"]
    assert "error rate +" in verdicts["broken"]
    result = CliRunner().invoke(cli, ["experiments", "shorter-prompt", "--url", collector.url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "control" in result.output and "short against control: variant short costs" in result.output
    other = json.loads(
        CliRunner()
        .invoke(cli, ["experiments", "shorter-prompt", "--control", "short", "--json", "--url", collector.url])
        .output
    )
    assert other["control"] == "short"
    bad = httpx.get(collector.url + "/api/v1/experiments/shorter-prompt", params={"control": "nope"})
    assert bad.status_code == 400 and bad.json()["field"] == "control"
    assert httpx.get(collector.url + "/api/v1/experiments/unknown").status_code == 404


def test_a_small_variant_gets_a_warning(collector: BackgroundCollector) -> None:
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    ledger.write(_experiment_calls(60))
    ledger.close()
    data = httpx.get(collector.url + "/api/v1/experiments/shorter-prompt").json()
    assert all(any("calls: at least 100" in w for w in v["warnings"]) for v in data["variants"])
