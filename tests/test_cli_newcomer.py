"""The first ten minutes with the CLI (issue #20): each rough edge as a user meets it, against a real collector
and real subprocesses: one clear line and a documented exit code instead of a traceback, filters kept across
pages, relative dates, hints for misspelt names, bounded budgets, "unpriced" never "$0.00", whole model names
at 80 columns, --version, build and process metrics, and `llmmeter db seed`."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.cli.filters import parse_when
from llmmeter_collector.config import Settings
from llmmeter_collector.devtools import datagen
from llmmeter_collector.devtools.datagen import Workload
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.service import BackgroundCollector

LLMMETER = str(Path(sys.executable).parent / "llmmeter")


@pytest.fixture(autouse=True)
def _config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "llmmeter" / "config.toml"
    monkeypatch.setenv("LLMMETER_CONFIG", str(path))
    for name in ("LLMMETER_URL", "LLMMETER_API_KEY", "LLMMETER_DATABASE_URL", "LLMMETER_DATABASE_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    return path


def _write(collector: BackgroundCollector, calls: list) -> list:  # type: ignore[type-arg]
    core = collector.collector
    for c in calls:
        c.cost = core.catalog.price(c)
    ledger = Ledger(core.dsn, core.schema)
    ledger.write(calls)
    ledger.close()
    return calls


def _seed(collector: BackgroundCollector, count: int = 600, **kwargs: object) -> list:  # type: ignore[type-arg]
    return _write(collector, list(datagen.calls(count, now=datetime.now(timezone.utc), days=20, **kwargs)))  # type: ignore[arg-type]


def _run(
    *args: str, env: dict[str, str] | None = None, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    base["LLMMETER_CONFIG"] = os.environ["LLMMETER_CONFIG"]
    return subprocess.run(
        [LLMMETER, *args], env={**base, **(env or {})}, capture_output=True, text=True, stdin=stdin, timeout=120
    )


def _one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error output is one line starting with "Error:", and no traceback anywhere."""
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- 1. Python version ------------------------------------------------------------------------------------------


