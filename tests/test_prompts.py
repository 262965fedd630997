"""Prompts: named and versioned explicitly or detected by their template, per-version figures and changes, and
near-identical prompts grouped by an opt-in SimHash signature, without the collector ever holding a prompt."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import llmmeter
from llmmeter.content import Message, Prompt, simhash, template_fingerprint, text_part
from llmmeter_collector.cli import cli
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from llmmeter_collector.insights import similarity
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import Cost, LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

from .conftest import export_to, stop_export
from .langchain_toys import sdk_children

KEY = b"k"


def _prompt(system: str, user: str) -> Prompt:
    return Prompt(system=[system], messages=[Message("user", [text_part(user)])])


def test_the_template_fingerprint_follows_the_instructions_not_the_question() -> None:
    a = template_fingerprint(_prompt("Summarise in three bullets.", "first document"), KEY)
    assert a == template_fingerprint(_prompt("Summarise  in three bullets.", "another document entirely"), KEY)
    assert a != template_fingerprint(_prompt("Summarise in five bullets.", "first document"), KEY)
    assert a != template_fingerprint(_prompt("Summarise in three bullets.", "x"), b"another deployment's key")
    known = Prompt(messages=[Message("user", [text_part("Summarise: the text")])], template="Summarise: {text}")
    assert template_fingerprint(known, KEY) == template_fingerprint(
        Prompt(messages=[Message("user", [text_part("Summarise: other")])], template="Summarise: {text}"), KEY
    )


def test_the_signature_is_close_for_near_identical_prompts_and_keyed() -> None:
    base = "You answer questions about our return policy. Be brief and friendly, cite the policy section. " * 3
    near, far = base + "Question: can I return shoes?", "Translate the following legal text into German: " * 4

    def distance(x: str, y: str, key: bytes = KEY) -> int:
        return (int(simhash(_prompt(x, ""), key), 16) ^ int(simhash(_prompt(y, ""), key), 16)).bit_count()

    assert distance(base, near) <= 6 < distance(base, far)
    assert simhash(_prompt(base, ""), KEY) != simhash(_prompt(base, ""), b"other key")  # no cross-deployment lookup
    assert similarity.similarity(0) == 1 and 0.95 < similarity.similarity(6) < 0.96


@pytest.fixture
def signed() -> Iterator[None]:
    llmmeter.instrument(configure_export=False, prompt_signature=True)
    yield
    llmmeter.uninstrument()


def test_named_versions_and_detected_ones_through_the_sdk(
    fake: FakeProvider, collector: BackgroundCollector, signed: None
) -> None:
    processor = export_to(OTLPSpanExporter(endpoint=collector.url + "/v1/traces"))
    try:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
        ask = lambda system, user: client.chat.completions.create(  # noqa: E731
            model="gpt-4o-mini", messages=[{"role": "system", "content": system}, {"role": "user", "content": user}]
        )
        with llmmeter.attributes(feature="support"):
            for question in ("where is my order", "can I return it", "how long is delivery"):
                ask("You are a support agent.", question)  # v1: one template, three questions
            for question in ("where is my order", "refund please"):
                ask("You are a support agent. Answer in one sentence and always cite the policy.", question)  # v2
        with llmmeter.attributes(feature="digest", prompt="summarise", prompt_version="3"):
            ask("Summarise.", "a long text")
    finally:
        stop_export(processor)
    listed = {p["prompt"]: p for p in httpx.get(collector.url + "/api/v1/prompts").json()["prompts"]}
    assert listed["support"]["versions"] == 2 and listed["support"]["calls"] == 5
    assert listed["summarise"]["versions"] == 1 and listed["summarise"]["features"] == ["digest"]
    shown = httpx.get(collector.url + "/api/v1/prompts/support").json()
    assert [(v["version"], v["calls"]) for v in shown["versions"]] == [("v1", 3), ("v2", 2)]
    change = shown["changes"][0]
    # the fake counts words + 10: v1 averages 19 input tokens, v2 (a longer instruction) 27
    assert change["from"] == "v1" and change["to"] == "v2" and change["input_tokens_per_call"] == pytest.approx(8 / 19)
    assert httpx.get(collector.url + "/api/v1/prompts/summarise").json()["versions"][0]["version"] == "3"
    text = CliRunner().invoke(cli, ["prompts", "show", "support", "--url", collector.url], env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "v1 -> v2: cost per call +" in text.output
    listing = CliRunner().invoke(cli, ["prompts", "--url", collector.url], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "summarise" in listing.output
    assert httpx.get(collector.url + "/api/v1/prompts/nothing").status_code == 404
    # the signature travelled: every call of the SDK carries one, none carries the prompt's text
    with collector.collector.pool.connection() as conn:
        rows = conn.execute("SELECT prompt_simhash, template_fingerprint FROM llm_calls").fetchall()
    assert len(rows) == 6 and all(len(s) == 16 and len(t) == 16 for s, t in rows)


NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _call(i: int, feature: str, model: str, signature: int, cost: str, *, failed: bool = False) -> LlmCall:
    start = int((NOW - timedelta(hours=3, seconds=i)).timestamp() * 1e9)
    total = Decimal(cost)
    return LlmCall(
        trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", start_ns=start, end_ns=start + 10**9, provider="openai",
        operation="chat", request_model=model, project="shop", feature=feature, prompt_simhash=f"{signature:016x}",
        usage=Usage(input_tokens=4000, output_tokens=200), status="error" if failed else "ok",
        cost=Cost(total=total, parts={"input": total}, price_source="catalog"),
    )  # fmt: skip


def test_families_of_similar_prompts_across_features_and_models(collector: BackgroundCollector) -> None:
    base = 0x5A5A_0F0F_3C3C_9999
    calls = []
    for i in range(300):
        flip = 1 << (i % 3)  # three signatures, each 2 bits from the others: one family
        if i % 3 == 0:
            calls.append(_call(i, "search", "gpt-4o", base ^ flip, "0.012"))
        elif i % 3 == 1:
            calls.append(_call(i, "chat", "gpt-4o", base ^ flip, "0.012"))
        else:
            calls.append(_call(i, "chat", "gpt-4o-mini", base ^ flip, "0.0008", failed=i == 2))  # 1 % errors
    far = ~base & (2**64 - 1)  # far from the others: a second, cheaper family of two features
    calls += [_call(999, "legal", "gpt-4o", far, "0.02"), _call(998, "support", "gpt-4o", far, "0.02")]
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    ledger.write(calls)
    ledger.close()
    shown = CliRunner().invoke(cli, ["prompts", "similar", "--limit", "1", "--url", collector.url]).output
    assert "1 of 2 families shown" in shown
    data = json.loads(CliRunner().invoke(cli, ["prompts", "similar", "--json", "--url", collector.url]).output)
    assert data["total_families"] == 2 and data["families"][1]["features"] == ["shop/legal", "shop/support"]
    data = json.loads(
        CliRunner().invoke(cli, ["prompts", "similar", "--json", "--limit", "1", "--url", collector.url]).output
    )
    assert data["total_families"] == 2
    (family,) = data["families"]  # the most expensive
    assert family["features"] == ["shop/chat", "shop/search"] and family["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert family["calls"] == 300 and family["max_distance_bits"] == 2
    side = {(m["feature"], m["model"]): m for m in family["members"]}
    assert side[("chat", "gpt-4o-mini")]["cost_per_call_usd"] == "0.0008"
    families = lambda d: httpx.get(collector.url + "/api/v1/prompt-families", params={"max_distance": d})  # noqa: E731
    assert len(families(2).json()["families"]) == 2
    (left,) = families(1).json()["families"]  # the members are 2 bits apart: only the identical pair stays
    assert left["features"] == ["shop/legal", "shop/support"]
    assert families(99).status_code == 400
    recommended = httpx.get(collector.url + "/api/v1/recommendations").json()["recommendations"]
    kinds = {r["kind"]: r for r in recommended}
    downgrade = kinds["family_downgrade"]
    assert "cheaper gpt-4o-mini" in downgrade["title"]
    # 200 gpt-4o calls a day moved to gpt-4o-mini save (0.012 - 0.0008) each, over a 30-day month
    assert Decimal(downgrade["monthly_savings_usd"]) > 0
    assert "shared_prefix" in kinds and "2 features send" in kinds["shared_prefix"]["title"]


def test_families_gather_prompts_whose_signatures_differ_with_every_call(collector: BackgroundCollector) -> None:
    """Real traffic: one long instruction and a different question each call, so nearly every call has a signature
    of its own; the rollup keeps one row per feature, model and template, and their centroids make the family."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(3000)]
    words = lambda n: " ".join(rng.choice(vocab) for _ in range(n))  # noqa: E731
    shared, other = words(300), words(300)
    calls, signatures = [], set()
    for i in range(600):
        feature, model, system = [("search", "gpt-4o", shared), ("faq", "gpt-4o-mini", shared),
                                  ("legal", "gpt-4o", other)][i % 3]  # fmt: skip
        signature = int(simhash(_prompt(system, "Answer: " + words(20)), KEY), 16)
        signatures.add(signature)
        template = template_fingerprint(_prompt(system, ""), KEY)
        calls.append(dataclasses.replace(_call(i, feature, model, signature, "0.01"), template_fingerprint=template))
    assert len(signatures) > 550  # a signature per call, near enough
    ledger = Ledger(collector.collector.dsn, collector.collector.schema)
    ledger.write(calls)
    ledger.close()
    with collector.collector.pool.connection() as conn:
        (rows,) = conn.execute("SELECT count(*) FROM llm_rollup_signature_day").fetchone()  # type: ignore[misc]
    assert rows == 3  # one per feature, model and template: not one per signature
    (family,) = similarity.families(collector.collector.pool)
    assert sorted((m.feature, m.model, m.calls) for m in family.members) == [
        ("faq", "gpt-4o-mini", 200),
        ("search", "gpt-4o", 200),
    ]


