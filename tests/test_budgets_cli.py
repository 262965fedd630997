"""``llmmeter budget``: the monthly total in one command, scoped budgets, listing with spend, removal, errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.service import BackgroundCollector


def run(collector: BackgroundCollector, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["budget", *args, "--url", collector.url], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_budget_commands(collector: BackgroundCollector) -> None:
    code, out = run(collector, "500", "--json")
    assert code == 0, out
    total = json.loads(out)
    assert (total["name"], total["limit_usd"], total["period"], total["scope"]) == ("total", "500", "monthly", {})
    assert total["status"]["state"] == "ok"

    code, out = run(
        collector,
        "set",
        "--name=search-team",
        "--scope=feature=search",
        "--scope=model=gpt-4o",
        "--scope=model=o3",
        "--scope=tag.team=growth",
        "--period=weekly",
        "--limit=200",
        "--thresholds=50%,0.9",
        "--reset-day=monday",
        "--timezone=Europe/Berlin",
        "--json",
    )
    assert code == 0, out
    search = json.loads(out)
    assert search["scope"] == {"feature": "search", "model": ["gpt-4o", "o3"], "tags": {"team": "growth"}}
    assert (search["period"], search["reset_day"], search["timezone"]) == ("weekly", 1, "Europe/Berlin")
    assert search["thresholds"] == [0.5, 0.9]

    code, out = run(
        collector, "set", "--name=launch", "--limit=1000", "--period=fixed", "--start=2025-03-01", "--end=2025-03-07"
    )
    assert code == 0 and "budget launch: $1,000.00 fixed" in out

    code, out = run(collector, "list")
    assert code == 0, out
    for text in (
        "search-team",
        "feature=search, model=gpt-4o|o3, tag.team=growth",
        "$500.00",
        "2025-03-01..2025-03-07",
    ):
        assert text in out
    code, out = run(collector, "list", "--json")
    assert [b["name"] for b in json.loads(out)["budgets"]] == ["launch", "search-team", "total"]

    # bad input: a usage error (exit 2) naming the field
    code, out = run(collector, "set", "--name=x", "--limit=10", "--scope=colour=red")
    assert code == 2 and "scope.colour" in out
    code, out = run(collector, "set", "--name=x", "--limit=-3")
    assert code == 2 and "limit" in out
    code, out = run(collector, "set", "--name=x", "--limit=10", "--scope=nonsense")
    assert code == 2 and "key=value" in out
    code, out = run(collector, "lots")
    assert code == 2

    code, out = run(collector, "rm", "search-team")
    assert code == 0 and "deleted budget search-team" in out
    code, out = run(collector, "rm", "search-team")
    assert code == 1 and "404" in out
    code, out = run(collector, "reload")
    assert code == 1 and "LLMMETER_BUDGETS_FILE" in out
