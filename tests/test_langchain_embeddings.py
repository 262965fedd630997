"""LangChain embeddings (no LangChain callbacks exist for them): one span per call, priced exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import openai
import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_openai import OpenAIEmbeddings
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import llmmeter

from .langchain_toys import billable_with_usage, one, parent_of, sdk_children

MODEL = "text-embedding-3-small"


def _langchain_embedding_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.attributes and s.attributes.get("llmmeter.langchain.run_type") == "embeddings"]


def _embeddings(fake: object, **kwargs: object) -> OpenAIEmbeddings:
    # check_embedding_ctx_length=False: no tiktoken download (offline); the request is the same otherwise
    return OpenAIEmbeddings(
        model=MODEL,
        base_url=fake.openai_base_url,  # type: ignore[attr-defined]
        api_key="x",
        check_embedding_ctx_length=False,
        **kwargs,
    )


def test_openai_embeddings_through_langchain_are_priced_once(
    fake: object, spans: InMemorySpanExporter, instrumented: None
) -> None:
    embeddings = _embeddings(fake)
    with llmmeter.attributes(feature="indexing"):
        vectors = embeddings.embed_documents(["one two", "three"])
        query = embeddings.embed_query("hello world")
        async_vectors = asyncio.run(embeddings.aembed_documents(["one two", "three"]))

    assert len(vectors) == 2 and len(query) == len(vectors[0]) and async_vectors == vectors
    finished = spans.get_finished_spans()
    langchain_spans = _langchain_embedding_spans(finished)
    assert len(langchain_spans) == 3  # embed_query -> embed_documents is one call, not two
    expected_inputs = [3 + 10, 2 + 10, 3 + 10]  # fake provider: words + 10
    for span, input_tokens in zip(
        sorted(langchain_spans, key=lambda s: s.start_time or 0), expected_inputs, strict=True
    ):
        assert span.name == f"embeddings {MODEL}"
        assert span.kind == SpanKind.CLIENT
        assert span.attributes["gen_ai.operation.name"] == "embeddings"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["llmmeter.feature"] == "indexing"
        assert span.attributes["llmmeter.billable"] is False  # the SDK span underneath carries the usage
        (sdk,) = sdk_children(span, finished)
        assert sdk.attributes["gen_ai.usage.input_tokens"] == input_tokens
        assert sdk.attributes["llmmeter.feature"] == "indexing"
    assert len(billable_with_usage(finished)) == 3


class _VectorRetriever(BaseRetriever):
    """A retriever that embeds its query, as a vector store retriever does."""

    embeddings: Embeddings

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        vector = self.embeddings.embed_query(query)
        return [Document(page_content=f"{len(vector)} dimensions")]


def test_embeddings_in_a_retriever_are_a_step_of_the_rag_waterfall(
    fake: object, spans: InMemorySpanExporter, instrumented: None
) -> None:
    retriever = _VectorRetriever(embeddings=_embeddings(fake)).with_config(run_name="docs")
    documents = retriever.invoke("where is Paris", config={"metadata": {"feature": "rag"}})

    assert documents[0].page_content.endswith("dimensions")
    finished = spans.get_finished_spans()
    retriever_span = one(finished, "docs")
    assert retriever_span.attributes["llmmeter.langchain.run_type"] == "retriever"
    (embedding_span,) = _langchain_embedding_spans(finished)
    assert parent_of(embedding_span, finished) is retriever_span
    assert embedding_span.attributes["llmmeter.feature"] == "rag"  # the retriever run's metadata
    (priced,) = billable_with_usage(finished)
    assert parent_of(priced, finished) is embedding_span
    assert priced.attributes["llmmeter.feature"] == "rag"


def test_embeddings_class_without_instrumented_sdk_is_billable_with_usage_missing(
    spans: InMemorySpanExporter, instrumented: None
) -> None:
    class LocalEmbeddings(Embeddings):  # defined after instrument(): wrapped through __init_subclass__
        model: str = "local-embed"

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[float(len(t)), 1.0] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    assert LocalEmbeddings().embed_query("abc") == [3.0, 1.0]
    assert asyncio.run(LocalEmbeddings().aembed_query("abcd")) == [4.0, 1.0]  # base class async -> sync method

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["embeddings local-embed", "embeddings local-embed"]
    for span in finished:
        assert span.attributes.get("llmmeter.billable") is not False
        assert span.attributes["llmmeter.usage.missing"] is True  # visible as a call, never a silent $0
        assert span.attributes["gen_ai.provider.name"] == "tests"  # the package the class lives in


def test_embeddings_error_is_recorded_and_reaches_the_app(
    fake: object, spans: InMemorySpanExporter, instrumented: None
) -> None:
    fake.fail_next(status=400, count=1)  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError):
        _embeddings(fake, max_retries=0).embed_documents(["x"])

    finished = spans.get_finished_spans()
    (span,) = _langchain_embedding_spans(finished)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "BadRequestError"
    (sdk,) = sdk_children(span, finished)
    assert sdk.status.status_code == StatusCode.ERROR


def test_uninstrument_restores_embeddings_classes(fake: object, spans: InMemorySpanExporter) -> None:
    original = OpenAIEmbeddings.__dict__["embed_documents"]
    llmmeter.instrument(configure_export=False)
    assert OpenAIEmbeddings.__dict__["embed_documents"] is not original
    llmmeter.uninstrument()
    assert OpenAIEmbeddings.__dict__["embed_documents"] is original
    assert "__init_subclass__" not in Embeddings.__dict__
    _embeddings(fake).embed_documents(["x"])
    assert spans.get_finished_spans() == ()
