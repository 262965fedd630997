"""`make demo` runs the whole pipeline in its own throwaway data directory on free ports, shows the spend, says
what to try next, and (with KEEP=1) keeps the collector up for the CLI until Ctrl-C; then leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from llmmeter_collector.devtools.demo import SAMPLE_CALLS, next_steps

pytestmark = pytest.mark.real_clock

# Published prices per 1M tokens (openai.com/api/pricing): (input, output)
PRICES = {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")), "gpt-4o": (Decimal("2.50"), Decimal("10.00"))}
REPO = Path(__file__).resolve().parents[1]


def expected_spend_per_run() -> Decimal:
    """The fake provider's rule: input = words + 10, output = 20 tokens."""
    total = Decimal(0)
    for _, model, question in SAMPLE_CALLS:
        price_in, price_out = PRICES[model]
        total += (len(question.split()) + 10) * price_in / 10**6 + 20 * price_out / 10**6
    return total


def _postgres_processes(data_dir: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if "postgres" in cmdline and data_dir in cmdline:
            found.append(proc)
    return found


def _occupy(stack: ExitStack, port: int) -> None:
    """Listen on ``port`` for the test's duration (if nobody else does already): the demo must not need it."""
    sock = stack.enter_context(socket.socket())
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        pass  # already taken by something else: just as good


def test_demo_keeps_to_itself_says_what_next_and_stays_up_with_keep(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    # A user's settings the demo must not touch: their database, their data directory, the default ports.
    env.update(
        {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "LLMMETER_DATA_DIR": str(home / "mine"),
            "LLMMETER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/users-real-ledger",
        }
    )
    with ExitStack() as stack:
        for port in (4317, 4318):
            _occupy(stack, port)
        demo = subprocess.Popen(
            [sys.executable, "-m", "llmmeter_collector.devtools.demo", "--keep"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        deadline = time.monotonic() + 240
        while not any("Press Ctrl-C" in line for line in lines):
            assert demo.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        out = "".join(lines)
        assert "By model" in out and "By feature" in out
        mini_calls = re.search(r"gpt-4o-mini\s*│\s*(\d+)\s*│", out)
        assert mini_calls is not None and int(mini_calls.group(1)) == 4, out  # a fresh ledger, not a previous run's
        assert f"${expected_spend_per_run():.6f}" in out
        data_dir = re.search(r"throwaway Postgres in (\S+)", out)
        assert data_dir is not None and Path(data_dir.group(1)).is_dir()
        url = re.search(r"keeps running on (http://127\.0\.0\.1:\d+)", out)
        assert url is not None and not url.group(1).endswith((":4317", ":4318"))
        assert "docker compose up -d" in out and "llmmeter db seed" in out
        # a command the demo printed works on the demo's data while it stays up
        printed = next(line.strip() for line in lines if "llmmeter calls --url" in line and "--since today" in line)
        command = printed.split()
        command[0] = str(Path(sys.executable).parent / "llmmeter")
        calls = subprocess.run(command, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60)
        assert calls.returncode == 0, calls.stderr
        assert "gpt-4o-mini" in calls.stdout and "support-chat" in calls.stdout
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, "".join(lines)
        reader.join(10)
    out = "".join(lines)
    assert "collector and Postgres stopped" in out
    assert not Path(data_dir.group(1)).exists(), "the demo left its data directory"
    assert not _postgres_processes(data_dir.group(1)), "the demo left Postgres running"
    assert not (home / "mine").exists() and not (home / "data").exists(), "the demo wrote into the user's data"


def test_without_keep_the_demo_says_how_to_keep_it_and_where_the_grafana_stack_is() -> None:
    text = next_steps("http://127.0.0.1:5555", kept=False)
    assert "make demo KEEP=1" in text and "docker compose up -d" in text and "llmmeter db seed" in text
    assert "llmmeter calls --url http://127.0.0.1:5555 --since today" in text


def test_make_demo_passes_keep(tmp_path: Path) -> None:
    plan = subprocess.run(["make", "-n", "-C", str(REPO), "demo", "KEEP=1"], capture_output=True, text=True)
    assert re.search(r"-m llmmeter_collector\.devtools\.demo --keep$", plan.stdout, re.M), plan.stdout + plan.stderr
    plain = subprocess.run(["make", "-n", "-C", str(REPO), "demo"], capture_output=True, text=True)
    assert "--keep" not in plain.stdout
