"""Every dashboard query runs against the real Prometheus and Postgres the pipeline filled, as Grafana sends it.

Traffic: the real ``openai`` and ``anthropic`` SDKs, instrumented by llmmeter, call the fake provider; spans go
over OTLP/HTTP to a collector that prices them into a Postgres schema and exposes /metrics; a real Prometheus
scrapes it every second with the repository's rule files, and the collector evaluates two budgets. The same
set of calls is sent twice, with a scrape in between, so that every rate and histogram has changed once.

Then each panel's query is expanded the way Grafana expands it (``grafana_macros``) and run: PromQL against
Prometheus (over the last 15 minutes: the test's Prometheus only holds minutes of data), SQL against
Postgres as the read-only ``llmmeter_grafana`` role (over the dashboard's default range or the panel's own
relative time). Every query must succeed and return data; the money panels must return exactly the dollars
the calls cost at the providers' published prices.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter
from llmmeter_collector.config import Settings
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .grafana_macros import TimeRange, Variable, expand_promql, expand_sql, panel_range
from .realprom import Prometheus

# the anthropic SDK warns about dated model ids; the price catalog still prices them
pytestmark = [
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
    pytest.mark.real_clock,  # queries a real Prometheus, which keeps the real time
]
ROOT = Path(__file__).resolve().parent.parent
M = Decimal(10) ** 6
# USD per 1M tokens (input, cached input, output), from openai.com/api/pricing and anthropic.com/pricing
PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
    "claude-sonnet-4-5-20250929": (Decimal("3.00"), Decimal("0.30"), Decimal("15.00")),
}
SAME_PROMPT = "compare this prompt across two models"
PROM_RANGE = "now-15m"


@dataclass(frozen=True)
class Call:
    project: str
    environment: str
    feature: str
    user: str
    session: str
    provider: str
    model: str
    prompt: str
    input: int = 0
    cached: int = 0
    output: int = 0
    experiment: str | None = None
    variant: str | None = None
    stream: bool = False
    retried: bool = False  # one provider 500 first; the SDK retries it
    fails: bool = False  # a provider 500 with no retry: the call raises
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def cost(self) -> Decimal | None:
        """At published prices; None when unpriced; a failed call without usage costs 0."""
        if self.fails:
            return Decimal(0)
        if self.model not in PRICES:
            return None
        inp, cached, out = PRICES[self.model]
        return ((self.input - self.cached) * inp + self.cached * cached + self.output * out) / M

    @property
    def cache_saving(self) -> Decimal:
        if self.model not in PRICES:
            return Decimal(0)
        inp, cached, _ = PRICES[self.model]
        return self.cached * (inp - cached) / M


GROWTH, CARE = {"team": "growth"}, {"team": "care"}
CALLS = [
    Call("shop", "prod", "search", "u1", "s1", "openai", "gpt-4o-mini", "find red shoes", 1000, 0, 200,
         retried=True, tags=GROWTH),
    Call("shop", "prod", "search", "u2", "s2", "openai", "gpt-4o-mini", "find blue shoes", 3000, 0, 20,
         stream=True, tags=GROWTH),
    Call("shop", "prod", "chat", "u1", "s1", "openai", "gpt-4o", "a long conversation", 10000, 8000, 1000,
         tags=GROWTH),
    Call("shop", "staging", "chat", "u3", "s3", "openai", "gpt-4o", "variant a prompt", 2000, 0, 100,
         experiment="prompt-v2", variant="a", tags=GROWTH),
    Call("shop", "staging", "chat", "u3", "s4", "openai", "gpt-4o-mini", "variant b prompt", 2000, 0, 100,
         experiment="prompt-v2", variant="b", tags=GROWTH),
    Call("support", "prod", "triage", "u4", "s5", "openai", "gpt-4o-mini", "triage ticket one", fails=True,
         tags=CARE),
    Call("support", "prod", "triage", "u4", "s5", "openai", "acme-llm-1", "triage ticket two", 100, 0, 10,
         tags=CARE),
    Call("support", "prod", "triage", "u2", "s6", "anthropic", "claude-sonnet-4-5-20250929", SAME_PROMPT, 5000, 4000,
         300, tags=CARE),
    Call("support", "prod", "triage", "u2", "s6", "openai", "gpt-4o-mini", SAME_PROMPT, 5000, 4000, 300, tags=CARE),
]  # fmt: skip
SENT = CALLS + CALLS  # the set is sent twice


def total(calls: list[Call] = SENT, **where: Any) -> Decimal:
    return sum((c.cost or Decimal(0) for c in calls if all(getattr(c, k) == v for k, v in where.items())), Decimal(0))


def send(call: Call, fake: FakeProvider) -> None:
    usage = {"input_tokens": call.input, "output_tokens": call.output}
    if call.cached:
        usage["cached_tokens"] = call.cached
    headers = {"x-fake-usage": json.dumps(usage)}
    messages: Any = [{"role": "user", "content": call.prompt}]
    attrs = {"project": call.project, "environment": call.environment, "feature": call.feature,
             "user_id": call.user, "session_id": call.session, "experiment": call.experiment,
             "variant": call.variant, "tags": call.tags}  # fmt: skip
    with llmmeter.attributes(**attrs):
        if call.provider == "anthropic":
            client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x")
            client.messages.create(model=call.model, max_tokens=1024, messages=messages, extra_headers=headers)
            return
        if call.fails:
            fake.fail_next(status=500, count=1)
            with pytest.raises(openai.InternalServerError):
                openai.OpenAI(base_url=fake.openai_base_url, api_key="x", max_retries=0).chat.completions.create(
                    model=call.model, messages=messages
                )
            return
        client_ = openai.OpenAI(base_url=fake.openai_base_url, api_key="x", max_retries=2)
        if call.retried:
            fake.fail_next(status=500, count=1)
        if call.stream:
            stream = client_.chat.completions.create(
                model=call.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=headers,
            )
            for _ in stream:
                pass
            return
        client_.chat.completions.create(model=call.model, messages=messages, extra_headers=headers)


@dataclass
class Pipeline:
    prometheus: Prometheus
    database_url: str
    schema: str
    spans: InMemorySpanExporter
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def ledger(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, options=f"-c search_path={self.schema}") as conn:
            return list(conn.execute(sql).fetchall())


BUDGETS_YAML = """
budgets:
  - name: total
    limit: 0.05
    period: monthly
  - name: search
    limit: 1
    period: monthly
    scope: {feature: search}
