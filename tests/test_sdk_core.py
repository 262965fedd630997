"""Provider-independent SDK features: content capture + redaction, fingerprint, record/track, batch helpers,
budget guard wiring."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator

import anthropic
import openai
import pytest

import llmmeter
from llmmeter import guard
from llmmeter.redaction import redact_pii
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from tests.sdk_support import instrumented_with, llm_spans, only_span, points

PII = "Mail jane.doe@example.com, call +1 415-555-0132, card 4111 1111 1111 1111, SSN 123-45-6789"


@pytest.fixture
def capturing() -> Iterator[None]:
    yield from instrumented_with(capture_content=True)


def test_redaction_rules() -> None:
    assert redact_pii(PII) == "Mail [REDACTED_EMAIL], call [REDACTED_PHONE], card [REDACTED_CARD], SSN [REDACTED_SSN]"
    assert redact_pii("IBAN GB82 WEST 1234 5698 7654 32 ok") == "IBAN [REDACTED_IBAN] ok"
    untouched = "order 4111 1111 1111 1112 on 2024-05-01 costs 12.50, version 1.2.3, GB00WEST12345698765432"
    assert redact_pii(untouched) == untouched  # failed Luhn / mod-97 checks, a date, plain numbers


def test_content_capture_is_redacted_and_off_by_default(fake: FakeProvider, capturing, spans) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
    messages = [{"role": "system", "content": "You help."}, {"role": "user", "content": PII}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    attrs = only_span(spans)
    inputs = json.loads(attrs["gen_ai.input.messages"])
    assert inputs[0] == {"role": "system", "parts": [{"type": "text", "content": "You help."}]}
    assert "jane.doe" not in attrs["gen_ai.input.messages"] and "[REDACTED_EMAIL]" in inputs[1]["parts"][0]["content"]
    outputs = json.loads(attrs["gen_ai.output.messages"])
    assert outputs[0]["role"] == "assistant" and outputs[0]["finish_reason"] == "stop"
    assert outputs[0]["parts"][0]["content"].startswith("Fake answer")
    llmmeter.uninstrument()
    llmmeter.instrument(configure_export=False)
    spans.clear()
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert "gen_ai.input.messages" not in only_span(spans)


def test_env_variable_and_custom_redactor(fake, spans, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    llmmeter.instrument(configure_export=False, redact=lambda text: text.replace("secret", "***"))
    try:
        client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x")
        client.messages.create(model="claude-haiku-4-5", max_tokens=50, system="sys secret",
                               messages=[{"role": "user", "content": "my secret"}])  # fmt: skip
    finally:
        llmmeter.uninstrument()
    attrs = only_span(spans)
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "sys ***"}]
    assert json.loads(attrs["gen_ai.input.messages"])[0]["parts"][0]["content"] == "my ***"


def test_fingerprint_stable_keyed_and_whitespace_normalised(fake, spans, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")

    def fingerprint(text: str) -> str:
        spans.clear()
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        return str(only_span(spans)["llmmeter.prompt.fingerprint"])

    llmmeter.instrument(configure_export=False)
    try:
        default = fingerprint("What is  the\ncapital?")
        assert fingerprint("What is the capital?") == default  # whitespace does not matter
        assert fingerprint("What is the capital!") != default
    finally:
        llmmeter.uninstrument()
    monkeypatch.setenv("LLMMETER_FINGERPRINT_KEY", "deployment-key")
    llmmeter.instrument(configure_export=False)
    try:
        keyed = fingerprint("What is the capital?")
    finally:
        llmmeter.uninstrument()
    assert keyed != default and len(keyed) == 16
    from llmmeter.content import Message, Prompt, text_part
    from llmmeter.content import fingerprint as compute

    prompt = Prompt(messages=[Message("user", [text_part("What is the capital?")])])
    assert compute(prompt, b"deployment-key") == keyed  # same in every process: a keyed hash, no salt
    documented = hmac.new(b"deployment-key", b"user\x1fWhat is the capital?\x1e", hashlib.sha256)
    assert keyed == documented.hexdigest()[:16]  # HMAC-SHA256 of role, text, separators (README)


def test_record_manual_span_with_attribution(spans, metric_reader) -> None:  # type: ignore[no-untyped-def]
    with llmmeter.attributes(project="shop"):
        llmmeter.record(provider="vllm", model="llama-3.1-8b", input_tokens=120, output_tokens=30,
                        cache_read_tokens=100, start_time=1_700_000_000.0, end_time=1_700_000_002.5,
                        feature="search", tags={"team": "ml"})  # fmt: skip
    (span,) = llm_spans(spans)
    attrs = dict(span.attributes)
    assert attrs["gen_ai.provider.name"] == "vllm" and attrs["gen_ai.request.model"] == "llama-3.1-8b"
    assert attrs["gen_ai.usage.input_tokens"] == 120 and attrs["gen_ai.usage.cache_read.input_tokens"] == 100
    assert attrs["llmmeter.project"] == "shop" and attrs["llmmeter.feature"] == "search"
    assert attrs["llmmeter.tag.team"] == "ml"
    assert span.start_time == 1_700_000_000 * 10**9 and span.end_time == 1_700_000_002_500 * 10**6
    (duration,) = [
        p for p in points(metric_reader, "gen_ai.client.operation.duration")
        if p.attributes["gen_ai.provider.name"] == "vllm"
    ]  # fmt: skip
    assert duration.sum == pytest.approx(2.5)
    with pytest.raises(ValueError, match="input_tokens"):
        llmmeter.record(provider="vllm", model="m", input_tokens=-1)
    with pytest.raises(ValueError, match="model"):
        llmmeter.record(provider="vllm", model="")


def test_track_decorator_sync_async_and_errors(spans) -> None:  # type: ignore[no-untyped-def]
    @llmmeter.track(provider="bedrock", model="titan", usage=lambda r: (r["in"], r["out"]))
    def call() -> dict[str, int]:
        return {"in": 7, "out": 3}

    @llmmeter.track(provider="ollama", model="llama3")
    async def acall() -> str:
        llmmeter.current_call().set_usage(input_tokens=5, output_tokens=2)  # type: ignore[union-attr]
        return "ok"

    @llmmeter.track(provider="ollama", model="llama3")
    def failing() -> None:
        raise KeyError("boom")

    assert call() == {"in": 7, "out": 3}
    assert asyncio.run(acall()) == "ok"
    with pytest.raises(KeyError):
        failing()
    first, second, third = (dict(s.attributes) for s in llm_spans(spans))
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (7, 3)
    assert (second["gen_ai.usage.input_tokens"], second["gen_ai.usage.output_tokens"]) == (5, 2)
    assert third["error.type"] == "KeyError"


def test_openai_batch_helper(fake, spans) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}}
        for i in range(2)
    ]  # fmt: skip
    upload = client.files.create(file=("in.jsonl", "\n".join(json.dumps(x) for x in lines).encode()), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    output = client.files.content(batch.output_file_id).text
    assert llmmeter.batches.record_openai_batch(output, batch_id=batch.id) == 2
    found = [dict(s.attributes) for s in llm_spans(spans)]
    assert [a["llmmeter.batch.custom_id"] for a in found] == ["r0", "r1"]
    assert all(a["llmmeter.batch"] is True and a["gen_ai.usage.input_tokens"] == 12 for a in found)
    assert found[0]["llmmeter.batch.id"] == batch.id
    with pytest.raises(llmmeter.batches.BatchResultError, match="line 1"):
        llmmeter.batches.record_openai_batch("not json")


def test_anthropic_batch_helper(fake, spans) -> None:  # type: ignore[no-untyped-def]
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x")
    params = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]}
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": params}])
    results = list(client.messages.batches.results(batch.id))
    spans.clear()
    assert llmmeter.batches.record_anthropic_batch(results, batch_id=batch.id) == 1
    attrs = only_span(spans)
    assert attrs["llmmeter.batch"] is True and attrs["llmmeter.batch.custom_id"] == "a"
    assert attrs["gen_ai.usage.input_tokens"] == 12 and attrs["gen_ai.provider.name"] == "anthropic"


def test_budget_guard_swaps_model_and_can_stop_calls(fake, instrumented, spans, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
    monkeypatch.setattr(guard, "active", lambda: True)
    monkeypatch.setattr(guard, "check", lambda provider, model: "gpt-4o-mini")
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].json["model"] == "gpt-4o-mini"
    attrs = only_span(spans)
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini" and attrs["llmmeter.model.requested"] == "gpt-4o"

    def stop(provider: str, model: str) -> str:
        raise guard.BudgetExceeded("monthly budget spent")

    monkeypatch.setattr(guard, "check", stop)
    sent = len(fake.requests)
    with pytest.raises(guard.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert len(fake.requests) == sent  # nothing was sent

    monkeypatch.setattr(guard, "check", lambda provider, model: 1 / 0)  # a bug in the guard is swallowed
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].json["model"] == "gpt-4o"


def test_concurrent_threads_keep_calls_apart(fake, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")

    def ask(i: int) -> None:
        with llmmeter.attributes(user_id=f"u{i}"):
            words = " ".join(["w"] * i)
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": words}])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ask, range(1, 9)))
    found = {s.attributes["user.id"]: s.attributes["gen_ai.usage.input_tokens"] for s in llm_spans(spans)}
    assert found == {f"u{i}": i + 10 for i in range(1, 9)}
