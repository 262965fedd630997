"""Real Prometheus and Alertmanager (Debian's binaries) on free loopback ports, for tests.

with Prometheus(tmp_path, scrape_targets=["127.0.0.1:4318"], rule_files=[...], interval="1s") as prom:
    prom.wait_for("up == 1")
    prom.query("sum(llmmeter_cost_usd_total)")
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

_S = TypeVar("_S", bound="_Server")

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


class _Server:
    """A binary started on a free loopback port, ready when ``ready_path`` answers 200, stopped on exit."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        log = self.workdir / f"{self.name}.log"
        self._process = subprocess.Popen(self.command(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
        _wait_http(self.url + "/-/ready", self._process, log)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class Prometheus(_Server):
    """A real Prometheus scraping ``scrape_targets`` every ``interval``, evaluating ``rule_files``."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_targets: list[str],
        rule_files: list[Path] | None = None,
        alertmanager: str | None = None,
        interval: str = "1s",
        job: str = "llmmeter",
    ) -> None:
        super().__init__(workdir)
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": scrape_targets}]}],
        }
        if rule_files:
            config["rule_files"] = [str(p) for p in rule_files]
        if alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    name = "prometheus"

    def command(self) -> list[str]:
        return [
            PROMETHEUS,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; raises on a query error (so a broken panel query fails the test)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        body = httpx.get(self.url + "/api/v1/query", params=params, timeout=10).json()
        if body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body.get('error')}")
        return list(body["data"]["result"])

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr, "start": start, "end": end, "step": step}
        body = httpx.get(self.url + "/api/v1/query_range", params=params, timeout=10).json()
        if body.get("status") != "success":
            raise AssertionError(f"range query {expr!r} failed: {body.get('error')}")
        return list(body["data"]["result"])

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns a non-empty result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.25)
        raise AssertionError(f"{expr!r} returned nothing within {timeout}s")

    def alerts(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"])


class Alertmanager(_Server):
    """A real Alertmanager with the given configuration (YAML text)."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config_text: str) -> None:
        super().__init__(workdir)
        self.address = f"127.0.0.1:{self.port}"
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(config_text)

    def command(self) -> list[str]:
        return [
            ALERTMANAGER,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