"""


@pytest.fixture(scope="module")
def pipeline(database_url: str, fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("grafana")
    budgets_file = workdir / "budgets.yaml"
    budgets_file.write_text(BUDGETS_YAML)
    schema = f"t_grafana_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        database_url=database_url,
        database_schema=schema,
        http_port=0,
        budgets_file=str(budgets_file),
        budgets_refresh_seconds=1,
    )
    spans = InMemorySpanExporter()
    rules = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    llmmeter.instrument(configure_export=False)
    try:
        with BackgroundCollector(settings) as collector:
            otlp = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
            memory = export_to(spans)
            target = collector.url.removeprefix("http://")
            try:
                with Prometheus(workdir, scrape_targets=[target], rule_files=rules, interval="1s") as prom:
                    for phase in (1, 2):
                        fake.reset()
                        for call in CALLS:
                            send(call, fake)
                        prom.wait_for(f"sum(llmmeter_calls_total) == {phase * len(CALLS)}")
                    prom.wait_for(f"llmmeter_budget_spent_usd{{budget='total'}} >= {float(total()) - 1e-9}")
                    prom.wait_for('ALERTS{alertname="LLMBudgetExceeded", budget="total", alertstate="firing"}')
                    # a few budget samples after the last change, so deriv() and rate() windows hold two of them
                    prom.wait_for("count_over_time(llmmeter_budget_spent_usd{budget='total'}[1m]) >= 3")
                    yield Pipeline(prom, database_url, schema, spans)
            finally:
                stop_export(otlp)
                stop_export(memory)
    finally:
        llmmeter.uninstrument()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# --- running panels ----------------------------------------------------------------------------------------


def dashboard(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "grafana" / "dashboards" / name).read_text()))


def panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in board["panels"] if p.get("title") == title)


def variables(board: dict[str, Any], **selected: Any) -> dict[str, Variable]:
    result = {}
    for definition in board["templating"]["list"]:
        var = Variable.from_dashboard(definition)
        if definition["name"] in selected:
            var.selected = selected[definition["name"]]
        result[var.name] = var
    return result


def run_sql(
    pipe: Pipeline, board: dict[str, Any], p: dict[str, Any], ref: str = "A", **selected: Any
) -> list[dict[str, Any]]:
    """One SQL target as Grafana runs it, as the read-only role; rows as dicts."""
    target = next(t for t in p["targets"] if t["refId"] == ref)
    time_range = panel_range(board["time"]["from"], pipe.now, p.get("timeFrom"))
    query = expand_sql(target["rawSql"], variables(board, **selected), time_range)
    with psycopg.connect(pipe.database_url, user="llmmeter_grafana", options=f"-c search_path={pipe.schema}") as conn:
        cursor = conn.execute(query)
        names = [c.name for c in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_prom(pipe: Pipeline, target: dict[str, Any], board: dict[str, Any], **selected: Any) -> list[dict[str, Any]]:
    time_range = panel_range(PROM_RANGE, datetime.now(timezone.utc))
    q = expand_promql(
        target["expr"], variables(board, **selected), time_range, instant=target["instant"], scrape_interval_s=1
    )
    if q.instant:
        return pipe.prometheus.query(q.expr, at=q.end)
    return pipe.prometheus.query_range(q.expr, q.start, q.end, step=f"{q.step:g}s")


def has_numbers(result: list[dict[str, Any]]) -> bool:
    values = [v for s in result for _, v in ([s["value"]] if "value" in s else s["values"])]
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values)


def all_panels() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        found += [(path.name, board, p) for p in board["panels"] if p["type"] != "row"]
    return found


def close(a: Decimal | None, b: Decimal) -> bool:
    """Equal up to Postgres' numeric division scale (a quotient that does not terminate is rounded)."""
    return a is not None and abs(a - b) < Decimal("1e-15")