def test_the_collector_on_python_310_says_which_version_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "version_info", (3, 10, 13, "final", 0))
    for args in (["serve"], ["db", "partitions"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 7, result.output
        assert "needs Python 3.11 or newer; this is Python 3.10.13" in result.output
        assert "SDK (import llmmeter)" in result.output


def _fake_python(directory: Path, name: str, version: str) -> None:
    script = directory / name
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.exit({version} < (3, 11))' \"$@\"\n")
    script.chmod(0o755)


def test_make_picks_a_python_311_or_newer_and_names_the_version_when_there_is_none(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "sh"):
        (bin_dir / tool).symlink_to(
            subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        )
    _fake_python(bin_dir, "python3", "(3, 10)")  # a python3 that is 3.10: refused
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    venv = tmp_path / "venv"
    refused = subprocess.run(
        ["make", "-C", str(repo), f"VENV={venv}", f"{venv}/.installed-dev"], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "llmmeter needs Python 3.11 or newer for the collector" in refused.stderr
    assert not venv.exists()
    _fake_python(bin_dir, "python3.12", "(3, 12)")
    plan = subprocess.run(
        ["make", "-n", "-C", str(repo), f"VENV={venv}", f"{venv}/.installed-dev"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert f"python3.12 -m venv {venv}" in plan.stdout, plan.stdout + plan.stderr


# ---- 3. one clear line and an exit code --------------------------------------------------------------------------


def test_serve_with_a_bad_database_url_is_one_line_and_exit_code_5() -> None:
    # a server that answers and refuses (no such database) or no URL at all; a server that does not answer is an
    # outage: the collector starts into its spool (tests/test_start_without_postgres.py)
    for url in ("postgresql://postgres@127.0.0.1:5432/llmmeter_no_such_database", "not a url"):
        result = _run("serve", "--port", "0", "--database-url", url, env={"LLMMETER_GRPC_PORT": "0"})
        assert result.returncode == 5, result.stderr
        assert "cannot use the database" in _one_clear_line(result)
    partitions = _run("db", "partitions", "--database-url", "not a url")
    assert partitions.returncode == 5 and "LLMMETER_DATABASE_URL" in _one_clear_line(partitions)


def test_serve_on_a_busy_port_is_exit_code_4_naming_the_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        http = _run("serve", "--port", str(port), env={"LLMMETER_GRPC_PORT": "0"})
        grpc = _run("serve", "--port", "0", env={"LLMMETER_GRPC_PORT": str(port)})
    assert http.returncode == 4 and f"OTLP/HTTP and the API on 127.0.0.1:{port}" in _one_clear_line(http)
    assert grpc.returncode == 4 and f"OTLP/gRPC on 127.0.0.1:{port}" in _one_clear_line(grpc)


def test_export_to_a_missing_directory_is_exit_code_6_and_a_failed_export_leaves_no_file(
    collector: BackgroundCollector, tmp_path: Path
) -> None:
    _seed(collector, 50)
    missing = _run("export", "--url", collector.url, "-o", str(tmp_path / "nope" / "x.csv"))
    assert missing.returncode == 6 and "No such file or directory" in _one_clear_line(missing)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    down = _run("export", "--url", f"http://127.0.0.1:{_closed_port()}", "-o", str(out_dir / "x.csv"))
    assert down.returncode == 1 and "cannot reach the collector" in _one_clear_line(down)
    refused = _run("export", "--url", collector.url, "--since", "bad", "-o", str(out_dir / "x.csv"))
    assert refused.returncode == 2
    bad = _run("export", "--url", collector.url, "--min-cost", "lots", "-o", str(out_dir / "x.csv"))
    assert bad.returncode == 1 and "min_cost" in _one_clear_line(bad)
    assert list(out_dir.iterdir()) == []  # no 0-byte x.csv, no .part left over
    ok = _run("export", "--url", collector.url, "-o", str(out_dir / "x.csv"))
    assert ok.returncode == 0 and [p.name for p in out_dir.iterdir()] == ["x.csv"]
    assert len((out_dir / "x.csv").read_text().splitlines()) == 51


class _HtmlPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            b"<!doctype html><html><head><title>Welcome to nginx!</title></head><body>"
            + b"x" * 5000
            + b"</body></html>"
        )
        self.send_response(404 if "api" in self.path else 200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_that_is_not_a_collector_gets_its_status_and_a_hint_not_its_page(html_server: str) -> None:
    for args in (["status"], ["calls"], ["budget", "list"], ["init", "--api-key", ""]):
        result = _run(*args, "--url", html_server)
        line = _one_clear_line(result)
        assert result.returncode == 1, (args, result.stderr)
        assert "404" in line and "text/html" in line and "is --url the collector's address" in line, line
        assert "<html" not in result.stderr + result.stdout and "nginx" not in line


def test_init_without_a_terminal_says_how_to_give_the_key(collector: BackgroundCollector, _config_file: Path) -> None:
    result = _run("init", "--url", collector.url)
    assert result.returncode == 2
    assert "GetPassWarning" not in result.stderr and "Aborted" not in result.stderr
    assert "give it with --api-key (or LLMMETER_API_KEY" in result.stderr
    assert not _config_file.exists()
    from_env = _run(
        "init", "--url", collector.url, env={"LLMMETER_API_KEY": collector.collector.keys.create("ci", "viewer")}
    )
    assert from_env.returncode == 0, from_env.stderr
    assert "api_key" in _config_file.read_text()


# ---- 4. calls: the next page, relative dates ---------------------------------------------------------------------


def test_the_next_page_command_keeps_the_filters_and_fits_on_one_line(collector: BackgroundCollector) -> None:
    _seed(collector)
    args = ["calls", "--url", collector.url, "--model", "gpt-4o-mini", "--since", "7d", "--limit", "5"]
    first = CliRunner().invoke(cli, args, env={"COLUMNS": "80"}, terminal_width=80)
    assert first.exit_code == 0, first.output
    lines = [line for line in first.output.splitlines() if line.startswith("next page: ")]
    assert len(lines) == 1  # the whole command on one line, however narrow the terminal
    command = shlex.split(lines[0].removeprefix("next page: "))
    assert command[:2] == ["llmmeter", "calls"] and "--model" in command and "--since" in command
    second = CliRunner().invoke(cli, [*command[1:], "--json"])
    assert second.exit_code == 0, second.output
    page = json.loads(second.output)["calls"]
    assert len(page) == 5 and {c["model"] for c in page} == {"gpt-4o-mini"}
    week_ago = datetime.now(timezone.utc) - timedelta(days=7, minutes=5)
    assert all(datetime.fromisoformat(c["ts"]) >= week_ago for c in page)


def test_relative_dates_mean_what_they_say() -> None:
    now = datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
    assert parse_when("today", now) == datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert parse_when("yesterday", now) == datetime(2026, 12, 2, tzinfo=timezone.utc)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("12h", now) == now - timedelta(hours=12)
    assert parse_when("30m", now) == now - timedelta(minutes=30)
    assert parse_when("2w", now) == now - timedelta(weeks=2)
    assert parse_when("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_when("2026-11-01T10:00:00+02:00", now) == datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="yesterday"):
        parse_when("last tuesday", now)


def test_since_yesterday_on_calls_and_export(collector: BackgroundCollector) -> None:
    calls = _seed(collector)
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    expected = {c.span_id for c in calls if c.start_ns >= midnight.timestamp() * 1e9}
    export = CliRunner().invoke(cli, ["export", "--url", collector.url, "--since", "yesterday", "--format", "jsonl"])
    assert export.exit_code == 0, export.output
    assert {json.loads(line)["span_id"] for line in export.stdout.splitlines()} == expected
    bad = CliRunner().invoke(cli, ["calls", "--url", collector.url, "--since", "last tuesday"])
    assert bad.exit_code == 2 and "30m, 12h, 7d" in bad.output


# ---- 5. unknown names --------------------------------------------------------------------------------------------


def test_an_unknown_model_project_or_feature_says_nothing_matched_and_suggests(collector: BackgroundCollector) -> None:
    _seed(collector, 300)
    calls = CliRunner().invoke(cli, ["calls", "--url", collector.url, "--model", "gpt-4o-mni"])
    assert calls.exit_code == 0
    assert "No calls match" in calls.stdout
    assert "no model named 'gpt-4o-mni' has any calls; did you mean gpt-4o-mini" in calls.stderr
    status = CliRunner().invoke(cli, ["status", "--url", collector.url, "--project", "shp"])
    assert "no project named 'shp' has any calls; did you mean shop" in status.stderr
    forecast = CliRunner().invoke(cli, ["forecast", "--url", collector.url, "--feature", "serch"])
    assert "no feature named 'serch' has any calls; did you mean search" in forecast.stderr
    known = CliRunner().invoke(cli, ["calls", "--url", collector.url, "--model", "gpt-4o-mini"])
    assert known.stderr == "" and "gpt-4o-mini" in known.stdout


def test_the_dimensions_endpoint_stays_inside_a_keys_projects(collector: BackgroundCollector) -> None:
    _seed(collector, 300)
    key = collector.collector.keys.create("support-only", "viewer", ["support"])
    body = httpx.get(collector.url + "/api/v1/dimensions", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["projects"] == ["support"]
    assert "gpt-4o-mini" not in body["models"] and "claude-haiku-4-5" in body["models"]


# ---- 6. budget amounts -------------------------------------------------------------------------------------------


def test_budget_amounts_are_bounded_and_explained(collector: BackgroundCollector) -> None:
    for amount, message in (
        ("1e400", "at most $1,000,000,000"),
        ("-5", "must be more than $0"),
        ("0", "must be more than $0"),
        ("abc", "expected an amount in USD"),
        ("12.345", "whole cents"),
        ("inf", "finite"),
    ):
        result = CliRunner().invoke(cli, ["budget", amount, "--url", collector.url])
        assert result.exit_code == 2, (amount, result.output)
        assert message in result.output, (amount, result.output)
        assert "No such option" not in result.output and "No such command" not in result.output
    scoped = CliRunner().invoke(cli, ["budget", "set", "--name", "x", "--limit", "1e12", "--url", collector.url])
    assert scoped.exit_code == 2 and "at most" in scoped.output
    ok = CliRunner().invoke(cli, ["budget", "$1,500.50", "--url", collector.url, "--json"])
    assert ok.exit_code == 0, ok.output
    assert Decimal(json.loads(ok.output)["limit_usd"]) == Decimal("1500.50")


# ---- 7. report: unpriced, thousands ------------------------------------------------------------------------------


def test_report_shows_unpriced_models_as_unpriced_and_large_counts_with_separators(
    collector: BackgroundCollector,
) -> None:
    workloads = (
        Workload("lab", "local", "openai", "acme-finetune-7b", 1, (100, 200), (10, 20), error_rate=0),
        Workload("lab", "chat", "openai", "gpt-4o-mini", 3, (100, 200), (10, 20), error_rate=0),
    )
    now = datetime.now(timezone.utc)
    calls = list(datagen.calls(4000, now=now, days=1, workloads=workloads))
    _write(collector, [c for c in calls if c.start_ns >= now.replace(day=1, hour=0, minute=0).timestamp() * 1e9])
    result = CliRunner().invoke(cli, ["report", "--url", collector.url, "--period", "month", "--current"])
    assert result.exit_code == 0, result.output
    data = json.loads(
        CliRunner().invoke(cli, ["report", "--url", collector.url, "--period", "month", "--current", "--json"]).output
    )
    unpriced = next(r for r in data["by_model"] if r["model"] == "acme-finetune-7b")
    line = next(line for line in result.output.splitlines() if "acme-finetune-7b:" in line)
    assert "unpriced" in line and "$0.00" not in line
    assert f"({unpriced['calls']:,} calls)" in line
    assert f"over {data['calls']:,} calls" in result.output and data["calls"] >= 1000  # 1,234 not 1234


# ---- 8. names at 80 columns --------------------------------------------------------------------------------------


def test_similar_model_names_stay_whole_at_80_columns(collector: BackgroundCollector) -> None:
    workloads = (
        Workload("support", "summarise", "gcp.gemini", "gemini-2.5-flash", 1, (100, 200), (10, 20)),
        Workload("support", "summarise-fast", "gcp.gemini", "gemini-2.5-flash-lite", 1, (100, 200), (10, 20)),
    )
    _write(collector, list(datagen.calls(200, now=datetime.now(timezone.utc), days=1, workloads=workloads)))
    for args in (["status", "--period", "all"], ["calls", "--order", "time", "--limit", "100"]):
        result = CliRunner().invoke(cli, [*args, "--url", collector.url], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.output.splitlines() if not line.startswith("next page")) <= 80
        assert "gemini-2.5-flash-lite" in result.output and "…" not in result.output, result.output
        assert any(
            "gemini-2.5-flash " in line or line.rstrip().endswith("gemini-2.5-flash") or "gemini-2.5-flash │" in line
            for line in result.output.splitlines()
        )


# ---- 9. version, metrics, temporary directories ------------------------------------------------------------------


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("llmmeter 0.")


def test_metrics_have_build_info_and_process_metrics(collector: BackgroundCollector) -> None:
    text = httpx.get(collector.url + "/metrics").text
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    info = next(line for line in text.splitlines() if line.startswith("llmmeter_build_info{"))
    assert 'version="0.' in info and info.endswith(" 1.0")


def test_a_background_collector_that_fails_to_start_leaves_no_spool_directory(database_url: str) -> None:
    # the server refuses (no such database): the start fails; a server that does not answer is an outage it
    # starts through, into the spool
    bad = Settings(database_url=database_url.rsplit("/", 1)[0] + "/llmmeter_no_such_database", http_port=0)
    background = BackgroundCollector(bad)
    spool = Path(background.collector.settings.spool_dir)
    assert spool.name.startswith("llmmeter-spool-") and spool.exists()
    with pytest.raises(psycopg.OperationalError), background:
        pass
    assert not spool.exists()


# ---- 11. seed ----------------------------------------------------------------------------------------------------


def test_db_seed_writes_a_month_a_collector_then_serves(database_url: str, pg_schema: str) -> None:
    result = _run("db", "seed", "--database-url", database_url, "--schema", pg_schema, "--calls", "800")
    assert result.returncode == 0, result.stderr
    assert "Seeded 800 calls over the last 30 days" in result.stdout
    with BackgroundCollector(Settings(database_url=database_url, database_schema=pg_schema, http_port=0)) as running:
        status = json.loads(
            CliRunner().invoke(cli, ["status", "--url", running.url, "--period", "all", "--json"]).output
        )
    assert status["calls"] == 800
    assert {r["project"] for r in status["by_project"]} == {"shop", "support", "research"}
    assert status["unpriced_calls"] > 0  # the unpriced model is part of the month
    unnamed = _run("db", "seed")  # never into `llmmeter serve`'s default embedded Postgres
    assert unnamed.returncode == 2 and "--data-dir" in unnamed.stderr
