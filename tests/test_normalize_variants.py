"""One LlmCall per GenAI span whatever instrumentation sent it: table-driven, spans built as each emits them.

Sources for the attribute sets below (what each instrumentation sets on a span):
- OTel semconv v1.37+ gen-ai-spans.md; llmmeter's SDK (instrumentation/llmmeter); opentelemetry-python-contrib
  instrumentation-genai/opentelemetry-instrumentation-openai-v2 (gen_ai.system="openai" before 1.37,
  gen_ai.openai.response.service_tier), -google-genai (gen_ai.system="gemini", generate_content).
- Older semconv (<= v1.26): gen_ai.usage.prompt_tokens / completion_tokens.
- OpenLLMetry (traceloop/openllmetry): opentelemetry-instrumentation-anthropic __init__.py `_set_token_usage`
  (gen_ai.system="Anthropic", llm.request.type="completion" on span "anthropic.chat", input_tokens =
  input + cache_read + cache_creation, llm.usage.total_tokens); -openai (gen_ai.usage.prompt_tokens,
  gen_ai.usage.cache_read_input_tokens, llm.is_streaming); -bedrock (gen_ai.system="AWS").
- OpenLIT (openlit/openlit sdk/python/src/openlit): resource telemetry.sdk.name="openlit"; semcov/__init__.py
  (gen_ai.usage.cost, gen_ai.request.is_stream, gen_ai.server.time_to_first_token, gen_ai.environment,
  gen_ai.system values "anthropic", "vertex_ai", "az.ai.openai"); instrumentation/anthropic/utils.py
  (gen_ai.usage.input_tokens = Anthropic's raw input_tokens, cache tokens reported beside it).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from llmmeter_collector.ingest import normalize as nm
from llmmeter_collector.ingest.normalize import Normalized
from llmmeter_collector.llmcall import LlmCall
from llmmeter_collector.pricing import PriceCatalog

from .test_otlp_fields import any_value as _value

_READER = {"name": "c"}


@pytest.fixture(autouse=True, params=["c", "python"])
def reader(request: pytest.FixtureRequest) -> str:
    """Every case twice: attributes read from the protobuf bytes in C, and through the protobuf runtime."""
    assert nm._c_span_fields is not None, "the C attribute reader was not built (hatch_build.py)"
    _READER["name"] = request.param
    return str(request.param)


def normalize(request: ExportTraceServiceRequest) -> Normalized:
    body = request.SerializeToString() if _READER["name"] == "c" else None
    return nm.normalize(request, body=body)


NOW = time.time_ns()


def export(
    attrs: dict[str, Any], resource: dict[str, Any] | None = None, name: str = "chat", error: bool = False
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(KeyValue(key=k, value=_value(v)) for k, v in (resource or {}).items())
    span = rs.scope_spans.add().spans.add()
    span.trace_id = bytes(range(16))
    span.span_id = bytes(range(1, 9))
    span.name = name
    span.start_time_unix_nano = NOW
    span.end_time_unix_nano = NOW + 2_000_000_000
    if error:
        span.status.code = Status.STATUS_CODE_ERROR
    span.attributes.extend(KeyValue(key=k, value=_value(v)) for k, v in attrs.items())
    return request


def one(request: ExportTraceServiceRequest) -> LlmCall:
    result = normalize(request)
    assert result.rejected == [], result.rejected
    assert len(result.calls) == 1
    return result.calls[0]


OPENLIT = {"service.name": "bot", "deployment.environment": "prod", "telemetry.sdk.name": "openlit"}

# (case, resource, span name, attributes, expected LlmCall fields)
CASES: list[tuple[str, dict[str, Any] | None, str, dict[str, Any], dict[str, Any]]] = [
    (
        "llmmeter / semconv v1.37+ OpenAI, cached input included",
        {"service.name": "shop", "deployment.environment.name": "staging"},
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 300, "gen_ai.usage.cache_read.input_tokens": 400,
            "gen_ai.usage.reasoning.output_tokens": 0, "gen_ai.request.stream": True,
            "gen_ai.response.time_to_first_chunk": 0.25, "llmmeter.feature": "search", "user.id": "u1",
            "session.id": "s1", "llmmeter.tag.team": "growth", "llmmeter.retries": 2,
            "openai.response.service_tier": "flex",
        },
        {
            "provider": "openai", "model": "gpt-4o-2024-08-06", "input": 1000, "cache_read": 400, "output": 300,
            "streaming": True, "ttfc_s": 0.25, "feature": "search", "user_id": "u1", "session_id": "s1",
            "tags": {"team": "growth"}, "retries": 2, "service_tier": "flex", "environment": "staging",
            "service_name": "shop",
        },
    ),
    (
        "official openai-v2 before v1.37 (gen_ai.system)",
        None,
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5,
            "gen_ai.openai.response.service_tier": "default",
        },
        {"provider": "openai", "model": "gpt-4o-mini", "input": 50, "output": 5, "service_tier": "default"},
    ),
    (
        "semconv <= v1.26 prompt/completion tokens",
        None,
        "chat",
        {
            "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 70, "gen_ai.usage.completion_tokens": 7,
        },
        {"provider": "openai", "operation": "chat", "input": 70, "output": 7},
    ),
    (
        "newest cache_write name, Anthropic by a convention-following sender",
        None,
        "chat claude-sonnet-4-5",
        {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 1500,
            "gen_ai.usage.cache_write.input_tokens": 1000, "gen_ai.usage.output_tokens": 20,
            "llmmeter.usage.cache_creation_1h.input_tokens": 400,
        },
        {"provider": "anthropic", "input": 1500, "cache_write": 1000, "cache_write_1h": 400, "output": 20},
    ),
    (
        "OpenLLMetry OpenAI (llm.request.type, prompt tokens, cache_read_input_tokens, llm.is_streaming)",
        {"service.name": "rag"},
        "openai.chat",
        {
            "gen_ai.system": "openai", "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.prompt_tokens": 2000,
            "gen_ai.usage.completion_tokens": 100, "llm.usage.total_tokens": 2100,
            "gen_ai.usage.cache_read_input_tokens": 1024, "llm.is_streaming": True,
        },
        {"provider": "openai", "input": 2000, "cache_read": 1024, "output": 100, "streaming": True,
         "operation": "chat"},
    ),
    (
        "OpenLLMetry Anthropic (capitalised system, 'completion' on anthropic.chat, input already includes cache)",
        None,
        "anthropic.chat",
        {
            "gen_ai.system": "Anthropic", "llm.request.type": "completion",
            "gen_ai.request.model": "claude-3-5-sonnet-20241022", "gen_ai.response.model": "claude-3-5-sonnet-20241022",
            "gen_ai.usage.input_tokens": 6200, "gen_ai.usage.output_tokens": 80, "llm.usage.total_tokens": 6280,
            "gen_ai.usage.cache_read_input_tokens": 5000, "gen_ai.usage.cache_creation_input_tokens": 1000,
        },
        {"provider": "anthropic", "operation": "chat", "input": 6200, "cache_read": 5000, "cache_write": 1000},
    ),
    (
        "OpenLLMetry Bedrock (gen_ai.system AWS)",
        None,
        "bedrock.completion",
        {
            "gen_ai.system": "AWS", "llm.request.type": "completion",
            "gen_ai.request.model": "anthropic.claude-3-haiku-20240307-v1:0",
            "gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.completion_tokens": 3,
        },
        {"provider": "aws.bedrock", "operation": "text_completion", "input": 10},
    ),
    (
        "OpenLIT Anthropic: raw input_tokens, cache beside it, its own cost, stream + TTFT",
        OPENLIT,
        "chat claude-3-5-sonnet-latest",
        {
            "gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet-latest", "gen_ai.response.model": "claude-3-5-sonnet-20241022",
            "gen_ai.usage.input_tokens": 200, "gen_ai.usage.output_tokens": 80,
            "gen_ai.usage.cache_read_input_tokens": 5000, "gen_ai.usage.cache_creation_input_tokens": 1000,
            "gen_ai.usage.cost": 0.0123, "gen_ai.request.is_stream": True, "gen_ai.server.time_to_first_token": 0.42,
            "gen_ai.environment": "production", "gen_ai.application_name": "bot",
        },
        {
            "provider": "anthropic", "input": 6200, "cache_read": 5000, "cache_write": 1000, "output": 80,
            "reported_cost": Decimal("0.0123"), "streaming": True, "ttfc_s": 0.42, "environment": "production",
        },
    ),
    (
        "OpenLIT OpenAI: prompt tokens include cached ones (only Anthropic counts are raw)",
        OPENLIT,
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cache_read_input_tokens": 400, "gen_ai.response.service_tier": "priority",
            "gen_ai.usage.reasoning_tokens": 4,
        },
        {"provider": "openai", "input": 1000, "cache_read": 400, "service_tier": "priority", "reasoning": 4,
         "environment": "prod"},
    ),
    (
        "OpenLIT Vertex AI and Azure OpenAI system names",
        OPENLIT,
        "chat gemini-2.0-flash",
        {
            "gen_ai.operation.name": "chat", "gen_ai.system": "vertex_ai", "gen_ai.request.model": "gemini-2.0-flash",
            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1,
        },
        {"provider": "gcp.vertex_ai"},
    ),
    (
        "official google-genai (gen_ai.system gemini, generate_content)",
        None,
        "generate_content gemini-2.5-flash",
        {
            "gen_ai.operation.name": "generate_content", "gen_ai.system": "gemini",
            "gen_ai.request.model": "gemini-2.5-flash", "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 30,
        },
        {"provider": "gcp.gemini", "operation": "generate_content"},
    ),
    (
        "an unknown sender reporting Anthropic's raw count (input < cached): cache added",
        None,
        "chat",
        {
            "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 5000,
        },
        {"provider": "anthropic", "input": 5100, "cache_read": 5000},
    ),
    (
        "llmmeter batch call, a refused call the provider did not bill, error status",
        None,
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "llmmeter.batch": True, "llmmeter.provider_billed": False, "error.type": "RateLimitError",
        },
        {"batch": True, "billable": False, "status": "error", "error_type": "RateLimitError", "usage_missing": True},
    ),
]  # fmt: skip

_FIELDS = {
    "input": lambda c: c.usage.input_tokens,
    "output": lambda c: c.usage.output_tokens,
    "cache_read": lambda c: c.usage.cache_read_tokens,
    "cache_write": lambda c: c.usage.cache_write_tokens,
    "cache_write_1h": lambda c: c.usage.cache_write_1h_tokens,
    "reasoning": lambda c: c.usage.reasoning_tokens,
    "model": lambda c: c.model,
}


@pytest.mark.parametrize(("case", "resource", "name", "attrs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_instrumentation_is_read_the_same_way(
    case: str, resource: dict[str, Any] | None, name: str, attrs: dict[str, Any], expected: dict[str, Any]
) -> None:
    call = one(export(attrs, resource, name))
    got = {key: (_FIELDS[key](call) if key in _FIELDS else getattr(call, key)) for key in expected}
    assert got == expected


def test_openlit_and_llmmeter_spans_of_the_same_anthropic_call_cost_the_same() -> None:
    catalog = PriceCatalog()
    usage = {"gen_ai.usage.output_tokens": 80, "gen_ai.usage.cache_read.input_tokens": 5000}
    model = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-3-5-sonnet-20241022"}
    ours = one(export({**model, **usage, "gen_ai.provider.name": "anthropic", "gen_ai.usage.input_tokens": 5200}))
    openlit = one(export({**model, **usage, "gen_ai.system": "anthropic", "gen_ai.usage.input_tokens": 200}, OPENLIT))
    a, b = catalog.price(ours), catalog.price(openlit)
    assert a is not None and b is not None
    # claude-3.5-sonnet: $3/M input, $0.30/M cache read, $15/M output (anthropic.com/pricing)
    assert a.total == b.total == Decimal(200 * 3 + 5000 * Decimal("0.30") + 80 * 15) / 10**6


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"gen_ai.usage.input_tokens": "lots"}, "input tokens is not a number: 'lots'"),
        ({"gen_ai.usage.output_tokens": 10**12}, "output tokens is absurdly large"),
        (
            {"gen_ai.usage.cache_creation.input_tokens": 10, "llmmeter.usage.cache_creation_1h.input_tokens": 20},
            "1h cache creation tokens exceed cache creation tokens",
        ),
        ({"gen_ai.request.model": ""}, "missing model"),
    ],
)
def test_invalid_usage_is_rejected_with_the_field_named(attrs: dict[str, Any], message: str) -> None:
    base = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5}
    result = normalize(export({**base, **attrs}))
    assert result.calls == [] and result.rejected_count == 1
    assert message in result.rejected[0]


@pytest.mark.parametrize(
    "attrs",
    [
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "gen_ai.provider.name": "openai"},
        {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "llmmeter.billable": False},
        {"http.request.method": "POST", "url.full": "https://api.openai.com/v1/chat/completions"},
        {"gen_ai.system": "langchain", "llm.request.type": "rerank", "gen_ai.request.model": "x"},
        # the Anthropic SDK's own span for the free messages.count_tokens: provider and model, no operation/usage
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-haiku-4-5",
            "anthropic.message.count_tokens.input_tokens": 42,
        },
    ],
    ids=["agent", "tool", "not-billable", "http", "framework", "anthropic-count-tokens"],
)
def test_spans_that_are_not_billable_calls_are_passed_over(attrs: dict[str, Any]) -> None:
    result = normalize(export(attrs))
    assert result.calls == [] and result.rejected == [] and result.other_spans == 1


@pytest.mark.parametrize("newest_first", [True, False], ids=["v1.37-name-first", "older-name-first"])
def test_the_newest_name_wins_whatever_order_the_variants_come_in(newest_first: bool) -> None:
    variants = [("gen_ai.usage.input_tokens", 1000), ("gen_ai.usage.prompt_tokens", 7), ("llm.usage.prompt_tokens", 9)]
    attrs = dict(variants if newest_first else variants[::-1])
    attrs |= {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.system": "anthropic"}
    attrs |= {"gen_ai.usage.completion_tokens": "", "llm.usage.completion_tokens": 5}  # empty: the next variant
    call = one(export(attrs))
    assert call.usage.input_tokens == 1000 and call.usage.output_tokens == 5
    assert call.provider == "openai"  # gen_ai.provider.name over the older gen_ai.system
