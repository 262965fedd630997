"""``make demo``: the whole pipeline on one machine, then the spend it recorded.

It starts a collector on free ports (HTTP and gRPC) with an embedded Postgres in a throwaway data directory
(never ``llmmeter serve``'s, never ``LLMMETER_DATABASE_URL``), and the local fake OpenAI server, runs a small app
instrumented with ``llmmeter.instrument()`` that makes chat calls for two features, prints ``llmmeter status``
and what to try next. Then it stops everything and deletes the directory, or with ``--keep``
(``make demo KEEP=1``) keeps the collector running for the CLI until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llmmeter_collector.devtools.fakeprovider import FakeProvider

# (feature, model, question) — the sample app's traffic.
SAMPLE_CALLS = (
    ("search", "gpt-4o-mini", "Find flights from Paris to Rome next Friday"),
    ("search", "gpt-4o-mini", "Cheapest hotel near the Colosseum"),
    ("search", "gpt-4o-mini", "Train times Rome to Florence"),
    ("support-chat", "gpt-4o", "My booking reference ABC123 shows the wrong date, can you help me fix it?"),
    ("support-chat", "gpt-4o", "Please explain the refund policy for cancelled flights in detail"),
    ("support-chat", "gpt-4o-mini", "Thanks, that solved it"),
)


def sample_app() -> None:
    """The instrumented app: plain OpenAI SDK calls inside ``llmmeter.attributes``."""
    import openai

    import llmmeter

    llmmeter.instrument(service_name="llmmeter-demo")
    client = openai.OpenAI()  # OPENAI_BASE_URL / OPENAI_API_KEY come from the environment
    for i, (feature, model, question) in enumerate(SAMPLE_CALLS):
        with llmmeter.attributes(feature=feature, user_id=f"user-{i % 3}", project="demo"):
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}], max_tokens=60
            )
        text = answer.choices[0].message.content or ""
        print(f"  [{feature}] {model}: {text[:48]}...")
    llmmeter.flush()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"collector exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"collector not ready after {timeout:.0f}s")


def next_steps(url: str, kept: bool) -> str:
    """What to try after the demo: the CLI on its data, keeping it running, the Grafana stack."""
    cli = [
        f"llmmeter calls --url {url} --since today",
        f"llmmeter calls --url {url} --model gpt-4o --order time",
        f"llmmeter report --url {url} --period week --current",
        f"llmmeter budget 1 --url {url} && llmmeter status --url {url}",
    ]
    lines = ["", "Try next:"]
    if kept:
        lines.append(f"  The collector keeps running on {url}; in another terminal:")
    else:
        lines.append("  Keep the collector running to explore its data with the CLI:  make demo KEEP=1   (then e.g.)")
    lines += [f"    .venv/bin/{c}" for c in cli]
    lines += [
        "  A month of realistic data to explore:  .venv/bin/llmmeter db seed --data-dir /tmp/llmmeter-seed",
        "                                         then LLMMETER_DATA_DIR=/tmp/llmmeter-seed .venv/bin/llmmeter serve",
        "  Instrument your own app:               import llmmeter; llmmeter.instrument()",
        "  Grafana dashboards + Prometheus + alerts:  docker compose up -d   (see docs/self-hosting.md)",
    ]
    if kept:
        lines.append("  Press Ctrl-C to stop the collector and delete the demo's data.")
    return "\n".join(lines)


def _demo_env(data_dir: str, grpc_port: int) -> dict[str, str]:
    """The collector's environment: its own data directory and ports, no user database or settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    env.update({"LLMMETER_DATA_DIR": data_dir, "LLMMETER_GRPC_PORT": str(grpc_port)})
    return env


def main(keep: bool = False) -> None:
    if sys.version_info < (3, 11):
        raise SystemExit(f"llmmeter demo: the collector needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="llmmeter-demo-")
    print(f"llmmeter demo: starting the collector on {url} with a throwaway Postgres in {data_dir}")
    collector = subprocess.Popen(
        [sys.executable, "-m", "llmmeter_collector", "--port", str(port)], env=_demo_env(data_dir, _free_port())
    )
    try:
        _wait_ready(url, collector)
        with FakeProvider() as fake:
            print(f"llmmeter demo: fake OpenAI server on {fake.url}; running the sample app")
            env = {
                **os.environ,
                "OPENAI_BASE_URL": fake.openai_base_url,
                "OPENAI_API_KEY": "demo-key",
                "OTEL_EXPORTER_OTLP_ENDPOINT": url,
                "OTEL_METRIC_EXPORT_INTERVAL": "60000",
            }
            subprocess.run([sys.executable, "-m", "llmmeter_collector.devtools.demo", "app"], env=env, check=True)
        print(flush=True)
        # the CLI as a user runs it (devtools never import the CLI or the service: they drive them from outside)
        subprocess.run(
            [sys.executable, "-m", "llmmeter_collector.cli", "status", "--url", url, "--period", "all"], check=True
        )
        print(next_steps(url, keep), flush=True)
        if keep:
            _wait_for_interrupt(collector)
    finally:
        collector.terminate()
        try:
            collector.wait(30)
        except subprocess.TimeoutExpired:
            collector.kill()
            collector.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"llmmeter demo: done; collector and Postgres stopped, {Path(data_dir).name} deleted")


def _wait_for_interrupt(collector: subprocess.Popen[bytes]) -> None:
    """Until Ctrl-C / SIGTERM (or the collector exits on its own)."""
    stop = {"now": False}

    def _stop(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop["now"] and collector.poll() is None:
        time.sleep(0.2)


if __name__ == "__main__":
    if sys.argv[1:] == ["app"]:
        sample_app()
    else:
        main(keep="--keep" in sys.argv[1:] or os.environ.get("KEEP", "") not in ("", "0"))
