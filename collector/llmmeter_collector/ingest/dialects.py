"""Every GenAI dialect the collector reads, in ONE table: how it is detected, which of its attribute names map
to which llmmeter field, where its token classes differ from the GenAI convention, and what it does not report.

The GenAI convention's own names and their older spellings live in ``semconv`` (``PROVIDER_KEYS``,
``INPUT_TOKEN_KEYS``, …) and are read for every span. A dialect adds the names only it uses (ranked after the
convention's, so a span carrying both reads the convention's) and, through ``adapt``, corrects what it reports
differently. The table was checked against real captures (``tests/interop/fixtures``, ``docs/instrumentations.md``).

A dialect is detected by its instrumentation scope name (prefix) or, when the scope says nothing (Langfuse
and OpenInference spans can come through any tracer), by a marker attribute on the span.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from llmmeter_collector import semconv as sc

_Fields = dict[str, Any]  # normalize's {field: value} of one span


@dataclass(frozen=True)
class Dialect:
    """One instrumentation's way of writing a GenAI span."""

    name: str
    scopes: tuple[str, ...] = ()  # instrumentation scope names (prefixes) that identify it
    markers: tuple[str, ...] = ()  # llmmeter fields (from ``attributes``) whose presence identifies it
    attributes: Mapping[str, str] = field(default_factory=dict)  # attribute key -> llmmeter field
    adapt: Callable[[_Fields], None] | None = None  # corrections, applied in place before the call is built
    missing: Mapping[str, frozenset[str]] = field(default_factory=dict)  # provider -> token classes never reported


# --- corrections ------------------------------------------------------------------------------------------
def _gemini(fields: _Fields) -> bool:
    provider = str(fields.get("provider", "")).strip().lower()
    return sc.PROVIDER_ALIASES.get(provider, provider) in ("gcp.gemini", "gcp.vertex_ai")


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _output_from_total(fields: _Fields) -> None:
    """OpenLLMetry on Gemini: output is ``candidatesTokenCount`` (thinking excluded), with no reasoning attribute;
    the total (``totalTokenCount`` = prompt + candidates + thoughts) gives the thinking tokens back."""
    if not _gemini(fields):
        return
    total, input_tokens, output = (_int(fields.get(k)) for k in ("total", "input", "output"))
    if total is None or input_tokens is None or output is None or "reasoning" in fields:
        return
    thinking = total - input_tokens - output
    if thinking > 0:
        fields["output"] = output + thinking
        fields["reasoning"] = thinking


def _openlit(fields: _Fields) -> None:
    """OpenLIT on Gemini: output is ``candidatesTokenCount``; thinking is only in ``gen_ai.usage.reasoning_tokens``.
    OpenLIT's ``gen_ai.usage.cost`` is 0 for any model its own price list lacks: that 0 is "unknown", not free."""
    output, reasoning = _int(fields.get("output")), _int(fields.get("reasoning"))
    if _gemini(fields) and output is not None and reasoning:
        fields["output"] = output + reasoning
    cost = fields.get("reported_cost")
    if cost is not None and _float(cost) == 0 and (_int(fields.get("input")) or _int(fields.get("output"))):
        del fields["reported_cost"]


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_LANGFUSE_USAGE: Final = {  # usage_details key -> field (Langfuse's own names and the provider's it passes on)
    "input": "input",
    "output": "output",
    "total": "total",
    "prompt_tokens": "input",
    "completion_tokens": "output",
    "total_tokens": "total",
    "prompt_tokens_details.cached_tokens": "cache_read",
    "completion_tokens_details.reasoning_tokens": "reasoning",
    "input_tokens": "input",
    "output_tokens": "output",
    "input_tokens_details.cached_tokens": "cache_read",
    "output_tokens_details.reasoning_tokens": "reasoning",
    "input_cached_tokens": "cache_read",
    "input_cache_read": "cache_read",
    "cache_read_input_tokens": "cache_read",
    "input_cache_creation": "cache_write",
    "cache_creation_input_tokens": "cache_write",
    "output_reasoning_tokens": "reasoning",
    "output_reasoning": "reasoning",
}


def _usage_json(fields: _Fields, raw: Any) -> None:
    """Fill the token fields the span lacks from a JSON usage object (the provider's, or Langfuse's names)."""
    try:
        usage = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        usage = None
    if isinstance(usage, dict):
        flat = dict(usage)
        for key, value in usage.items():  # the provider's own usage, passed on with its nested details
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
        for key, value in flat.items():
            name = _LANGFUSE_USAGE.get(key)
            if name is not None and name not in fields and isinstance(value, int | float):
                fields[name] = int(value)


