"""``make demo``: the whole pipeline on one machine, then the spend it recorded.

It starts a collector (embedded Postgres unless ``LLMMETER_DATABASE_URL`` is set) and the local fake
OpenAI server, runs a small app instrumented with ``llmmeter.instrument()`` that makes chat calls for
two features, prints ``llmmeter status``, and stops everything it started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from llmmeter_collector.fakeprovider import FakeProvider

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


def main() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"llmmeter demo: starting the collector on {url} (embedded Postgres unless LLMMETER_DATABASE_URL)")
    collector = subprocess.Popen([sys.executable, "-m", "llmmeter_collector", "--port", str(port)])
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
            subprocess.run([sys.executable, "-m", "llmmeter_collector.demo", "app"], env=env, check=True)
        print()
        from llmmeter_collector.cli import cli

        cli.main(args=["status", "--url", url, "--period", "all"], prog_name="llmmeter", standalone_mode=False)
    finally:
        collector.terminate()
        try:
            collector.wait(30)
        except subprocess.TimeoutExpired:
            collector.kill()
            collector.wait()
    print("llmmeter demo: done; collector and Postgres stopped")


if __name__ == "__main__":
    if sys.argv[1:] == ["app"]:
        sample_app()
    else:
        main()
