"""The first admin key when keys are required from the start (the compose stack): taken from
LLMMETER_BOOTSTRAP_ADMIN_KEY, or created and logged once; never recreated; nobody else can mint one."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector


def _settings(database_url: str, schema: str, **extra: object) -> Settings:
    return Settings(database_url=database_url, database_schema=schema, http_port=0, require_keys=True, **extra)  # type: ignore[arg-type]


def test_keys_required_and_none_yet_the_collector_logs_an_admin_key_once(
    database_url: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llmmeter_collector.access.bootstrap")
    with BackgroundCollector(_settings(database_url, pg_schema)) as running:
        logged = re.findall(r"shown only now: (llmm_\S+)", caplog.text)
        assert len(logged) == 1
        assert httpx.get(running.url + "/api/v1/summary").status_code == 401
        anonymous = httpx.post(running.url + "/api/v1/keys", json={"name": "mine", "role": "admin"})
        assert anonymous.status_code == 401  # nobody can mint the first key
        created = httpx.post(
            running.url + "/api/v1/keys",
            json={"name": "ci", "role": "viewer"},
            headers={"Authorization": f"Bearer {logged[0]}"},
        )
        assert created.status_code == 201, created.text
    caplog.clear()
    with BackgroundCollector(_settings(database_url, pg_schema)):
        assert "shown only now" not in caplog.text  # a restart prints nothing and creates nothing


def test_the_admin_key_from_the_environment(database_url: str, pg_schema: str) -> None:
    token = "llmm_" + secrets.token_urlsafe(32)
    with BackgroundCollector(_settings(database_url, pg_schema, bootstrap_admin_key=token)) as running:
        keys = httpx.get(running.url + "/api/v1/keys", headers={"Authorization": f"Bearer {token}"})
        assert keys.status_code == 200
        assert [(k["name"], k["role"]) for k in keys.json()["keys"]] == [("bootstrap-admin", "admin")]


def test_a_weak_bootstrap_key_is_refused_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMMETER_")}
    env["LLMMETER_BOOTSTRAP_ADMIN_KEY"] = "changeme"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "llmmeter"), "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "LLMMETER_BOOTSTRAP_ADMIN_KEY must start with 'llmm_'" in result.stderr
    assert "Traceback" not in result.stderr
