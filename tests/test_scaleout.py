"""Scale-out: several collector processes share one Postgres. Two collectors on the same database and schema
receive overlapping and distinct exports at the same time (as behind a load balancer with client retries);
every call is counted exactly once in the ledger and in every rollup."""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

from .lifecycle import Call, export, make_spans, totals


def test_two_collectors_ingesting_the_same_and_different_spans_count_each_call_once(
    settings: Settings, database_url: str, pg_schema: str
) -> None:
    now = datetime.now(timezone.utc)
    rng = random.Random(9)
    calls = [
        Call(now - timedelta(minutes=rng.randrange(0, 600)), rng.randrange(1, 5000), rng.randrange(1, 2000),
             rng.choice(["search", "support", "summarise"]))
        for _ in range(1200)
    ]  # fmt: skip
    spans = make_spans(calls)
    batches = [spans[i : i + 50] for i in range(0, len(spans), 50)]  # 24 exports
    settings = dataclasses.replace(settings, retention_interval_seconds=0)

    with BackgroundCollector(settings) as a, BackgroundCollector(settings) as b:
        # Every export goes to one collector; half of them are also sent to the other one (a retry that landed
        # elsewhere) and a quarter are sent twice more, all from eight threads at once.
        jobs: list[tuple[str, list]] = []  # type: ignore[type-arg]
        for i, batch in enumerate(batches):
            first, second = (a.url, b.url) if i % 2 else (b.url, a.url)
            jobs.append((first, batch))
            if i % 2 == 0:
                jobs.append((second, batch))
            if i % 4 == 0:
                jobs += [(first, batch), (second, batch[::-1])]
        rng.shuffle(jobs)
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def worker(share: list[tuple[str, list]]) -> None:  # type: ignore[type-arg]
            start.wait()
            try:
                for url, batch in share:
                    export(url, batch)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(jobs[n::8],)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)

        expected = (
            len(calls),
            sum(c.input_tokens for c in calls),
            sum(c.output_tokens for c in calls),
            sum((c.cost for c in calls), Decimal(0)),
        )
        got = totals(database_url, pg_schema)
        for table in ("llm_calls", "llm_rollup_minute", "llm_rollup_hour", "llm_rollup_user_day"):
            assert got[table] == expected, table

        # both collectors answer the same exact totals
        for running in (a, b):
            summary = httpx.get(running.url + "/api/v1/summary", params={"period": "all"}).json()
            assert summary["calls"] == len(calls)
            assert Decimal(summary["spend"]["all"]) == expected[3]
        by_feature = {
            row["feature"]: Decimal(row["cost_usd"])
            for row in httpx.get(a.url + "/api/v1/summary", params={"period": "all"}).json()["by_feature"]
        }
        assert by_feature == {
            f: sum((c.cost for c in calls if c.feature == f), Decimal(0)) for f in ("search", "support", "summarise")
        }
