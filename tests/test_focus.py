"""FOCUS: the ledger exported as a FOCUS 1.2 dataset (CSV and Parquet) checked against the spec's rules, and a
cloud's FOCUS export imported beside the ledger for the reconciliation view."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

from .focus_rules import violations

DAY = datetime.now(timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)


def _call(n: int, provider: str, model: str, project: str, usage: Usage, feature: str = "chat") -> LlmCall:
    start = int((DAY + timedelta(minutes=n)).timestamp()) * 10**9
    return LlmCall(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", start_ns=start, end_ns=start + 10**9, provider=provider,
        operation="chat", request_model=model, project=project, feature=feature, user_id=f"u{n % 2}", usage=usage,
    )  # fmt: skip


def _seed(collector: BackgroundCollector) -> list[LlmCall]:
    core = collector.collector
    calls = [
        _call(1, "openai", "gpt-4o", "shop", Usage(input_tokens=10_000, output_tokens=500, cache_read_tokens=4_000)),
        _call(2, "openai", "gpt-4o", "shop", Usage(input_tokens=2_000, output_tokens=100), feature="search"),
        _call(3, "anthropic", "claude-sonnet-4-5", "labs",
              Usage(input_tokens=9_000, output_tokens=300, cache_read_tokens=1_000, cache_write_tokens=3_000)),
        _call(4, "aws.bedrock", "anthropic.claude-3-haiku-20240307-v1:0", "labs",
              Usage(input_tokens=800, output_tokens=80)),
        _call(5, "openai", "acme-private-model", "shop", Usage(input_tokens=100, output_tokens=10)),  # unpriced
    ]  # fmt: skip
    for call in calls:
        call.cost = core.catalog.price(call)
    assert calls[4].cost is None and all(c.cost is not None for c in calls[:4])
    ledger = Ledger(core.dsn, core.schema)
    ledger.write(calls)
    ledger.close()
    return calls


def _export(url: str, *args: str) -> tuple[list[str], list[dict[str, str]], str]:
    result = CliRunner().invoke(cli, ["export", "--format", "focus", "--url", url, *args])
    assert result.exit_code == 0, result.output
    text = result.stdout
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader), result.output


def test_the_focus_export_follows_the_spec_and_adds_up_to_the_ledger(collector: BackgroundCollector) -> None:
    calls = _seed(collector)
    columns, rows, output = _export(collector.url)
    assert violations(columns, rows) == []
    assert rows and {r["ServiceCategory"] for r in rows} == {"AI and Machine Learning"}
    priced = sum((c.cost.total for c in calls if c.cost is not None), Decimal(0))
    assert sum(Decimal(r["BilledCost"]) for r in rows) == priced
    assert sum(Decimal(r["EffectiveCost"]) for r in rows) == priced
    assert "1 calls without a price are not in the FOCUS rows" in output  # visible, never a $0 row
    assert not any(r["x_ModelId"] == "acme-private-model" for r in rows)
    # one row per day x provider x model x token class x project, with the token counts of that class
    gpt4o = {r["x_TokenClass"]: r for r in rows if r["x_ModelId"] == "gpt-4o"}
    assert set(gpt4o) == {"input", "cache_read", "output"}
    assert gpt4o["input"]["ConsumedQuantity"] == "8000" and gpt4o["cache_read"]["ConsumedQuantity"] == "4000"
    assert gpt4o["output"]["ConsumedUnit"] == "Tokens" and gpt4o["output"]["SkuMeter"] == "Output Tokens"
    assert json.loads(gpt4o["cache_read"]["SkuPriceDetails"]) == {
        "x_ModelId": "gpt-4o", "x_TokenDirection": "Input", "x_CacheAction": "Read"
    }  # fmt: skip
    assert json.loads(gpt4o["input"]["Tags"]) == {"llmmeter.project": "shop"} and gpt4o["input"]["x_Calls"] == "2"
    claude = {r["x_TokenClass"]: r for r in rows if r["x_ModelId"] == "claude-sonnet-4-5"}
    assert claude["cache_write"]["ConsumedQuantity"] == "3000" and claude["input"]["ConsumedQuantity"] == "5000"
    bedrock = next(r for r in rows if r["x_ModelId"].startswith("anthropic.claude"))
    assert (bedrock["ProviderName"], bedrock["PublisherName"], bedrock["ServiceName"]) == (
        "Amazon Web Services", "Anthropic", "Amazon Bedrock",
    )  # fmt: skip
    assert bedrock["x_HostProviderName"] == "Amazon Web Services" and bedrock["SubAccountId"] == "labs"
    # split by feature and user: the tags carry them, the totals stay
    columns, split, _ = _export(collector.url, "--by", "feature", "--by", "user")
    assert violations(columns, split) == []
    assert sum(Decimal(r["BilledCost"]) for r in split) == priced
    tags = {r["Tags"] for r in split if r["x_ModelId"] == "gpt-4o"}
    assert json.dumps({"llmmeter.project": "shop", "llmmeter.feature": "search", "user.id": "u0"},
                      separators=(",", ":")) in tags  # fmt: skip
    bad = CliRunner().invoke(cli, ["export", "--by", "user", "--url", collector.url])
    assert bad.exit_code == 2 and "--format focus" in bad.output


def test_the_focus_export_as_parquet_keeps_exact_decimals_and_utc_times(
    collector: BackgroundCollector, tmp_path: Path
) -> None:
    calls = _seed(collector)
    path = tmp_path / "focus.parquet"
    result = CliRunner().invoke(cli, ["export", "--format", "focus", "-o", str(path), "--url", collector.url])
    assert result.exit_code == 0, result.output
    table = pq.read_table(path)
    assert table.schema.field("BilledCost").type == pa.decimal128(38, 18)
    start = table.schema.field("ChargePeriodStart").type
    assert pa.types.is_timestamp(start) and start.tz == "UTC"
    assert table.schema.field("ChargeClass").type == pa.string()
    assert table.column("ChargeClass").null_count == table.num_rows  # null, not "": no correction rows
    priced = sum((c.cost.total for c in calls if c.cost is not None), Decimal(0))
    assert sum(table.column("BilledCost").to_pylist()) == priced
    rows = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in table.to_pylist()]
    for r in rows:  # Parquet holds typed values; as text they read as the CSV's
        for name in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
            r[name] = r[name].replace(" ", "T").replace("+00:00", "Z")
        for name in ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity",
                     "ConsumedQuantity", "ContractedUnitPrice", "ListUnitPrice"):  # fmt: skip
            r[name] = format(Decimal(r[name]).normalize(), "f")
    assert violations(table.column_names, rows) == []


def test_a_key_limited_to_projects_exports_only_its_projects(collector: BackgroundCollector) -> None:
    _seed(collector)
    admin = collector.collector.keys.create("root", "admin", ())
    limited = collector.collector.keys.create("labs-viewer", "viewer", ("labs",))
    answer = httpx.get(collector.url + "/api/v1/export/focus", headers={"Authorization": f"Bearer {limited}"})
    assert answer.status_code == 200
    assert {r["SubAccountId"] for r in csv.DictReader(io.StringIO(answer.text))} == {"labs"}
    beyond = httpx.get(collector.url + "/api/v1/export/focus", params={"project": "shop"},
                       headers={"Authorization": f"Bearer {limited}"})  # fmt: skip
    assert beyond.status_code == 403
    everything = httpx.get(collector.url + "/api/v1/export/focus", headers={"Authorization": f"Bearer {admin}"})
    assert {r["SubAccountId"] for r in csv.DictReader(io.StringIO(everything.text))} == {"labs", "shop"}


# ---- import -----------------------------------------------------------------------------------------------------

_CLOUD_COLUMNS = [
    "BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "BillingCurrency", "ChargePeriodStart",
    "ChargePeriodEnd", "ChargeCategory", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName", "SkuId",
    "ChargeDescription", "ConsumedQuantity", "ConsumedUnit", "SubAccountId", "Tags",
]  # fmt: skip


def _cloud_rows(day: datetime) -> list[dict[str, str]]:
    start, end = day.strftime("%Y-%m-%dT00:00:00Z"), (day + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    common = {"BillingCurrency": "USD", "ChargePeriodStart": start, "ChargePeriodEnd": end, "ChargeCategory": "Usage",
              "ProviderName": "AWS", "PublisherName": "AWS", "SubAccountId": "123456789012", "Tags": "{}"}  # fmt: skip
    return [
        {**common, "BilledCost": "41.2", "EffectiveCost": "41.2", "ListCost": "41.2", "ContractedCost": "41.2",
         "ServiceCategory": "Compute", "ServiceName": "Amazon Elastic Compute Cloud", "SkuId": "ec2",
         "ChargeDescription": "m7i.large", "ConsumedQuantity": "24", "ConsumedUnit": "Hours"},
        {**common, "BilledCost": "12.5", "EffectiveCost": "12.5", "ListCost": "12.5", "ContractedCost": "12.5",
         "ServiceCategory": "AI and Machine Learning", "ServiceName": "Amazon Bedrock", "SkuId": "bedrock-haiku-in",
         "ChargeDescription": "Claude 3 Haiku input tokens", "ConsumedQuantity": "50000000", "ConsumedUnit": "Tokens",
         "Tags": '{"team": "labs"}'},
        {**common, "BilledCost": "3.25", "EffectiveCost": "3.25", "ListCost": "3.25", "ContractedCost": "3.25",
         "ServiceCategory": "", "ServiceName": "Vertex AI", "ProviderName": "Google Cloud", "SkuId": "gemini",
         "ChargeDescription": "Gemini 2.5 Flash", "ConsumedQuantity": "", "ConsumedUnit": ""},
    ]  # fmt: skip


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_CLOUD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_cloud_focus_export_is_imported_once_and_shows_in_the_reconciliation(
    collector: BackgroundCollector, tmp_path: Path
) -> None:
    calls = _seed(collector)
    url = collector.url
    invoke = lambda *a: CliRunner().invoke(cli, [*a, "--url", url])  # noqa: E731
    aws = _write_csv(tmp_path / "aws-focus.csv", _cloud_rows(DAY))
    first = invoke("import", "focus", str(aws))
    assert first.exit_code == 0, first.output
    assert "kept 2 AI-service rows of 3 ($15.75 billed" in first.output
    again = invoke("import", "focus", str(aws))
    assert again.exit_code == 0 and "already imported" in again.output
    listed = json.loads(invoke("import", "list", "--json").output)
    assert [(c["service"], c["billed_usd"], c["ledger_provider"]) for c in listed["costs"]] == [
        ("Amazon Bedrock", "12.5", "aws.bedrock"), ("Vertex AI", "3.25", "gcp.vertex_ai"),
    ]  # fmt: skip
    # a Parquet file of another cloud's export
    table = pa.Table.from_pylist([{**r, "BilledCost": Decimal(r["BilledCost"])} for r in _cloud_rows(DAY)[1:2]])
    pq.write_table(table, tmp_path / "other.parquet")
    assert invoke("import", "focus", str(tmp_path / "other.parquet")).exit_code == 0
    day = DAY.date().isoformat()
    view = json.loads(invoke("reconcile", "--provider", "focus", "--from", day, "--to", day, "--json").output)
    bedrock = next(r for r in view["rows"] if r["model"] == "Amazon Bedrock")
    ledger_bedrock = calls[3].cost.total  # type: ignore[union-attr]
    assert Decimal(bedrock["provider_usd"]) == 25 and Decimal(bedrock["ledger_usd"]) == ledger_bedrock
    assert bedrock["findings"] == ["uninstrumented"]
    assert view["summary"].startswith(f"{(ledger_bedrock / Decimal('28.25')) * 100:.1f} % of the cloud AI spend")


def test_a_bad_focus_file_is_refused_whole_naming_the_row_and_column(
    collector: BackgroundCollector, tmp_path: Path
) -> None:
    rows = _cloud_rows(DAY)
    rows[2]["BilledCost"] = "12,50"
    bad = _write_csv(tmp_path / "bad.csv", rows)
    result = CliRunner().invoke(cli, ["import", "focus", str(bad), "--url", collector.url])
    assert result.exit_code == 1 and "row 3, BilledCost: not a decimal number: '12,50'" in result.output
    assert "nothing imported" in result.output and "Traceback" not in result.output
    missing = tmp_path / "missing.csv"
    missing.write_text("BilledCost,ServiceName\n1,Amazon Bedrock\n")
    result = CliRunner().invoke(cli, ["import", "focus", str(missing), "--url", collector.url])
    assert result.exit_code == 1 and "missing column(s) EffectiveCost" in result.output
    # the server checks too: rows sent by anything else than the CLI
    body = {"file_name": "x.csv", "sha256": "0" * 64, "rows_read": 1, "columns": _CLOUD_COLUMNS,
            "rows": [{**rows[1], "ChargePeriodEnd": "yesterday", "_row": 7}]}  # fmt: skip
    answer = httpx.post(collector.url + "/api/v1/focus/import", json=body)
    assert answer.status_code == 400 and "row 7, ChargePeriodEnd" in answer.json()["error"]
    assert httpx.get(collector.url + "/api/v1/focus/costs").json() == {"costs": [], "imports": []}
    nothing = CliRunner().invoke(cli, ["import", "focus", str(tmp_path / "nope.csv"), "--url", collector.url])
    assert nothing.exit_code == 2 and "no such file" in nothing.output
    with pytest.raises(AssertionError):
        assert violations(["BilledCost"], [{"BilledCost": "1e-3"}]) == []  # the rules do catch a broken file