def _langfuse(fields: _Fields) -> None:
    """Langfuse: the usage is one JSON object (``langfuse.observation.usage_details``); the provider is in the
    model parameters or not at all (the model name then tells it)."""
    _usage_json(fields, fields.pop("langfuse_usage", None))
    cost = fields.pop("langfuse_cost", None)  # cost_details: {"input": …, "output": …, "total": …} in USD
    try:
        total = json.loads(cost).get("total") if isinstance(cost, str) else None
    except (ValueError, AttributeError):
        total = None
    if isinstance(total, int | float) and not isinstance(total, bool) and "reported_cost" not in fields:
        fields["reported_cost"] = total
    if fields.get("langfuse_type") == "generation" and "provider" not in fields:
        model = str(fields.get("request_model") or fields.get("response_model") or "")
        fields["provider"] = _provider_from_model(model)
    if "provider" in fields and "operation" not in fields:
        fields["operation"] = "chat"


def _provider_from_model(model: str) -> str:
    """The provider a model name belongs to, for a dialect that does not say (Langfuse)."""
    name = model.lower()
    if name.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci", "babbage")):
        return "openai"
    if name.startswith("claude"):
        return "anthropic"
    if name.startswith(("gemini", "models/gemini")):
        return "gcp.gemini"
    return "unknown"


def _logfire(fields: _Fields) -> None:
    """Logfire: a streamed call's span carries no usage; the log span written when the stream ends does. The
    provider's own usage (``gen_ai.usage.raw``) has the reasoning tokens the attributes leave out."""
    _usage_json(fields, fields.pop("logfire_usage", None))
    if "input" not in fields and "output" not in fields:
        fields.pop("provider", None)
        fields["skip"] = True


def _openinference(fields: _Fields) -> None:
    """OpenInference: only LLM and EMBEDDING spans are calls (CHAIN, TOOL, AGENT, … are not)."""
    if "oi_kind" not in fields:
        return  # no span kind: read like any span (and, with a model or tokens, counted by doctor if not a call)
    kind = str(fields["oi_kind"]).upper()
    if kind not in ("LLM", "EMBEDDING"):
        fields.pop("provider", None)
        fields["skip"] = True  # a chain, tool, agent, … span: its tokens (if any) are its LLM children's
        return
    if "operation" not in fields:
        fields["operation"] = "embeddings" if kind == "EMBEDDING" else "chat"
    raw = fields.pop("oi_parameters", None)  # llm.invocation_parameters: the request's JSON (stream, tier, …)
    try:
        parameters = json.loads(raw) if isinstance(raw, str) and len(raw) < 65_536 else None
    except ValueError:
        parameters = None
    if isinstance(parameters, dict):
        if "stream" not in fields and isinstance(parameters.get("stream"), bool):
            fields["stream"] = parameters["stream"]
        if "service_tier" not in fields and isinstance(parameters.get("service_tier"), str):
            fields["service_tier"] = parameters["service_tier"]


# --- the table ----------------------------------------------------------------------------------------------
_NO_CHAT_DETAIL: Final = frozenset({"cache_read", "reasoning"})

DIALECTS: Final[tuple[Dialect, ...]] = (
    Dialect("llmmeter", scopes=("llmmeter",)),
    Dialect(
        "otel-openai-v2",  # opentelemetry-instrumentation-openai-v2 (through opentelemetry-util-genai)
        scopes=("opentelemetry.instrumentation.openai_v2", "opentelemetry.util.genai"),
        missing={"openai": _NO_CHAT_DETAIL},
    ),
    Dialect("otel-google-genai", scopes=("opentelemetry.instrumentation.google_genai",)),
    Dialect(
        "anthropic-sdk",
        scopes=("com.anthropic.sdk",),
        attributes={"anthropic.usage.cache_creation.ephemeral_1h_input_tokens": "cache_write_1h"},
    ),
    Dialect(
        "openllmetry",  # traceloop's opentelemetry-instrumentation-{openai,anthropic,google_generativeai,…}
        scopes=(
            "opentelemetry.instrumentation.openai.",
            "opentelemetry.instrumentation.anthropic",
            "opentelemetry.instrumentation.google_generativeai",
            "opentelemetry.instrumentation.vertexai",
            "opentelemetry.instrumentation.bedrock",
        ),
        attributes={
            "gen_ai.is_streaming": "stream",
            "gen_ai.usage.total_tokens": "total",
            "llm.usage.total_tokens": "total",
        },
        adapt=_output_from_total,
        missing={"openai": frozenset({"reasoning"})},
    ),
    Dialect(
        "openlit",
        scopes=("openlit.",),
        adapt=_openlit,
        missing={"openai": frozenset({"reasoning"})},
    ),
    Dialect(
        "openinference",  # Arize's openinference-instrumentation-*
        scopes=("openinference.instrumentation.",),
        markers=("oi_kind",),
        attributes={
            "openinference.span.kind": "oi_kind",
            "llm.invocation_parameters": "oi_parameters",
            "llm.provider": "provider",
            "llm.system": "provider",
            "llm.model_name": "request_model",
            "llm.token_count.prompt": "input",
            "llm.token_count.completion": "output",
            "llm.token_count.total": "total",
            "llm.token_count.prompt_details.cache_read": "cache_read",
            "llm.token_count.prompt_details.cache_write": "cache_write",
            "llm.token_count.completion_details.reasoning": "reasoning",
            "llm.token_count.prompt_details.audio": "audio_input",
            "llm.token_count.completion_details.audio": "audio_output",
        },
        adapt=_openinference,
    ),
    Dialect(
        "langfuse",
        scopes=("langfuse",),
        markers=("langfuse_type",),
        attributes={
            "langfuse.observation.type": "langfuse_type",
            "langfuse.observation.model.name": "request_model",
            "langfuse.observation.usage_details": "langfuse_usage",
            "langfuse.observation.cost_details": "langfuse_cost",
        },
        adapt=_langfuse,
    ),
    Dialect("logfire", scopes=("logfire",), attributes={"gen_ai.usage.raw": "logfire_usage"}, adapt=_logfire),
)

