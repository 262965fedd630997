"""The shipped Prometheus and Alertmanager files: valid for the real tools (Debian's promtool 2.42 and amtool
0.25), every alert unit-tested firing and quiet, named and annotated by the conventions, routed as documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmmeter_collector import semconv

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


def run(*args: str, stdout_only: bool = False) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout if stdout_only else done.stdout + done.stderr


def rule_groups() -> list[dict[str, Any]]:
    groups = []
    for path in sorted((PROM / "rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def test_promtool_accepts_the_config_and_the_rules(tmp_path: Path) -> None:
    # the scrape job reads the /metrics token from secrets/metrics_token, which the stack writes at start:
    # check a copy of the directory holding such a file (promtool insists the file exists)
    config_dir = tmp_path / "prometheus"
    shutil.copytree(PROM, config_dir)
    (config_dir / "secrets" / "metrics_token").write_text("a-token")
    out = run(PROMTOOL, "check", "config", str(config_dir / "prometheus.yml"))
    assert "2 rule files found" in out
    run(PROMTOOL, "check", "rules", *map(str, sorted((PROM / "rules").glob("*.yml"))))


def test_promtool_unit_tests_pass() -> None:
    out = run(PROMTOOL, "test", "rules", *map(str, sorted((PROM / "tests").glob("*.yml"))))
    assert "FAILED" not in out


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in (PROM / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a quiet test"


def test_names_labels_and_annotations_follow_the_conventions() -> None:
    readme_anchors = {  # the runbooks page of the docs site (tests/test_docs.py checks the URLs resolve)
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (ROOT / "docs" / "runbooks.md").read_text().splitlines()
        if line.startswith("#")
    }
    for alert in alerts():
        assert re.fullmatch(r"LLM[A-Z][A-Za-z]+", alert["alert"])
        assert alert["labels"]["severity"] in ("critical", "warning", "info")
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"]
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert anchor == alert["alert"].lower() and anchor in readme_anchors, f"no docs/runbooks.md section #{anchor}"
    for group in rule_groups():
        for rule in group["rules"]:
            if "record" in rule:
                assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]
    text = (PROM / "rules" / "alerts.yml").read_text()
    for name in (
        semconv.PROM_BUDGET_UTILIZATION,
        semconv.PROM_BUDGET_THRESHOLD,
        semconv.PROM_BUDGET_FORECAST,
        semconv.PROM_BUDGET_LIMIT,
        semconv.PROM_SPOOL_BYTES,
        semconv.PROM_QUEUE_DEPTH,
        semconv.PROM_POSTGRES_UP,
        semconv.PROM_EXPORTS_REFUSED + "_total",
        semconv.PROM_SPANS_REJECTED + "_total",
        semconv.PROM_RECONCILE_DRIFT_RATIO,
    ):
        assert name in text, f"{name} (semconv) is not what the alerts use"


def test_amtool_accepts_the_alertmanager_config() -> None:
    out = run(AMTOOL, "check-config", str(PROM / "alertmanager.yml"))
    assert "2 inhibit rules" in out


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=LLMBudgetExceeded", "budget=search-team", "severity=critical"], "budget-critical"),
        (["alertname=LLMBudgetWarning", "budget=search-team", "severity=warning"], "budget-owners"),
        (["alertname=LLMCollectorDown", "severity=critical"], "oncall"),
        (["alertname=LLMCostSpike", "project=shop", "severity=warning"], "team"),
        (["alertname=Other", "severity=info"], "webhook"),
    ],
)
def test_routes_by_budget_and_severity(labels: list[str], receiver: str) -> None:
    out = run(
        AMTOOL, "config", "routes", "test", f"--config.file={PROM / 'alertmanager.yml'}", *labels, stdout_only=True
    )
    assert out.strip() == receiver
