"""The REST rate limit follows who is asking (the key, or the client address while keys are off), never the
project a request names: naming a new project on each request does not escape the limit (issue #16)."""

from __future__ import annotations

import httpx
import pytest

from llmmeter_collector.config import Settings
from llmmeter_collector.service import BackgroundCollector


def _get(url: str, key: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(url + "/api/v1/summary", params=params, headers=headers)


@pytest.fixture
def limited(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> BackgroundCollector:
    monkeypatch.setenv("LLMMETER_API_RATE_LIMIT", "0.001")  # one token per 1000 s: no refill during the test
    monkeypatch.setenv("LLMMETER_API_RATE_BURST", "3")
    return BackgroundCollector(settings, grpc=False)


def test_an_unrestricted_key_naming_new_projects_is_still_limited(limited: BackgroundCollector) -> None:
    with limited as collector:
        store = collector.collector.keys
        roaming, other = store.create("roaming", "viewer"), store.create("other", "viewer")
        codes = [_get(collector.url, roaming, project=f"project-{i}").status_code for i in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        refused = _get(collector.url, roaming, project="yet-another")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"] == "rate limit exceeded for this key"
        assert _get(collector.url, roaming).status_code == 429  # naming no project does not help either
        assert _get(collector.url, other, project="project-0").status_code == 200  # another key: its own bucket


def test_a_key_of_several_projects_has_one_bucket(limited: BackgroundCollector) -> None:
    with limited as collector:
        two = collector.collector.keys.create("two", "viewer", ["a", "b"])
        codes = [_get(collector.url, two, project=p).status_code for p in ("a", "b", "a", "b")]
        assert codes == [200, 200, 200, 429]


def test_without_keys_the_client_address_is_limited(limited: BackgroundCollector) -> None:
    with limited as collector:
        codes = [_get(collector.url, None, project=f"p{i}").status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]


def test_requests_without_a_valid_key_are_limited_by_client_address(limited: BackgroundCollector) -> None:
    """Guessing keys costs a key lookup each time: such requests draw from the client address's bucket."""
    with limited as collector:
        valid = collector.collector.keys.create("valid", "viewer")
        guesses = [_get(collector.url, f"llmm_guess{i}").status_code for i in range(3)]
        assert guesses == [401, 401, 401]
        assert _get(collector.url, "llmm_guess-again").status_code == 429
        assert _get(collector.url, None).status_code == 429  # no key at all: the same bucket
        assert _get(collector.url, valid).status_code == 200  # a valid key has its own bucket
