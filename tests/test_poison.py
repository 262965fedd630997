"""A row Postgres refuses never stops the ledger: it is isolated from its batch, rejected with Postgres' reason,
kept in the dead-letter table (replayable), and the calls around it and after it are stored.

The poisoned values are built below the OTLP edge (hand-made calls through the real writer, or several fields
each of a size the edge lets through that only together overflow an index row), so these tests keep meaning
the same whatever length limits the receivers apply."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from llmmeter_collector.cli import cli
from llmmeter_collector.config import Settings
from llmmeter_collector.ledger import storage
from llmmeter_collector.ledger.spool import Spool, call_to_json
from llmmeter_collector.ledger.writer import Ingestor
from llmmeter_collector.llmcall import Cost, LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

from .test_receiver import CHAT, PROTOBUF, export_request

_RANDOM = random.Random(16)


def _noise(chars: int, alphabet: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") -> str:
    """Text that does not compress: over Postgres' index row limit (2,704 bytes) at 3,000 characters."""
    return "".join(_RANDOM.choice(alphabet) for _ in range(chars))


def _call(n: int, **fields: object) -> LlmCall:
    now = time.time_ns()
    call = LlmCall(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", start_ns=now, end_ns=now + 10**9, provider="openai",
        operation="chat", request_model="gpt-4o-mini", project="shop", feature="search", user_id=f"u{n}",
        usage=Usage(input_tokens=100, output_tokens=10),
        cost=Cost(total=Decimal("0.001"), parts={"input": Decimal("0.001")}, price_source="catalog"),
    )  # fmt: skip
    for name, value in fields.items():
        if name == "input_tokens":
            call.usage.input_tokens = value  # type: ignore[assignment]
        else:
            setattr(call, name, value)
    return call


# Each bounded field with a value Postgres refuses: too big for an index row (the ledger's key, the rollups'
# keys), or a character / number a text, jsonb or bigint column cannot hold.
POISONS: dict[str, Callable[[], dict[str, object]]] = {
    "project": lambda: {"project": _noise(3000)},
    "feature": lambda: {"feature": _noise(3000)},
    "user.id": lambda: {"user_id": _noise(3000)},
    "environment": lambda: {"environment": _noise(3000)},
    "model": lambda: {"request_model": _noise(3000)},
    "model, huge and compressible": lambda: {"response_model": "gpt-4o-" * 200_000},
    "provider": lambda: {"provider": _noise(3000)},
    "trace id": lambda: {"trace_id": _noise(3000)},
    "session.id": lambda: {"session_id": "s\x00ession"},
    "tag value": lambda: {"tags": {"team": "a\x00b"}},
    "experiment": lambda: {"experiment": "exp\x00"},
    "input tokens": lambda: {"input_tokens": 2**63},
}


def _count(dsn: str, schema: str, sql: str) -> int:
    with storage.connect(dsn, schema) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("field", list(POISONS))
def test_one_refused_value_in_a_batch_is_rejected_and_the_rest_is_stored(
    database_url: str, pg_schema: str, field: str
) -> None:
    storage.migrate(database_url, pg_schema)
    ingestor = Ingestor(storage.Ledger(database_url, pg_schema))
    try:
        good = [_call(n) for n in range(1, 8)]
        bad = _call(99, **POISONS[field]())
        first = ingestor.submit([*good[:4], bad, *good[4:]]).result(timeout=60)
        assert first.inserted == good
        assert [r.call for r in first.rejected] == [bad]
        assert "SQLSTATE" in first.rejected[0].reason
        later = [_call(n) for n in range(100, 103)]
        assert ingestor.submit(later).result(timeout=60).inserted == later  # the ledger goes on
    finally:
        ingestor.close()
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == 10
    assert _count(database_url, pg_schema, "SELECT sum(calls) FROM llm_rollup_hour") == 10
    with storage.connect(database_url, pg_schema) as conn:
        rows = conn.execute("SELECT error, sqlstate, call FROM llm_calls_dead_letter").fetchall()
    assert len(rows) == 1
    error, sqlstate, call = rows[0]
    assert sqlstate[:2] in ("22", "23", "54") and error
    assert json.loads(call)["span_id"] == bad.span_id  # the whole call, to inspect or replay


def _poisoned(collector: BackgroundCollector) -> dict[str, object]:
    """A span the edge accepts and Postgres refuses for its data. The edge's limits (ingest/bounds.py) keep every value
    inside what Postgres holds, so the refusal comes from a rule Postgres has and the edge does not know: a CHECK
    constraint, as an operator's own rule or a future column type would be (SQLSTATE 23514, a data error)."""
    core = collector.collector
    with psycopg.connect(core.dsn, options=f"-c search_path={core.schema}", autocommit=True) as conn:
        conn.execute("ALTER TABLE llm_calls ADD CONSTRAINT no_refused_feature CHECK (feature <> 'refused')")
    return {**CHAT, "llmmeter.feature": "refused"}


