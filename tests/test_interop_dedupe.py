"""Two instrumentations of one SDK in one app (captured by tests/interop/capture.py): one billable row per
provider call, at the true usage and price. Fails until the ledger deduplicates (issue 17); flip the mark then."""

from __future__ import annotations

import psycopg
import pytest

from llmmeter_collector.service import BackgroundCollector

from .interop.fixtures import load, replay
from .test_interop import _price, expected_usage

DUPLICATES = load(duplicates=True)
# Already one billable row: llmmeter's SDK marks the official openai-v2 span around its own non-billable.
BILLED_ONCE_TODAY = frozenset({"llmmeter-with-openai-v2/openai-plain"})
XFAIL = pytest.mark.xfail(strict=True, reason="dedupe not built yet")
CASES = [pytest.param(f, id=f.id, marks=() if f.id in BILLED_ONCE_TODAY else XFAIL) for f in DUPLICATES]


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