def by(rows: list[dict[str, Any]], key: str, value: str) -> dict[Any, Any]:
    return {r[key]: r[value] for r in rows}


# --- every query, every dashboard --------------------------------------------------------------------------


def test_every_prometheus_query_runs_and_returns_data(pipeline: Pipeline) -> None:
    ran = 0
    for name, board, p in all_panels():
        for target in p["targets"]:
            if "expr" not in target:
                continue
            result = run_prom(pipeline, target, board)
            assert result, f"{name}: {p['title']} ({target['refId']}) returned nothing: {target['expr']}"
            assert has_numbers(result), f"{name}: {p['title']} ({target['refId']}) has only NaN"
            ran += 1
    assert ran >= 25


def test_every_sql_query_runs_as_the_read_only_role_and_returns_rows(pipeline: Pipeline) -> None:
    ran = 0
    for name, board, p in all_panels():
        for target in p["targets"]:
            if "rawSql" in target:
                rows = run_sql(pipeline, board, p, target["refId"])
                assert rows, f"{name}: {p['title']} returned no rows"
                ran += 1
    assert ran >= 30


def test_variable_queries_list_what_was_sent(pipeline: Pipeline) -> None:
    board = dashboard("cost-overview.json")
    expected = {
        "project": {"shop", "support"},
        "environment": {"prod", "staging"},
        "provider": {"openai", "anthropic"},
        "model": {c.model for c in CALLS},
        "feature": {"search", "chat", "triage"},
    }
    time_range = panel_range(board["time"]["from"], pipeline.now)
    for definition in board["templating"]["list"]:
        if definition["type"] == "datasource":
            continue
        rows = run_variable(pipeline, board, definition, time_range)
        assert {r["__value"] for r in rows} == expected[definition["name"]]
    feature = next(v for v in board["templating"]["list"] if v["name"] == "feature")
    chained = run_variable(pipeline, board, feature, time_range, project=["support"])
    assert [r["__value"] for r in chained] == ["triage"]

    budget_var = next(v for v in dashboard("budgets.json")["templating"]["list"] if v["name"] == "budget")
    assert budget_var["query"]["query"] == "label_values(llmmeter_budget_limit_usd, budget)"
    values = httpx.get(
        pipeline.prometheus.url + "/api/v1/label/budget/values", params={"match[]": "llmmeter_budget_limit_usd"}
    ).json()
    assert values["status"] == "success" and set(values["data"]) == {"total", "search"}


