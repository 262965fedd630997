"""Control characters (NUL, ESC, ...) in anything a REST client sends get 400 naming the field: never a 500,
never an export that breaks after its headers went out (issue #16)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from llmmeter_collector.api.routes import OPERATIONS
from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector

# every string query parameter of the declared operations, and the hand-parsed ones of the other routes
STRING_PARAMS = sorted(
    {(op.path, p.name) for op in OPERATIONS for p in op.params if p.kind == "string" and "{" not in op.path}
    | {("/api/v1/report", "period"), ("/api/v1/prices", "model"), ("/api/v1/prices", "provider")}
)
BAD = ("\x00", "a\x00b", "\x1b[31m", "x\ty", "\x7f", "\x85")


@pytest.fixture(scope="module")
def shared(database_url: str) -> Iterator[BackgroundCollector]:
    """One collector for the read-only parameter cases (keys off)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with BackgroundCollector(Settings(database_url=database_url, database_schema=schema, http_port=0)) as running:
            yield running
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.parametrize(("path", "name"), STRING_PARAMS, ids=[f"{p}?{n}" for p, n in STRING_PARAMS])
def test_a_control_character_in_a_query_parameter_is_a_400_naming_it(
    shared: BackgroundCollector, path: str, name: str
) -> None:
    for value in BAD:
        answer = httpx.get(shared.url + path, params={name: value})
        assert answer.status_code == 400, (value, answer.text)
        assert answer.json() == {"error": f"{name}: must not contain control characters", "field": name}


def test_the_reported_cases_and_that_clean_values_still_work(shared: BackgroundCollector) -> None:
    url = shared.url
    calls = httpx.get(url + "/api/v1/calls?feature=%00")
    assert calls.status_code == 400 and calls.json()["field"] == "feature"
    for fmt in ("csv", "jsonl"):  # refused before the stream starts, not broken in the middle of it
        export = httpx.get(url + f"/api/v1/export?format={fmt}&user=a%00b")
        assert export.status_code == 400 and export.json()["field"] == "user"
    assert httpx.get(url + "/api/v1/calls?feature=search").status_code == 200
    assert httpx.get(url + "/api/v1/export?format=csv&feature=caf%C3%A9").status_code == 200  # non-ASCII is fine


def test_keys_and_budgets_with_control_characters_are_refused(collector: BackgroundCollector) -> None:
    url = collector.url
    admin = collector.collector.keys.create("root", "admin")
    auth = {"Authorization": f"Bearer {admin}"}
    # the path, with a key: still 400, after authentication
    assert httpx.delete(url + "/api/v1/budgets/a%00b", headers=auth).json()["field"] == "path"
    assert httpx.get(url + "/api/v1/budgets/a%00b").status_code == 401  # no key: nothing else is said
    for body, field in (
        ({"name": "bad\x00name", "role": "viewer"}, "name"),
        ({"name": "ok", "role": "viewer", "projects": ["sh\x00p"]}, "projects"),
    ):
        answer = httpx.post(url + "/api/v1/keys", json=body, headers=auth)
        assert answer.status_code == 400 and answer.json()["field"] == field, answer.text
    budget = {"name": "nul", "limit_usd": "1", "scope": {"feature": "se\x00arch"}}
    answer = httpx.post(url + "/api/v1/budgets", json=budget, headers=auth)
    assert answer.status_code == 400 and answer.json()["field"] == "scope.feature", answer.text
    assert [k.name for k in collector.collector.keys.list_keys()] == ["root"]  # nothing half-created