def test_a_langchain_prompt_template_names_and_versions_the_model_call(
    fake: FakeProvider, spans: Any, instrumented: None
) -> None:
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    from llmmeter import semconv

    model = ChatOpenAI(model="gpt-4o-mini", base_url=fake.openai_base_url, api_key="x")
    triage = ChatPromptTemplate.from_messages([("system", "Route the ticket about {product}."), ("user", "{ticket}")])
    triage.name = "triage"
    (triage.with_config(metadata={"prompt_version": "7"}) | model).invoke({"product": "shoes", "ticket": "too big"})
    (triage | model).invoke({"product": "hats", "ticket": "lost parcel"})  # the same template, other variables
    edited = ChatPromptTemplate.from_messages(
        [("system", "Route the ticket about {product}, briefly."), ("user", "{ticket}")]
    )
    edited.name = "triage"
    (edited | model).invoke({"product": "shoes", "ticket": "too big"})
    llm = [s for s in spans.get_finished_spans() if (s.attributes or {}).get(semconv.LANGCHAIN_RUN_TYPE) == "llm"]
    assert len(llm) == 3
    names = {s.attributes[semconv.PROMPT_NAME] for s in llm}  # type: ignore[index]
    assert names == {"triage"} and llm[0].attributes[semconv.PROMPT_VERSION] == "7"  # type: ignore[index]
    assert semconv.PROMPT_VERSION not in llm[1].attributes  # type: ignore[operator]
    fingerprints = [s.attributes[semconv.PROMPT_TEMPLATE_FINGERPRINT] for s in llm]  # type: ignore[index]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
    # the provider SDK's span inside each model run says the same: whichever span the collector prices, it is named
    finished = spans.get_finished_spans()
    sdk = [child for span in llm for child in sdk_children(span, finished)]
    assert [s.attributes[semconv.PROMPT_TEMPLATE_FINGERPRINT] for s in sdk] == fingerprints  # type: ignore[index]
    assert {s.attributes[semconv.PROMPT_NAME] for s in sdk} == {"triage"}  # type: ignore[index]