def test_a_grpc_export_with_a_row_postgres_refuses_gets_partial_success(
    collector: BackgroundCollector, database_url: str, pg_schema: str
) -> None:
    with grpc.insecure_channel(collector.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        response = stub.Export(export_request(CHAT, _poisoned(collector), CHAT), timeout=30)
    assert response.partial_success.rejected_spans == 1
    assert "no_refused_feature" in response.partial_success.error_message  # Postgres' own reason
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == 2
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls_dead_letter") == 1


def test_an_export_with_a_row_postgres_refuses_gets_partial_success_and_later_exports_are_stored(
    collector: BackgroundCollector, database_url: str, pg_schema: str
) -> None:
    request = export_request(CHAT, _poisoned(collector), CHAT)
    answer = httpx.post(collector.url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert answer.status_code == 200
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 1
    assert "no_refused_feature" in response.partial_success.error_message  # Postgres' own reason
    assert "0000000000000002" in response.partial_success.error_message  # names the span
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == 2
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls_dead_letter") == 1
    later = export_request(CHAT, start_ns=time.time_ns())
    later.resource_spans[0].scope_spans[0].spans[0].span_id = (77).to_bytes(8, "big")
    again = httpx.post(collector.url + "/v1/traces", content=later.SerializeToString(), headers=PROTOBUF)
    assert (
        again.status_code == 200
        and not ExportTraceServiceResponse.FromString(again.content).partial_success.rejected_spans
    )
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == 3
    metrics = httpx.get(collector.url + "/metrics").text
    assert 'llmmeter_collector_rejected_calls_total{source="export"} 1.0' in metrics
    ready = httpx.get(collector.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["reasons"] == []


def test_a_spool_with_a_poisoned_and_a_corrupt_segment_is_replayed_around_them(
    settings: Settings, database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path, 10**9)
    before = [_call(n) for n in (1, 2)]
    bad = _call(3, project=_noise(3000))
    after = [_call(n) for n in (4, 5)]
    spool.append(before)
    spool.append([_call(6), bad, _call(7)])  # a segment holding a row Postgres refuses
    corrupt = tmp_path / "000000000003.calls.jsonl"
    corrupt.write_text(call_to_json(_call(8)) + "\n{this is not a spooled call\n", encoding="utf-8")
    (tmp_path / "000000000004.calls.jsonl").write_text("\n".join(call_to_json(c) for c in after) + "\n")
    with BackgroundCollector(Settings(**{**settings.__dict__, "spool_dir": str(tmp_path)})) as running:
        deadline = time.monotonic() + 60
        while list(tmp_path.glob("*.calls.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(tmp_path.glob("*.calls.jsonl")), "replay did not get past the bad segments"
        assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == 6  # 1, 2, 6, 7, 4, 5
        assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls_dead_letter") == 1
        quarantined = tmp_path / "quarantine" / corrupt.name
        assert quarantined.exists()
        assert "not a spooled call" in (tmp_path / "quarantine" / (corrupt.name + ".reason")).read_text()
        ready = httpx.get(running.url + "/readyz").json()
        assert ready["reasons"] == ["poisoned_segment"] and ready["quarantined_segments"] == 1
        metrics = httpx.get(running.url + "/metrics").text
        assert 'llmmeter_collector_storage_problem{reason="poisoned_segment"} 1.0' in metrics
        assert "llmmeter_collector_quarantined_segments_total 1.0" in metrics
        assert 'llmmeter_collector_rejected_calls_total{source="spool"} 1.0' in metrics
        good = httpx.post(
            running.url + "/v1/traces", content=export_request(CHAT).SerializeToString(), headers=PROTOBUF
        )
        assert good.status_code == 200  # the ledger takes new exports meanwhile
        assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == 7
        quarantined.unlink()  # the user dealt with it: the problem is gone
        assert httpx.get(running.url + "/readyz").json()["reasons"] == []


def test_dead_letters_are_listed_and_replayed_after_a_fix(database_url: str, pg_schema: str) -> None:
    storage.migrate(database_url, pg_schema)
    ledger = storage.Ledger(database_url, pg_schema)
    bad = _call(5, feature=_noise(3000))
    try:
        assert ledger.write_salvaging([_call(4), bad]).rejected[0].call is bad
    finally:
        ledger.close()
    env = {"LLMMETER_DATABASE_URL": database_url, "LLMMETER_DATABASE_SCHEMA": pg_schema}
    listed = CliRunner().invoke(cli, ["db", "dead-letter", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert entry["span_id"] == bad.span_id and "index row" in entry["error"]
    still = CliRunner().invoke(cli, ["db", "dead-letter", "replay"], env=env)  # nothing fixed: still refused
    assert still.exit_code == 1 and "1 still refused" in still.output
    # the fix: the user shortens the value in the kept call (or changes the schema), then replays
    with psycopg.connect(database_url, options=f"-c search_path={pg_schema}", autocommit=True) as conn:
        conn.execute("UPDATE llm_calls_dead_letter SET call = jsonb_set(call::jsonb, '{feature}', '\"search\"')::text")
    replayed = CliRunner().invoke(cli, ["db", "dead-letter", "replay"], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert "1 replayed" in replayed.output
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls") == 2
    assert _count(database_url, pg_schema, "SELECT count(*) FROM llm_calls_dead_letter") == 0
