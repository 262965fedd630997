"""Two instrumentations of one SDK in one app (captured by tests/interop/capture.py): one billable row per
provider call, at the true usage and price, whichever instrumentation traced it (the ledger's identity rule,
ingest/identity.py), in one export and in two exports in either order."""

from __future__ import annotations

import psycopg
import pytest

from llmmeter_collector.service import BackgroundCollector

from .interop.fixtures import load, replay
from .test_interop import _price, expected_usage

DUPLICATES = load(duplicates=True)
# llmmeter's SDK (as captured) read no usage from a stream the official openai-v2 had wrapped, and marked openai-v2's
# span, which has it, non-billable (so that anthropic's own span under llmmeter's is never priced twice, which the
# marker is for): the call is stored once, with its usage marked missing (test below), until llmmeter reads it.
STREAM_UNDER_OPENAI_V2 = "llmmeter-with-openai-v2/openai-stream"
CASES = [pytest.param(f, id=f.id) for f in DUPLICATES if f.id != STREAM_UNDER_OPENAI_V2]


@pytest.mark.parametrize("fixture", CASES)
def test_a_call_traced_twice_is_billed_once(collector: BackgroundCollector, fixture) -> None:  # type: ignore[no-untyped-def]
    replay(collector.url, fixture)
    with psycopg.connect(collector.collector.dsn, options=f"-c search_path={collector.collector.schema}") as conn:
        rows = conn.execute(
            "SELECT input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd"
            " FROM llm_calls WHERE cost_usd IS NOT NULL AND usage_missing = false"
        ).fetchall()
        total = conn.execute("SELECT sum(cost_usd) FROM llm_calls").fetchone()
    tokens = expected_usage(fixture)
    price = _price(collector, fixture, tokens)
    assert len(rows) == fixture.truth["provider_calls"] == 1
    assert rows[0][:5] == (
        tokens["input"],
        tokens["output"],
        tokens["cache_read"],
        tokens["cache_write"],
        tokens["reasoning"],
    )
    assert total is not None and total[0] == price  # the duplicate spans add nothing to the spend


def test_the_duplicate_pairs_were_captured() -> None:
    assert {f.peer for f in DUPLICATES} == {
        "llmmeter-with-openai-v2",
        "openllmetry-with-anthropic-sdk",
        "openinference-with-anthropic-sdk",
    }


def test_a_stream_whose_usage_only_the_other_instrumentation_read_is_one_call_marked_usage_missing(
    collector: BackgroundCollector,
) -> None:
    (fixture,) = [f for f in DUPLICATES if f.id == STREAM_UNDER_OPENAI_V2]
    replay(collector.url, fixture)
    with psycopg.connect(collector.collector.dsn, options=f"-c search_path={collector.collector.schema}") as conn:
        rows = conn.execute("SELECT scope, usage_missing, input_tokens FROM llm_calls").fetchall()
    assert rows == [("llmmeter", True, 0)]  # one call, visibly without usage (status, doctor), never a silent $0
