"""``llmmeter export stripe``: usage per customer and day sent as Stripe meter events with the real ``stripe``
library, pointed at a local fake of the meter-events endpoint; a rerun never bills twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llmmeter_collector.cli import cli
from llmmeter_collector.devtools.fakestripe import FakeStripe
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import Cost, LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
DAY1, DAY2 = TODAY - timedelta(days=2), TODAY - timedelta(days=1)
CONFIG = """version: 1
meters:
  - event_name: ai_spend
    value: cost_usd
    customers:
      - {customer: cus_shop, project: shop}
      - {customer: cus_vip, project: labs, user: vip}
  - event_name: ai_tokens
    value: tokens
    customers:
      - {customer: cus_labs, project: labs}
"""


def _call(n: int, at: datetime, project: str, user: str, cost: str | None, tokens: int = 1000) -> LlmCall:
    start = int((at + timedelta(hours=9, minutes=n)).timestamp()) * 10**9
    call = LlmCall(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", start_ns=start, end_ns=start + 10**9, provider="openai",
        operation="chat", request_model="gpt-4o", project=project, feature="chat", user_id=user,
        usage=Usage(input_tokens=tokens, output_tokens=100),
    )  # fmt: skip
    call.cost = Cost(total=Decimal(cost), parts={"input": Decimal(cost)}, price_source="catalog") if cost else None
    return call


@pytest.fixture
def stripe_env(monkeypatch: pytest.MonkeyPatch) -> FakeStripe:
    with FakeStripe() as fake:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_llmmeter")
        monkeypatch.setenv("LLMMETER_STRIPE_API_BASE", fake.url)
        yield fake


def _seed(collector: BackgroundCollector, *extra: LlmCall) -> None:
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    ledger.write([
        _call(1, DAY1, "shop", "u1", "0.0123456789"), _call(2, DAY1, "shop", "u2", "0.5"),
        _call(3, DAY2, "shop", "u1", "1.25"), _call(4, DAY1, "labs", "vip", "2"), _call(5, DAY1, "labs", "u3", "3"),
        _call(6, TODAY + timedelta(hours=0), "shop", "u1", "9"), *extra,
    ])  # fmt: skip
    ledger.close()


def _run(collector: BackgroundCollector, tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "stripe.yaml"
    if not config.exists():
        config.write_text(CONFIG)
    month = DAY1.strftime("%Y-%m") if DAY1.month == DAY2.month else None
    days = ["--period", month] if month else ["--from", DAY1.date().isoformat(), "--to", DAY2.date().isoformat()]
    return CliRunner().invoke(
        cli, ["export", "stripe", "--config", str(config), *days, "--state", str(tmp_path / "sent.jsonl"),
              "--url", collector.url, *args],
        env={"COLUMNS": "200"},
    )  # fmt: skip


def test_each_customer_day_is_one_meter_event_and_a_rerun_sends_nothing(
    collector: BackgroundCollector, stripe_env: FakeStripe, tmp_path: Path
) -> None:
    _seed(collector)
    dry = _run(collector, tmp_path, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "4 events to send (dry run: nothing sent)" in dry.output and stripe_env.events == []
    first = _run(collector, tmp_path)
    assert first.exit_code == 0, first.output
    sent = {(e["event_name"], e["payload"]["stripe_customer_id"], e["timestamp"]): e["payload"]["value"]
            for e in stripe_env.events}  # fmt: skip
    noon = lambda day: int((day + timedelta(hours=12)).timestamp())  # noqa: E731
    assert sent == {
        ("ai_spend", "cus_shop", noon(DAY1)): "0.5123456789",  # exact dollars, two calls summed
        ("ai_spend", "cus_shop", noon(DAY2)): "1.25",
        ("ai_spend", "cus_vip", noon(DAY1)): "2",  # labs' vip user; labs' other users are not this customer's
        ("ai_tokens", "cus_labs", noon(DAY1)): "2200",  # both labs calls' tokens; labs had no calls on DAY2
    }
    assert len(stripe_env.events) == 4 and "sent 4 meter events" in first.output  # today (not over) is never sent
    identifiers = [e["identifier"] for e in stripe_env.events]
    again = _run(collector, tmp_path)
    assert again.exit_code == 0 and "already sent" in again.output and len(stripe_env.events) == 4
    # the local log lost: the same identifiers go out, Stripe refuses them as duplicates, nothing is counted twice
    (tmp_path / "sent.jsonl").unlink()
    lost = _run(collector, tmp_path)
    assert lost.exit_code == 0, lost.output
    assert len(stripe_env.events) == 4 and [e["identifier"] for e in stripe_env.events] == identifiers
    assert (tmp_path / "sent.jsonl").read_text().count("\n") == 4


def test_a_failing_stripe_is_retried_and_unpriced_calls_are_never_billed_as_zero(
    collector: BackgroundCollector, stripe_env: FakeStripe, tmp_path: Path
) -> None:
    _seed(collector, _call(7, DAY2, "shop", "u9", None))
    refused = _run(collector, tmp_path)
    assert refused.exit_code == 1 and "calls without a price would be billed as $0: cus_shop on" in refused.output
    assert stripe_env.requests == 0
    (tmp_path / "stripe.yaml").write_text(CONFIG.replace("      - {customer: cus_shop, project: shop}\n", ""))
    stripe_env.fail_next = 2  # two 500s: the library retries
    result = _run(collector, tmp_path)
    assert result.exit_code == 0, result.output
    assert len(stripe_env.events) == 2 and stripe_env.requests == 4


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("version: 2\n", "version: must be 1"),
        ("version: 1\nmeters: []\n", "meters: must be a non-empty list"),
        (
            "version: 1\nmeters:\n  - {event_name: x, value: euros, customers: [{customer: cus_a, project: p}]}\n",
            "meters[0].value: must be one of cost_usd",
        ),
        (
            "version: 1\nmeters:\n  - {event_name: x, customers: [{customer: acme, project: p}]}\n",
            "meters[0].customers[0].customer: must be a Stripe customer id",
        ),
        (
            "version: 1\nmeters:\n  - {event_name: x, customers: [{customer: cus_a}]}\n",
            "needs at least one of project, feature, user",
        ),
        ("version: 1\nmeters: [\n", "not valid YAML"),
    ],
)
def test_a_bad_mapping_file_names_the_field(
    collector: BackgroundCollector, stripe_env: FakeStripe, tmp_path: Path, config: str, message: str
) -> None:
    (tmp_path / "stripe.yaml").write_text(config)
    result = _run(collector, tmp_path)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_wrong_periods_and_a_missing_key_are_clear_errors(
    collector: BackgroundCollector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(collector)
    (tmp_path / "stripe.yaml").write_text(CONFIG)
    base = ["export", "stripe", "--config", str(tmp_path / "stripe.yaml"), "--url", collector.url]
    old = (TODAY - timedelta(days=60)).strftime("%Y-%m")
    for args, message in (
        (["--period", old], "Stripe refuses meter events that old"),
        (["--period", "November"], "not a month"),
        ([], "give --period YYYY-MM"),
        (["--period", TODAY.strftime("%Y-%m"), "--from", "2026-01-01"], "not both"),
    ):
        result = CliRunner().invoke(cli, [*base, *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    day = DAY2.date().isoformat()
    result = CliRunner().invoke(cli, [*base, "--from", day, "--to", day, "--state", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 2 and "set STRIPE_API_KEY" in result.output
