"""Attribution reaches every LLM span made inside a block: nested, decorated, in threads and tasks."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

import llmmeter
from llmmeter_collector.devtools.fakeprovider import FakeProvider


def _ask(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_block_nesting_and_decorator(fake: FakeProvider, instrumented: None, spans) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")

    @llmmeter.attributes(feature="summarise")
    def summarise() -> None:
        _ask(client)

    with llmmeter.attributes(project="shop", feature="search", user_id="u1", tags={"team": "growth"}):
        _ask(client)
        with llmmeter.attributes(feature="rerank", session_id="s9"):
            _ask(client)
        summarise()
    _ask(client)
    attrs = [dict(s.attributes) for s in spans.get_finished_spans()]
    assert attrs[0]["llmmeter.feature"] == "search" and attrs[0]["user.id"] == "u1"
    assert attrs[0]["llmmeter.project"] == "shop" and attrs[0]["llmmeter.tag.team"] == "growth"
    assert attrs[1]["llmmeter.feature"] == "rerank" and attrs[1]["session.id"] == "s9"
    assert attrs[1]["user.id"] == "u1"  # inherited from the outer block
    assert attrs[2]["llmmeter.feature"] == "summarise" and attrs[2]["llmmeter.project"] == "shop"
    assert "llmmeter.feature" not in attrs[3]


def test_threads_and_executor_inherit_attribution(fake: FakeProvider, instrumented: None, spans) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
    with llmmeter.attributes(feature="batch-job"):
        thread = threading.Thread(target=_ask, args=(client,))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: _ask(client), range(2)))
    features = [s.attributes["llmmeter.feature"] for s in spans.get_finished_spans()]
    assert features == ["batch-job"] * 3


def test_asyncio_tasks_inherit_attribution(fake: FakeProvider, instrumented: None, spans) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")

    async def main() -> None:
        with llmmeter.attributes(feature="agent", user_id="u7"):
            await asyncio.gather(*(asyncio.to_thread(_ask, client) for _ in range(2)))
            task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
            await task

    asyncio.run(main())
    assert [s.attributes["user.id"] for s in spans.get_finished_spans()] == ["u7", "u7"]


def test_bad_tag_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tag names must be non-empty strings"):
        llmmeter.attributes(tags={"": "x"})
