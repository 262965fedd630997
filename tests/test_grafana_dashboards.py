"""The Grafana provisioning and dashboards are well formed: what Grafana would refuse or silently show empty.

Grafana cannot run here; ``test_grafana_queries.py`` runs every query against real Prometheus and Postgres.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DIMENSIONS = ("project", "environment", "provider", "model", "feature")
BUILTINS = {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s", "__range_ms", "__all"}
SQL_MACROS = {"__timeFilter", "__timeFrom", "__timeTo", "__timeGroupAlias", "__timeGroup", "__unixEpochFilter"}
NOT_MONEY = re.compile(r"cost_usd IS (NOT )?NULL|count\(cost_usd\)")  # tests on a cost, not amounts
MONEY_QUERY = re.compile(r"cost_usd|cost_\w+_usd|llmmeter_budget_(spent|limit|forecast)_usd")
# The issue's panel list, dashboard by dashboard (uid -> panel titles that must exist).
ISSUE_PANELS = {
    "llmmeter-cost-overview": [
        "Spend today", "Spend this week", "Spend this month", "Spend, all time", "Spend by model",
        "Spend by provider", "Daily spend by model", "Spend by feature", "Spend by project", "Tokens by class",
        "Cache hit rate", "Saved by caching (net)", "Unpriced calls in range", "Models without a price",
        "Error rate by model", "Error rate in range", "Retries in range", "Latency p50 / p90 / p99 by model",
        "Time to first chunk p50 / p90 / p99 by model",
    ],
    "llmmeter-budgets": [
        "Budget used", "Burn rate", "Forecast vs limit", "Spent, forecast and limit", "Current alerts",
    ],
    "llmmeter-attribution": [
        "Top users by cost", "Top sessions by cost", "Top features by cost", "Top projects by cost",
        "Cost per user per day (top 10 users)", "Experiment variants side by side",
    ],
    "llmmeter-model-comparison": [
        "Models side by side", "Cost per call", "Cost per 1k tokens", "Tokens per call",
        "Latency p50 / p90 / p99 by model", "Error rate in range by model", "Same prompt fingerprint across models",
    ],
    "llmmeter-calls": ["Most expensive calls"],
}  # fmt: skip
# Panels that show a fixed period by design (their title says which), not the picker's range.
FIXED_PERIOD = {"Spend, all time"}


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def query_text(target: dict[str, Any]) -> str:
    return str(target.get("expr") or target.get("rawSql") or "")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llmmeter_grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def provisioned_datasources() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            found[ds["uid"]] = ds["type"]
    return found


def test_committed_json_is_the_generator_output() -> None:
    rendered = generator().render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text(encoding="utf-8") == rendered[path.name], f"{path.name} is stale: run grafana/generate.py"


def test_generator_check_mode_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = generator()
    assert module.main(["--check"]) == 0
    setattr(module, "DASHBOARD_DIR", tmp_path)  # noqa: B010 - an empty directory: every dashboard is missing
    assert module.main(["--check"]) == 1
    assert "cost-overview.json" in capsys.readouterr().err


def test_five_dashboards_with_stable_unique_uids_in_utc() -> None:
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert sorted(uids) == sorted(ISSUE_PANELS)
    for path in DASHBOARDS:
        board = load(path)
        assert board["timezone"] == "utc", path.name
        assert board["time"]["to"] == "now"


def test_every_panel_the_issue_lists_exists() -> None:
    for path in DASHBOARDS:
        board = load(path)
        titles = {p["title"] for p in panels(board)}
        missing = [t for t in ISSUE_PANELS[board["uid"]] if t not in titles]
        assert not missing, f"{path.name} lacks {missing}"


def test_panel_ids_unique_and_grid_has_no_overlap() -> None:
    for path in DASHBOARDS:
        board = load(path)
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (path.name, p["title"])
            mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not mine & cells, f"{path.name}: {p['title']} overlaps another panel"
            cells |= mine


def datasource_of(board: dict[str, Any], ref: dict[str, str]) -> dict[str, str]:
    """A target's datasource as Grafana resolves it: ``${name}`` is the datasource variable's current value."""
    uid = ref["uid"]
    if uid.startswith("${"):
        (var,) = [v for v in board["templating"]["list"] if v["type"] == "datasource" and "${" + v["name"] + "}" == uid]
        assert var["query"] == ref["type"], (ref, var)  # the variable lists datasources of the target's type
        uid = var["current"]["value"]
    return {"type": ref["type"], "uid": uid}


def test_every_target_uses_a_provisioned_datasource_and_has_a_query() -> None:
    provisioned = provisioned_datasources()
    assert provisioned == {"llmmeter-prometheus": "prometheus", "llmmeter-postgres": "grafana-postgresql-datasource"}
    for path in DASHBOARDS:
        board = load(path)
        for p in panels(board):
            assert p["targets"], f"{path.name}: panel {p['title']!r} has no query"
            for t in p["targets"]:
                ds = datasource_of(board, t["datasource"])
                assert provisioned.get(ds["uid"]) == ds["type"], (path.name, p["title"], ds)
                assert query_text(t).strip(), (path.name, p["title"])
                assert ("expr" in t) == (ds["type"] == "prometheus")
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                ds = datasource_of(board, var["datasource"])
                assert provisioned.get(ds["uid"]) == ds["type"], var["name"]


def test_datasources_are_variables_so_the_boards_import_into_any_grafana() -> None:
    """No panel, query or variable names a datasource uid: each goes through the board's datasource variables,
    whose defaults are the provisioned datasources (another Grafana picks its own in the variables)."""
    for path in DASHBOARDS:
        board = load(path)
        variables = {v["name"]: v for v in board["templating"]["list"] if v["type"] == "datasource"}
        assert {n: (v["query"], v["current"]["value"]) for n, v in variables.items()} == {
            "prometheus": ("prometheus", "llmmeter-prometheus"),
            "postgres": ("grafana-postgresql-datasource", "llmmeter-postgres"),
        }
        refs = [p["datasource"] for p in panels(board) if p["datasource"]["uid"] != "-- Mixed --"]
        refs += [t["datasource"] for p in panels(board) for t in p["targets"]]
        refs += [v["datasource"] for v in board["templating"]["list"] if v["type"] == "query"]
        assert refs and all(ref["uid"] in ("${prometheus}", "${postgres}") for ref in refs), path.name
        assert "llmmeter-prometheus" not in json.dumps(board["panels"]) + json.dumps(board["templating"]["list"][2:])


def _links(board: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(panel title, field name, link) of every data link on a field override."""
    return [
        (p["title"], o["matcher"]["options"], link)
        for p in panels(board)
        for o in p["fieldConfig"]["overrides"]
        for prop in o["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]


def test_data_links_open_the_model_comparison_and_the_trace() -> None:
    boards = {load(path)["uid"]: load(path) for path in DASHBOARDS}
    calls = _links(boards["llmmeter-calls"])
    assert {(title, field) for title, field, _ in calls} == {
        (title, field)
        for title in ("Most expensive calls", "Latest failed calls", "Latest unpriced calls")
        for field in ("model", "trace_id")
    }
    trace_url = next(v for v in boards["llmmeter-calls"]["templating"]["list"] if v["name"] == "trace_url")
    assert trace_url["type"] == "textbox" and trace_url["query"].startswith("http")
    for board in boards.values():
        defined = {v["name"] for v in board["templating"]["list"]}
        for title, field, link in _links(board):
            url = link["url"]
            if field == "model":  # the model comparison board, filtered to the clicked model, same range
                target = re.match(r"/d/([\w-]+)\?", url)
                assert target and target.group(1) in boards, (title, url)
                assert "var-model=${__value.raw}" in url and "${__url_time_range}" in url
                assert "model" in {v["name"] for v in boards[target.group(1)]["templating"]["list"]}
            else:
                assert url == "${trace_url}${__value.raw}" and link["targetBlank"], (title, url)
            assert _used_variables(url) - {"__value", "__url_time_range"} <= defined, (title, url)
    assert any(field == "model" for _, field, _ in _links(boards["llmmeter-cost-overview"]))


def _used_variables(text: str) -> set[str]:
    names = set()
    for m in re.finditer(r"\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?::[^}]+)?\}", text):
        names.add(m.group(1) or m.group(2) or m.group(3))
    return names


def test_every_variable_used_is_defined() -> None:
    for path in DASHBOARDS:
        board = load(path)
        defined = {v["name"] for v in board["templating"]["list"]}
        assert set(DIMENSIONS) <= defined, path.name
        texts = [query_text(t) for p in panels(board) for t in p["targets"]]
        queries = [v.get("query", "") for v in board["templating"]["list"]]
        texts += [q if isinstance(q, str) else q["query"] for q in queries]
        for text in texts:
            unknown = {n for n in _used_variables(text) if n not in defined and n not in BUILTINS}
            unknown -= SQL_MACROS
            assert not unknown, f"{path.name}: {unknown} used but not defined in {text[:80]}"


def test_sql_uses_dimension_variables_as_anchored_regexes() -> None:
    """The variables' All value is ".*": in SQL only ``col ~ '^(${var:regex})$'`` is correct with it."""
    for path in DASHBOARDS:
        board = load(path)
        sqls = [t["rawSql"] for p in panels(board) for t in p["targets"] if "rawSql" in t]
        sqls += [v["query"] for v in board["templating"]["list"] if v.get("datasource", {}).get("uid") == "${postgres}"]
        for text in sqls:
            for dim in DIMENSIONS:
                uses = re.findall(r"\$\{?" + dim + r"\b[^}\s']*\}?", text)
                assert all(u == "${" + dim + ":regex}" for u in uses), (path.name, dim, uses)
                assert text.count("${" + dim + ":regex}") == text.count(f"{dim} ~ '^(${{{dim}:regex}})$'")


def test_prometheus_queries_filter_by_the_dimension_labels() -> None:
    for path in DASHBOARDS:
        for p in panels(load(path)):
            for t in p["targets"]:
                expr = t.get("expr", "")
                if "llmmeter_cost_usd_total" in expr or "llmmeter_calls_total" in expr:
                    for dim in ("project", "provider", "model", "feature"):
                        assert f'{dim}=~"${dim}"' in expr, (p["title"], dim)
                    assert "environment" in p["description"], p["title"]  # says it is not filtered by it


def test_every_sql_panel_follows_the_time_picker() -> None:
    for path in DASHBOARDS:
        for p in panels(load(path)):
            for t in p["targets"]:
                if "rawSql" in t and p["title"] not in FIXED_PERIOD:
                    assert "$__timeFilter(" in t["rawSql"], f"{path.name}: {p['title']} ignores the time picker"
            if p["title"] in FIXED_PERIOD:
                assert "time picker" in p["description"]


def test_money_panels_are_in_us_dollars() -> None:
    for path in DASHBOARDS:
        for p in panels(load(path)):
            texts = [NOT_MONEY.sub("", query_text(t)) for t in p["targets"]]
            if not any(MONEY_QUERY.search(text) for text in texts):
                continue
            config = p["fieldConfig"]
            units = [config["defaults"].get("unit")]
            units += [prop["value"] for o in config["overrides"] for prop in o["properties"] if prop["id"] == "unit"]
            assert "currencyUSD" in units, f"{path.name}: {p['title']} shows money without currencyUSD"
            if p["type"] == "table":
                money_columns = re.compile(config["overrides"][0]["matcher"]["options"])
                aliases = re.findall(r"\bAS (\w+)", " ".join(query_text(t) for t in p["targets"]))
                aliases += ["spent", "forecast", "limit"] if "llmmeter_budget" in query_text(p["targets"][0]) else []
                assert any(money_columns.fullmatch(a) for a in aliases), p["title"]


def test_dashboard_provider_points_at_the_mounted_directory() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "llmmeter.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["folder"] == "llmmeter"


def test_datasource_credentials_come_from_the_environment_and_are_documented() -> None:
    text = (GRAFANA / "provisioning" / "datasources" / "llmmeter.yml").read_text()
    config = yaml.safe_load(text)
    postgres = next(d for d in config["datasources"] if d["type"] == "grafana-postgresql-datasource")
    assert postgres["secureJsonData"]["password"].startswith("${")
    assert postgres["user"].startswith("${")
    readme = (ROOT / "docs" / "dashboards.md").read_text()
    for name in sorted(set(re.findall(r"\$\{(\w+)\}", text))):
        assert name in readme, f"{name} is not documented in docs/dashboards.md"
