"""Retroactive repricing (ledger/reprice.py): stored calls priced again from their usage, calls and rollups
together, exactly, resumably, without blocking ingest; over REST and ``llmmeter prices reprice``."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from llmmeter_collector.ledger import reprice, storage
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.pricing import PriceCatalog

DAY1 = datetime(2026, 11, 2, 10, tzinfo=timezone.utc)
DAY2 = datetime(2026, 11, 3, 15, tzinfo=timezone.utc)
V1 = """version: 1
models:
  - model: acme-1
    input_per_mtok: 1
    output_per_mtok: 2
"""
# A negotiated price from 2026-11-03 on: only the second day's acme-1 calls change (input $1 -> $0.50).
V2 = (
    V1.replace("    output_per_mtok: 2\n", "    output_per_mtok: 2\n    effective_to: 2026-11-03\n")
    + """  - model: acme-1
    input_per_mtok: 0.5
    output_per_mtok: 2
    effective_from: 2026-11-03
"""
)
# And acme-2, stored unpriced so far, gets a price.
V3 = V2 + "  - model: acme-2\n    input_per_mtok: 10\n    output_per_mtok: 10\n"


def _call(n: int, at: datetime, model: str, user: str = "u1", feature: str = "chat") -> LlmCall:
    start = int(at.timestamp()) * 10**9 + n * 1_000_000
    return LlmCall(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", start_ns=start, end_ns=start + 2 * 10**9, provider="acme",
        operation="chat", request_model=model, project="shop" if n % 2 else "labs", feature=feature, user_id=user,
        usage=Usage(input_tokens=1000 + n, output_tokens=100), experiment="exp" if n % 3 else "",
        variant=f"v{n % 2}", prompt_name="summarise" if n % 4 else "", template_fingerprint=f"{n % 3:016x}",
        prompt_simhash=f"{n % 5:016x}" if n % 2 else "",
    )  # fmt: skip


def _fill(database_url: str, schema: str, catalog: PriceCatalog, calls: list[LlmCall]) -> None:
    storage.migrate(database_url, schema)
    ledger = storage.Ledger(database_url, schema)
    try:
        for call in calls:
            call.cost = catalog.price(call)
        ledger.write(calls)
    finally:
        ledger.close()


def _calls(n: int = 40) -> list[LlmCall]:
    return [_call(i, DAY1 if i < n // 2 else DAY2, "acme-2" if i % 5 == 0 else "acme-1") for i in range(1, n + 1)]


def rollups_agree(conn: psycopg.Connection[Any]) -> None:
    """Every rollup equals the same sums computed from the calls."""
    dims = "project, environment, provider, model, feature, operation, status"
    prompt = "project, feature, prompt_name, prompt_version, template_fingerprint, model"
    for table, bucket, keys, where in (
        ("llm_rollup_minute", "minute", dims, "TRUE"),
        ("llm_rollup_hour", "hour", dims, "TRUE"),
        ("llm_rollup_user_day", "day", "project, user_id, feature", "TRUE"),
        ("llm_rollup_prompt_day", "day", prompt, "prompt_name <> '' OR template_fingerprint <> ''"),
        ("llm_rollup_experiment_day", "day", "project, experiment, variant", "experiment <> ''"),
    ):
        from_calls = conn.execute(
            f"SELECT date_trunc('{bucket}', ts), {keys}, count(*), count(*) FILTER (WHERE cost_usd IS NULL),"
            f" coalesce(sum(cost_usd), 0) FROM llm_calls WHERE {where} GROUP BY 1, {keys} ORDER BY 1, {keys}"
        ).fetchall()
        stored = conn.execute(
            f"SELECT bucket, {keys}, calls, unpriced_calls, cost_usd FROM {table} WHERE calls > 0 ORDER BY 1, {keys}"
        ).fetchall()
        assert stored == from_calls, table
    squares = conn.execute(
        "SELECT coalesce(sum(cost_usd * cost_usd), 0) FROM llm_calls WHERE experiment <> ''"
    ).fetchone()
    assert squares == conn.execute("SELECT coalesce(sum(cost_sq), 0) FROM llm_rollup_experiment_day").fetchone()
    users = "experiment, variant, project, user_id"
    assert (
        conn.execute(
            f"SELECT {users}, count(*), count(*) FILTER (WHERE cost_usd IS NULL), coalesce(sum(cost_usd), 0)"
            f" FROM llm_calls WHERE experiment <> '' AND user_id <> '' GROUP BY {users} ORDER BY {users}"
        ).fetchall()
        == conn.execute(
            f"SELECT {users}, calls, unpriced_calls, cost_usd FROM llm_rollup_experiment_user WHERE calls > 0"
            f" ORDER BY {users}"
        ).fetchall()
    )
    signatures = conn.execute(
        f"SELECT date_trunc('month', ts), {storage.SIGNATURE_KEYS}, count(*), coalesce(sum(cost_usd), 0),"
        f" {storage.signature_bits()}"
        " FROM (SELECT *, ('x' || prompt_simhash)::bit(64) AS sig FROM llm_calls WHERE prompt_simhash <> '') c"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
    ).fetchall()
    assert (
        signatures
        and signatures
        == conn.execute(
            f"SELECT bucket, {storage.SIGNATURE_KEYS}, calls, cost_usd, bits FROM llm_rollup_signature_day"
            " WHERE calls > 0 ORDER BY 1, 2, 3, 4, 5"
        ).fetchall()
    )


def _costs(conn: psycopg.Connection[Any]) -> dict[str, Decimal | None]:
    return {r[0]: r[1] for r in conn.execute("SELECT span_id, cost_usd FROM llm_calls")}


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(V1)
    return path


def _spec(**kw: Any) -> reprice.RepriceSpec:
    return reprice.RepriceSpec(
        datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 5, tzinfo=timezone.utc), **kw
    )


def test_a_dry_run_shows_the_difference_per_day_and_model_and_changes_nothing(
    database_url: str, pg_schema: str, prices: Path
) -> None:
    catalog = PriceCatalog(prices, use_catalog=False)
    _fill(database_url, pg_schema, catalog, _calls())
    prices.write_text(V2)
    catalog.reload()
    repricer = reprice.Repricer(database_url, pg_schema, catalog, batch_calls=7)
    with storage.connect(database_url, pg_schema) as conn:
        before = _costs(conn)
        run_id = repricer.run(_spec(dry_run=True), "test")
        assert _costs(conn) == before
        run = reprice.get_run(conn, run_id, None)
    assert run is not None and run["status"] == "done" and run["dry_run"] and run["examined"] == 40
    # day 2 has 20 calls, 4 of them acme-2 (unpriced, still unpriced): 16 acme-1 calls change, $0.50/M less input
    assert [(c["day"], c["model"], c["calls"]) for c in run["changes"]] == [("2026-11-03", "acme-1", 16)]
    saved = sum(Decimal(1000 + i) for i in range(21, 41) if i % 5) * Decimal("0.5") / 10**6
    assert Decimal(run["changes"][0]["usd_difference"]) == -saved == Decimal(run["usd_difference"])


def test_a_reprice_updates_calls_and_rollups_exactly_and_twice_changes_nothing(
    database_url: str, pg_schema: str, prices: Path
) -> None:
    catalog = PriceCatalog(prices, use_catalog=False)
    _fill(database_url, pg_schema, catalog, _calls())
    prices.write_text(V2)
    catalog.reload()
    counted: list[tuple[str, int, Decimal, Decimal]] = []
    repricer = reprice.Repricer(database_url, pg_schema, catalog, batch_calls=7, on_batch=lambda *a: counted.append(a))
    with storage.connect(database_url, pg_schema) as conn:
        first = repricer.run(_spec(), "key 1 (root)")
        costs = _costs(conn)
        rollups_agree(conn)
        again = repricer.run(_spec(), "key 1 (root)")
        assert _costs(conn) == costs
        rollups_agree(conn)
        one, two = reprice.get_run(conn, first, None), reprice.get_run(conn, again, None)
        history = reprice.list_runs(conn, None)
    assert one is not None and two is not None
    assert one["changed"] == 16 and two["changed"] == 0 and two["changes"] == []
    for i in range(1, 41):
        expected = (
            None if i % 5 == 0 else Decimal(1000 + i) * (Decimal("0.5") if i > 20 else 1) / 10**6 + Decimal("0.0002")
        )
        assert costs[f"{i:016x}"] == expected, i
    assert [r["id"] for r in history] == [again, first] and history[1]["actor"] == "key 1 (root)"
    assert sum(c[1] for c in counted) == 16 and all(c[0] == "manual" for c in counted)


def test_filters_limit_the_run(database_url: str, pg_schema: str, prices: Path) -> None:
    catalog = PriceCatalog(prices, use_catalog=False)
    _fill(database_url, pg_schema, catalog, _calls())
    prices.write_text(V2)
    catalog.reload()
    repricer = reprice.Repricer(database_url, pg_schema, catalog)
    with storage.connect(database_url, pg_schema) as conn:
        run = reprice.get_run(conn, repricer.run(_spec(project="shop"), "t"), None)
        assert run is not None and run["changed"] == 8  # the odd (shop) acme-1 calls of day 2
        run = reprice.get_run(conn, repricer.run(_spec(projects=("labs",), model="acme-1"), "t"), None)
        assert run is not None and run["changed"] == 8
        rollups_agree(conn)
        # a key limited to projects sees only runs limited to projects within its own
        assert [r["project"] for r in reprice.list_runs(conn, ("labs",))] == [""]
        assert reprice.list_runs(conn, ("shop",)) == []


def test_unpriced_calls_are_priced_when_their_model_gets_a_price(
    database_url: str, pg_schema: str, prices: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = PriceCatalog(prices, use_catalog=False)
    _fill(database_url, pg_schema, catalog, _calls())
    counted: list[tuple[str, int, Decimal, Decimal]] = []
    repricer = reprice.Repricer(database_url, pg_schema, catalog, on_batch=lambda *a: counted.append(a))
    assert repricer.price_new_models() == []  # acme-2 has no price yet
    prices.write_text(V3)
    catalog.reload()
    caplog.set_level("INFO", "llmmeter.collector")
    (run_id,) = repricer.price_new_models()
    assert repricer.wait(run_id)
    with storage.connect(database_url, pg_schema) as conn:
        rollups_agree(conn)
        assert conn.execute("SELECT count(*) FROM llm_calls WHERE cost_usd IS NULL").fetchone() == (0,)
        run = reprice.get_run(conn, run_id, None)
    dollars = sum(Decimal(1000 + i + 100) * 10 / 10**6 for i in range(5, 41, 5))
    assert run is not None and run["reason"] == "new_price" and run["newly_priced"] == 8
    assert Decimal(run["usd_after"]) == dollars and run["actor"] == "collector"
    assert f"priced 8 calls of acme/acme-2 stored unpriced: ${dollars:f}" in caplog.text
    assert counted == [("new_price", 8, Decimal(0), dollars)]
    assert repricer.price_new_models() == []  # nothing unpriced left: no new run


def test_an_interrupted_run_resumes_where_it_stopped_and_counts_nothing_twice(
    database_url: str, pg_schema: str, prices: Path
) -> None:
    catalog = PriceCatalog(prices, use_catalog=False)
    _fill(database_url, pg_schema, catalog, _calls())
    prices.write_text(V2)
    catalog.reload()
    stopping = reprice.Repricer(database_url, pg_schema, catalog, batch_calls=5)
    # the collector stops after the first batch that changed calls: the run stays "running" at its cursor
    stopping._on_batch = lambda *a: stopping._stop.set()
    run_id = stopping.run(_spec(), "t")
    with storage.connect(database_url, pg_schema) as conn:
        half = reprice.get_run(conn, run_id, None)
        assert half is not None and half["status"] == "running" and 0 < half["changed"] < 16
        rollups_agree(conn)  # a batch commits calls, rollups and progress together
    resumed = reprice.Repricer(database_url, pg_schema, catalog, batch_calls=5)
    assert resumed.resume_interrupted() == [run_id]
    assert resumed.wait(run_id)
    with storage.connect(database_url, pg_schema) as conn:
        done = reprice.get_run(conn, run_id, None)
        rollups_agree(conn)
    assert done is not None and done["status"] == "done" and done["changed"] == 16 and done["examined"] == 40
    assert sum(c["calls"] for c in done["changes"]) == 16


def test_ingest_goes_on_during_a_reprice(database_url: str, pg_schema: str, prices: Path) -> None:
    catalog = PriceCatalog(prices, use_catalog=False)
    _fill(database_url, pg_schema, catalog, _calls())
    prices.write_text(V2)
    catalog.reload()
    ledger = storage.Ledger(database_url, pg_schema)
    written: list[LlmCall] = []

    def ingest(*_: object) -> None:  # between batches, a writer adds calls inside the run's range
        call = _call(100 + len(written), DAY2 + timedelta(hours=1), "acme-1", user="late")
        call.cost = catalog.price(call)
        written.extend(ledger.write([call]))

    try:
        repricer = reprice.Repricer(database_url, pg_schema, catalog, batch_calls=3, on_batch=ingest)
        repricer.run(_spec(), "t")
    finally:
        ledger.close()
    assert written
    with storage.connect(database_url, pg_schema) as conn:
        rollups_agree(conn)
        late = conn.execute("SELECT count(*) FROM llm_calls WHERE user_id = 'late'").fetchone()
    assert late == (len(written),)


# ---- over REST and the CLI, in a running collector -------------------------------------------------------------


def test_reprice_over_the_cli_and_rest_with_history_metrics_and_clear_errors(
    database_url: str, pg_schema: str, prices: Path
) -> None:
    from click.testing import CliRunner

    from llmmeter_collector.cli import cli
    from llmmeter_collector.config import Settings
    from llmmeter_collector.service import BackgroundCollector

    catalog = PriceCatalog(prices, use_catalog=False)
    _fill(database_url, pg_schema, catalog, _calls())
    settings = Settings(database_url=database_url, database_schema=pg_schema, http_port=0, prices_file=str(prices))
    with BackgroundCollector(settings, grpc=False) as running:
        url = running.url
        invoke = lambda *args: CliRunner().invoke(cli, [*args, "--url", url])  # noqa: E731
        prices.write_text(V2)
        assert invoke("prices", "reload").exit_code == 0
        dry = invoke("prices", "reprice", "--from", "2026-11-01", "--to", "2026-11-04", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "would change 16 of 40 calls" in dry.output and "2026-11-03" in dry.output and "acme-1" in dry.output
        with storage.connect(database_url, pg_schema) as conn:
            assert conn.execute("SELECT count(*) FROM llm_calls WHERE price_source = 'override'").fetchone() == (32,)
            untouched = _costs(conn)
        # a date is a whole UTC day: --to 2026-11-02 leaves the 3rd alone
        first_day = invoke("prices", "reprice", "--from", "2026-11-02", "--to", "2026-11-02")
        assert first_day.exit_code == 0 and "changed 0 of 19 calls" in first_day.output
        done = invoke("prices", "reprice", "--from", "2026-11-01", "--to", "2026-11-03", "--json")
        assert done.exit_code == 0, done.output
        run = json.loads(done.output)
        assert run["status"] == "done" and run["changed"] == 16 and run["actor"] == "no key"
        with storage.connect(database_url, pg_schema) as conn:
            rollups_agree(conn)
            assert _costs(conn) != untouched
        summary = httpx.get(url + "/api/v1/summary", params={"period": "all"}).json()
        with storage.connect(database_url, pg_schema) as conn:
            total = conn.execute("SELECT sum(cost_usd) FROM llm_calls").fetchone()
        assert total is not None and Decimal(summary["spend"]["all"]) == total[0]
        history = CliRunner().invoke(cli, ["prices", "history", "--url", url], env={"COLUMNS": "200"})
        assert history.exit_code == 0 and "(dry run)" in history.output and "no key" in history.output
        one = invoke("prices", "history", str(run["id"]))
        assert one.exit_code == 0 and "acme-1" in one.output and "16" in one.output

        # a price for the unpriced model: its calls are priced at the reload, counted in the metrics
        prices.write_text(V3)
        assert invoke("prices", "reload").exit_code == 0
        for _ in range(100):
            runs = httpx.get(url + "/api/v1/prices/reprices").json()["runs"]
            if runs[0]["reason"] == "new_price" and runs[0]["status"] == "done":
                break
            time.sleep(0.05)
        assert runs[0]["newly_priced"] == 8 and runs[0]["actor"] == "collector"
        metrics = httpx.get(url + "/metrics").text
        assert 'llmmeter_repriced_calls_total{reason="new_price"} 8.0' in metrics
        assert 'llmmeter_repriced_calls_total{reason="manual"} 16.0' in metrics
        assert 'llmmeter_repriced_usd_total{direction="removed",reason="manual"}' in metrics

        for args, message in (
            (("--from", "2026-11-05", "--to", "2026-11-01"), "to: must not be before from"),
            (("--from", "yesterday", "--to", "2026-11-01"), "must be a date"),
        ):
            bad = invoke("prices", "reprice", *args)
            assert bad.exit_code != 0 and message in bad.output and "Traceback" not in bad.output, bad.output
        answer = httpx.post(url + "/api/v1/prices/reprice", params={"from": "2026-13-01", "to": "2026-11-02"})
        assert answer.status_code == 400 and answer.json()["field"] == "from"
        future = invoke("prices", "reprice", "--from", "2999-01-01", "--to", "2999-01-02")
        assert future.exit_code == 1 and "from: is in the future" in future.output
        answer = httpx.post(url + "/api/v1/prices/reprice", params={"to": "2026-11-02"})
        assert answer.status_code == 400 and answer.json()["field"] == "from"
        assert httpx.get(url + "/api/v1/prices/reprices/999").status_code == 404
        assert httpx.get(url + "/api/v1/prices/reprices/x").json()["field"] == "run_id"
        missing = invoke("prices", "history", "999")
        assert missing.exit_code == 1 and "no reprice run 999" in missing.output