NUMBER_FIELDS: Final = frozenset({"total"})  # dialect-only fields read as numbers (the others are text)
_BY_NAME: Final = {d.name: d for d in DIALECTS}
UNKNOWN: Final = Dialect("unknown")
_MARKERS: Final = tuple((marker, d) for d in DIALECTS for marker in d.markers)


def attribute_fields() -> dict[str, str]:
    """Every dialect attribute key -> llmmeter field (normalize reads them after the convention's names)."""
    out: dict[str, str] = {}
    for dialect in DIALECTS:
        for key, name in dialect.attributes.items():
            out.setdefault(key, name)
    return out


def by_name(name: str) -> Dialect:
    return _BY_NAME.get(name, UNKNOWN)


@functools.lru_cache(maxsize=1024)
def for_scope(scope: str) -> Dialect:
    """The dialect an instrumentation scope name belongs to (``UNKNOWN``: decided per span by its markers)."""
    for dialect in DIALECTS:
        if scope and any(scope == s or scope.startswith(s) for s in dialect.scopes):
            return dialect
    return UNKNOWN


def adapt(scoped: Dialect, fields: _Fields) -> Dialect:
    """Apply the span's dialect corrections to ``fields`` in place; returns the span's dialect."""
    dialect = scoped
    if dialect is UNKNOWN:
        for marker, candidate in _MARKERS:
            if marker in fields:
                dialect = candidate
                break
    if dialect.adapt is not None:
        dialect.adapt(fields)
    elif "oi_kind" in fields:
        _openinference(fields)  # OpenInference attributes through another tracer's scope
    if "langfuse_type" in fields and dialect.adapt is not _langfuse:
        _langfuse(fields)  # a Langfuse observation made through another tracer's scope
    return dialect


def missing_classes(dialect: Dialect, provider: str, fields: _Fields) -> tuple[str, ...]:
    """Token classes the dialect is known not to report for ``provider`` and the span did not carry."""
    return tuple(sorted(c for c in dialect.missing.get(provider, ()) if c not in fields))


# --- spans that look like GenAI but are not counted (``llmmeter doctor``) ----------------------------------
NO_PROVIDER: Final = "no_provider"  # model or token counts under names we read, but no provider attribute
UNKNOWN_NAMES: Final = "unknown_attributes"  # model or token counts under names no dialect here uses
_MODEL_OR_USAGE: Final = frozenset(
    {"request_model", "response_model", "input", "output", "total", "cache_read", "cache_write", "reasoning"}
)
_TOKEN_WORDS: Final = ("token",)
_LOOKS_GENAI: dict[str, bool] = {}  # attribute key -> whether it names a model or token count (a bounded cache)
_LOOKS_GENAI_MAX: Final = 10_000
_MODEL_SUFFIXES: Final = (".model", "_model", ".model_name", ".model_id", ".modelid", ".model.name")


def why_not_counted(fields: _Fields, attributes: Iterable[Any]) -> str | None:
    """Why a span that is not an LLM call still looks like one (a reason for ``doctor``), or None when it is
    deliberately not a call (agent/tool spans, ``llmmeter.billable=false``, a free API call, no GenAI at all).

    ``attributes`` (the span's key-values) are only scanned for spans none of whose names we read.
    """
    if fields:
        if fields.get("skip") or fields.get("billable") is False or "provider" in fields:
            return None
        operation = fields.get("operation", fields.get("legacy_operation"))
        if operation is not None and str(operation).lower() not in sc.BILLABLE_OPERATIONS:
            return None  # an agent, tool or other non-model operation
        if _MODEL_OR_USAGE.intersection(fields):
            return NO_PROVIDER
    looks = _LOOKS_GENAI
    for kv in attributes:
        key = kv.key
        verdict = looks.get(key)
        if verdict is None:
            lowered = key.lower()
            verdict = any(word in lowered for word in _TOKEN_WORDS) or lowered.endswith(_MODEL_SUFFIXES)
            if len(looks) < _LOOKS_GENAI_MAX:
                looks[key] = verdict
        if verdict:
            return UNKNOWN_NAMES
    return None
