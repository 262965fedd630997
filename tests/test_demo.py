"""`make demo` runs the whole pipeline on the embedded Postgres, shows the spend, and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psutil

from llmmeter_collector.demo import SAMPLE_CALLS

# Published prices per 1M tokens (openai.com/api/pricing): (input, output)
PRICES = {"gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")), "gpt-4o": (Decimal("2.50"), Decimal("10.00"))}


def expected_spend_per_run() -> Decimal:
    """The fake provider's rule: input = words + 10, output = 20 tokens."""
    total = Decimal(0)
    for _, model, question in SAMPLE_CALLS:
        price_in, price_out = PRICES[model]
        total += (len(question.split()) + 10) * price_in / 10**6 + 20 * price_out / 10**6
    return total


def _postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if "postgres" in cmdline and str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_demo_prints_spend_by_model_and_feature_and_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    env["LLMMETER_DATA_DIR"] = str(tmp_path)
    for run in (1, 2):  # the second run reuses the embedded Postgres data directory
        result = subprocess.run(
            [sys.executable, "-m", "llmmeter_collector.demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "By model" in out and "By feature" in out
        assert "gpt-4o-mini" in out and "gpt-4o " in out
        assert "search" in out and "support-chat" in out
        mini_calls = re.search(r"gpt-4o-mini\s*│\s*(\d+)\s*│", out)
        assert mini_calls is not None and int(mini_calls.group(1)) == 4 * run
        assert f"${expected_spend_per_run() * run:.6f}" in out  # all-time spend, accumulated over runs
        assert not _postgres_processes(tmp_path), "the demo left Postgres running"
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
