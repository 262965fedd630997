"""The fake provider answers the REAL provider SDKs in their own wire formats, with predictable usage."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import openai
import pytest
from llmmeter_collector.fakeprovider import FakeProvider

USER = [{"role": "user", "content": "Say hello in five words"}]  # 5 words -> 15 input tokens


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeProvider) -> None:
    fake.reset()


@pytest.fixture
def oai(fake: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="x")


def usage_header(**usage: int) -> dict[str, str]:
    return {"x-fake-usage": json.dumps(usage)}


def test_start_stop_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    for _ in range(3):
        with FakeProvider() as fake:
            assert fake.url.startswith("http://127.0.0.1:")
            assert fake.openai_base_url == fake.url + "/v1"
    assert set(threading.enumerate()) <= before


def test_chat_completion_default_usage(fake: FakeProvider, oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert resp.model == "gpt-4o-mini"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (15, 20, 35)
    assert resp.choices[0].message.content is not None
    assert len(resp.choices[0].message.content.split()) == 20
    assert resp.choices[0].finish_reason == "stop"
    [req] = fake.requests
    assert (req.method, req.path, req.json["model"]) == ("POST", "/v1/chat/completions", "gpt-4o-mini")


def test_chat_completion_max_tokens_and_override(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, max_completion_tokens=7)
    assert resp.usage is not None and resp.usage.completion_tokens == 7
    resp = oai.chat.completions.create(
        model="o4-mini",
        messages=USER,
        service_tier="flex",
        extra_headers=usage_header(
            input_tokens=1200, output_tokens=300, cached_tokens=1000, reasoning_tokens=50
        ),
    )
    usage = resp.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1200, 300, 1500)
    assert usage.prompt_tokens_details.cached_tokens == 1000
    assert usage.completion_tokens_details.reasoning_tokens == 50
    assert resp.service_tier == "flex"