def run_variable(
    pipe: Pipeline, board: dict[str, Any], definition: dict[str, Any], time_range: TimeRange, **selected: Any
) -> list[dict[str, Any]]:
    query = expand_sql(definition["query"], variables(board, **selected), time_range)
    with psycopg.connect(pipe.database_url, user="llmmeter_grafana", options=f"-c search_path={pipe.schema}") as conn:
        cursor = conn.execute(query)
        names = [c.name for c in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# --- the numbers: 1. Cost overview -------------------------------------------------------------------------


def test_cost_overview_spend_figures_are_exact(pipeline: Pipeline) -> None:
    board = dashboard("cost-overview.json")
    ledger = pipeline.ledger("SELECT ts, cost_usd FROM llm_calls")
    assert len(ledger) == len(SENT)

    def since(spec: str) -> Decimal:
        start = panel_range("now-1d", pipeline.now, spec).start
        return sum((c or Decimal(0) for ts, c in ledger if ts >= start), Decimal(0))

    assert total() == Decimal("0.082844")  # the arithmetic below is checked against a hand sum
    for title, spec in (("Spend today", "now/d"), ("Spend this week", "now/w"), ("Spend this month", "now/M")):
        (row,) = run_sql(pipeline, board, panel(board, title))
        assert row["spend"] == since(spec), title
    for title in ("Spend, all time", "Spend in selected range"):
        (row,) = run_sql(pipeline, board, panel(board, title))
        assert row["spend"] == total(), title
    (row,) = run_sql(pipeline, board, panel(board, "Spend in selected range"), environment=["staging"])
    assert row["spend"] == total(environment="staging")

    assert by(run_sql(pipeline, board, panel(board, "Spend by model")), "model", "spend") == {
        m: total(model=m) for m in PRICES
    }
    assert by(run_sql(pipeline, board, panel(board, "Spend by provider")), "provider", "spend") == {
        "openai": total(provider="openai"),
        "anthropic": total(provider="anthropic"),
    }
    assert by(run_sql(pipeline, board, panel(board, "Spend by project")), "project", "spend") == {
        "shop": total(project="shop"),
        "support": total(project="support"),
    }
    features = run_sql(pipeline, board, panel(board, "Spend by feature"))
    assert by(features, "feature", "spend") == {f: total(feature=f) for f in ("search", "chat", "triage")}
    assert [r["feature"] for r in features] == ["chat", "triage", "search"]  # most expensive first
    shop_only = run_sql(pipeline, board, panel(board, "Spend by feature"), project=["shop"])
    assert by(shop_only, "feature", "spend") == {"search": total(feature="search"), "chat": total(feature="chat")}

    daily = run_sql(pipeline, board, panel(board, "Daily spend by model"))
    per_model: dict[str, Decimal] = defaultdict(Decimal)
    for r in daily:
        per_model[r["metric"]] += r["spend"]
    assert dict(per_model) == {m: total(model=m) for m in PRICES}


def test_cost_overview_unpriced_tokens_cache_errors(pipeline: Pipeline) -> None:
    board = dashboard("cost-overview.json")
    (row,) = run_sql(pipeline, board, panel(board, "Unpriced calls in range"))
    assert row["unpriced"] == 2
    (row,) = run_sql(pipeline, board, panel(board, "Models without a price"))
    assert (row["provider"], row["model"], row["calls"], row["input_tokens"]) == ("openai", "acme-llm-1", 2, 200)

    tokens = by(run_sql(pipeline, board, panel(board, "Tokens by class")), "class", "tokens")
    assert tokens == {
        "input (uncached)": sum(c.input - c.cached for c in SENT),
        "cache read": sum(c.cached for c in SENT),
        "cache write": 0,
        "output (visible)": sum(c.output for c in SENT),
        "reasoning": 0,
    }
    (row,) = run_sql(pipeline, board, panel(board, "Cache hit rate"))
    assert close(row["cache_hit_rate"], Decimal(sum(c.cached for c in SENT)) / sum(c.input for c in SENT))
    (row,) = run_sql(pipeline, board, panel(board, "Saved by caching (net)"))
    assert row["saved"] == sum((c.cache_saving for c in SENT), Decimal(0)) == Decimal("0.0422")

    (row,) = run_sql(pipeline, board, panel(board, "Error rate in range"))
    assert close(row["error_rate"], Decimal(sum(c.fails for c in SENT)) / len(SENT))
    (row,) = run_sql(pipeline, board, panel(board, "Retries in range"))
    assert row["retries"] == sum(c.retried for c in SENT) == 2
    series = run_sql(pipeline, board, panel(board, "Failed calls and retries"))
    assert sum(r["failed_calls"] for r in series) == 2 and sum(r["retries"] for r in series) == 2


def test_prometheus_panels_filter_by_the_variables(pipeline: Pipeline) -> None:
    board = dashboard("budgets.json")
    target = panel(board, "Spend rate by project")["targets"][0]
    assert {s["metric"]["project"] for s in run_prom(pipeline, target, board)} == {"shop", "support"}
    only_shop = run_prom(pipeline, target, board, project=["shop"])
    assert {s["metric"]["project"] for s in only_shop} == {"shop"}

    overview = dashboard("cost-overview.json")
    latency = panel(overview, "Latency p50 / p90 / p99 by model")["targets"][0]
    models = {s["metric"]["model"] for s in run_prom(pipeline, latency, overview)}
    assert models == {c.model for c in CALLS}
    ttfc = panel(overview, "Time to first chunk p50 / p90 / p99 by model")["targets"][0]
    assert {s["metric"]["model"] for s in run_prom(pipeline, ttfc, overview)} == {"gpt-4o-mini"}  # the stream


# --- 2. Budgets --------------------------------------------------------------------------------------------


def test_budget_panels_show_the_configured_budgets(pipeline: Pipeline) -> None:
    board = dashboard("budgets.json")
    gauge = run_prom(pipeline, panel(board, "Budget used")["targets"][0], board)
    used = {s["metric"]["budget"]: Decimal(s["value"][1]) for s in gauge}
    assert abs(used["total"] - total() / Decimal("0.05")) <= Decimal("1e-6")
    assert abs(used["search"] - total(feature="search")) <= Decimal("1e-6")
    exceeded = run_prom(pipeline, panel(board, "Budgets exceeded")["targets"][0], board)
    assert exceeded[0]["value"][1] == "1"
    alerts = run_prom(pipeline, panel(board, "Current alerts")["targets"][0], board)
    assert any(a["metric"]["alertname"] == "LLMBudgetExceeded" and a["metric"]["budget"] == "total" for a in alerts)
    only_search = run_prom(pipeline, panel(board, "Budget used")["targets"][0], board, budget=["search"])
    assert [s["metric"]["budget"] for s in only_search] == ["search"]
    rows = run_sql(pipeline, board, panel(board, "Spend in range by project and environment"))
    assert {(r["project"], r["environment"]): r["spend"] for r in rows} == {
        ("shop", "prod"): total(project="shop", environment="prod"),
        ("shop", "staging"): total(project="shop", environment="staging"),
        ("support", "prod"): total(project="support"),
    }


# --- 3. Attribution ----------------------------------------------------------------------------------------


def test_attribution_users_sessions_tags_experiments(pipeline: Pipeline) -> None:
    board = dashboard("attribution.json")
    users = run_sql(pipeline, board, panel(board, "Top users by cost"))
    assert by(users, "user_id", "cost") == {u: total(user=u) for u in ("u1", "u2", "u3", "u4")}
    assert [r["user_id"] for r in users] == ["u1", "u2", "u3", "u4"]
    assert by(users, "user_id", "unpriced_calls")["u4"] == 2
    sessions = run_sql(pipeline, board, panel(board, "Top sessions by cost"))
    assert by(sessions, "session_id", "cost") == {s: total(session=s) for s in {c.session for c in CALLS}}
    assert by(sessions, "session_id", "users")["s6"] == "u2"
    features = run_sql(pipeline, board, panel(board, "Top features by cost"))
    assert by(features, "feature", "cost") == {f: total(feature=f) for f in ("search", "chat", "triage")}
    projects = run_sql(pipeline, board, panel(board, "Top projects by cost"))
    assert by(projects, "project", "cost") == {p: total(project=p) for p in ("shop", "support")}
    tags = run_sql(pipeline, board, panel(board, "Spend by tag"))
    assert {(r["tag"], r["value"]): r["cost"] for r in tags} == {
        ("team", "growth"): total(project="shop"),
        ("team", "care"): total(project="support"),
    }
    daily = run_sql(pipeline, board, panel(board, "Cost per user per day (top 10 users)"))
    per_user: dict[str, Decimal] = defaultdict(Decimal)
    for r in daily:
        per_user[r["metric"]] += r["cost"]
    assert dict(per_user) == {u: total(user=u) for u in ("u1", "u2", "u3", "u4")}

    variants = run_sql(pipeline, board, panel(board, "Experiment variants side by side"))
    assert [(r["experiment"], r["variant"], r["calls"], r["users"]) for r in variants] == [
        ("prompt-v2", "a", 2, 1),
        ("prompt-v2", "b", 2, 1),
    ]
    assert [r["cost"] for r in variants] == [total(variant="a"), total(variant="b")]
    assert [r["cost_per_call"] for r in variants] == [total(variant="a") / 2, total(variant="b") / 2]


def test_prompt_versions_panel_and_their_annotations(pipeline: Pipeline) -> None:
    board = dashboard("attribution.json")
    rows = run_sql(pipeline, board, panel(board, "Cost per call by prompt version"))
    prompts = {r["metric"].split(" ")[0] for r in rows}
    assert prompts == {"search", "chat", "triage"}  # every call of the SDK has a template; unnamed: its feature
    (annotation,) = [a for a in board["annotations"]["list"] if a["name"] == "Prompt versions"]
    time_range = panel_range(board["time"]["from"], pipeline.now)
    query = expand_sql(annotation["target"]["rawSql"], variables(board), time_range)
    with psycopg.connect(
        pipeline.database_url, user="llmmeter_grafana", options=f"-c search_path={pipeline.schema}"
    ) as c:
        marks = c.execute(query).fetchall()
    first = pipeline.ledger("SELECT feature, min(ts) FROM llm_calls GROUP BY 1")
    assert sorted((text.split(" ")[0], time) for time, text, _ in marks) == sorted(
        (feature, ts) for feature, ts in first
    )  # one mark per version, when it first appeared
    only_chat = expand_sql(annotation["target"]["rawSql"], variables(board, feature=["chat"]), time_range)
    with psycopg.connect(
        pipeline.database_url, user="llmmeter_grafana", options=f"-c search_path={pipeline.schema}"
    ) as c:
        assert {text.split(" ")[0] for _, text, _ in c.execute(only_chat).fetchall()} == {"chat"}


# --- 4. Model comparison -----------------------------------------------------------------------------------


def test_model_comparison_per_model_and_same_prompt(pipeline: Pipeline) -> None:
    board = dashboard("model-comparison.json")
    rows = {r["model"]: r for r in run_sql(pipeline, board, panel(board, "Models side by side"))}
    assert set(rows) == {c.model for c in CALLS}
    for model in PRICES:
        calls = [c for c in SENT if c.model == model]
        priced_tokens = sum(c.input + c.output for c in calls)
        assert rows[model]["calls"] == len(calls)
        assert rows[model]["cost"] == total(model=model)
        assert rows[model]["cost_per_call"] == total(model=model) / len(calls)
        assert close(rows[model]["cost_per_1k_tokens"], 1000 * total(model=model) / priced_tokens)
    assert rows["acme-llm-1"]["cost_per_call"] is None and rows["acme-llm-1"]["unpriced_calls"] == 2
    assert rows["gpt-4o-mini"]["error_rate"] == Decimal(2) / 10

    per_call = by(run_sql(pipeline, board, panel(board, "Cost per call")), "model", "cost_per_call")
    assert per_call == {m: rows[m]["cost_per_call"] for m in PRICES}  # the unpriced model has no bar

    same = run_sql(pipeline, board, panel(board, "Same prompt fingerprint across models"))
    (fingerprint,) = {r[0] for r in pipeline.ledger("SELECT prompt_fingerprint FROM llm_calls WHERE model = "
                                                     "'claude-sonnet-4-5-20250929'")}  # fmt: skip
    assert fingerprint
    assert [(r["fingerprint"], r["model"], r["calls"], r["cost_per_call"]) for r in same] == [
        (fingerprint, "gpt-4o-mini", 2, total(model="gpt-4o-mini", prompt=SAME_PROMPT) / 2),
        (fingerprint, "claude-sonnet-4-5-20250929", 2, total(model="claude-sonnet-4-5-20250929") / 2),
    ]


# --- 5. Calls explorer -------------------------------------------------------------------------------------


def test_calls_explorer_lists_the_most_expensive_calls_with_their_trace_ids(pipeline: Pipeline) -> None:
    board = dashboard("calls-explorer.json")
    top = panel(board, "Most expensive calls")
    rows = run_sql(pipeline, board, top)
    assert len(rows) == len(SENT)
    priced = [r["cost"] for r in rows if r["cost"] is not None]
    assert priced == sorted(priced, reverse=True) and all(r["cost"] is None for r in rows[len(priced) :])
    assert priced == sorted((c.cost for c in SENT if c.cost is not None), reverse=True)
    expensive = {
        format(s.context.trace_id, "032x")
        for s in pipeline.spans.get_finished_spans()
        if s.name == "chat gpt-4o" and (s.attributes or {}).get("gen_ai.usage.input_tokens") == 10000
    }
    assert len(expensive) == 2 and {r["trace_id"] for r in rows[:2]} == expensive
    assert rows[0]["feature"] == "chat" and rows[0]["user_id"] == "u1" and rows[0]["cache_read_tokens"] == 8000

    one = sorted(expensive)[0]
    assert [r["trace_id"] for r in run_sql(pipeline, board, top, trace_id=one)] == [one]
    assert {r["user_id"] for r in run_sql(pipeline, board, top, user_id="u3")} == {"u3"}
    assert run_sql(pipeline, board, top, user_id="nobody' OR '1'='1") == []  # quotes are escaped

    failed = run_sql(pipeline, board, panel(board, "Latest failed calls"))
    assert [(r["model"], r["error_type"]) for r in failed] == [("gpt-4o-mini", "InternalServerError")] * 2
    unpriced = run_sql(pipeline, board, panel(board, "Latest unpriced calls"))
    assert [r["model"] for r in unpriced] == ["acme-llm-1"] * 2
    statuses = run_sql(pipeline, board, panel(board, "Calls by status"))
    counts: dict[str, int] = defaultdict(int)
    for r in statuses:
        counts[r["metric"]] += r["calls"]
    assert dict(counts) == {"ok": 16, "error": 2}


def test_variables_all_value_expands_to_every_value(pipeline: Pipeline) -> None:
    """Selecting every value explicitly gives what "All" gives: the regex form holds for multi-values."""
    board = dashboard("cost-overview.json")
    p = panel(board, "Spend by project")
    explicit = run_sql(pipeline, board, p, project=["shop", "support"], provider=["openai", "anthropic"])
    assert explicit == run_sql(pipeline, board, p)
