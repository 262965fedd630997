"""The collector's one record of an LLM call, whatever convention its span arrived in."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

# The token classes a price can depend on. ``input_tokens`` is the total prompt (cached tokens included,
# as the GenAI convention counts it); the classes below it are parts of it. Likewise ``reasoning_tokens``
# and ``output_audio_tokens`` are parts of ``output_tokens``.
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
)

# Cost classes, each priced exactly once. Their sum is the total.
COST_CLASSES = ("input", "cache_read", "cache_write", "output", "input_audio", "output_audio", "request")


@dataclass(slots=True)
class Usage:
    """Token counts of one call. Sub-classes are included in their parent count (see TOKEN_FIELDS)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # 5-minute and 1-hour writes together
    cache_write_1h_tokens: int = 0  # the 1-hour part of cache_write_tokens
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0


@dataclass(slots=True)
class Cost:
    """An exact cost breakdown in USD. ``parts`` maps a COST_CLASSES name to its amount."""

    total: Decimal
    parts: dict[str, Decimal]
    price_source: str  # "catalog", "override", ...


@dataclass(slots=True)
class LlmCall:
    """One GenAI call as the collector prices and stores it."""

    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    start_ns: int
    end_ns: int
    provider: str
    operation: str
    request_model: str
    response_model: str = ""
    response_id: str = ""
    parent_span_id: str = ""
    service_name: str = ""
    project: str = ""
    feature: str = ""
    environment: str = ""
    user_id: str = ""
    session_id: str = ""
    experiment: str = ""
    variant: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    usage_missing: bool = False
    usage_incomplete: tuple[str, ...] = ()  # token classes the instrumentation is known not to report (dialects)
    service_tier: str = ""
    batch: bool = False
    streaming: bool = False
    billable: bool = True
    status: str = "ok"  # "ok" or "error"
    error_type: str = ""
    retries: int = 0
    ttfc_s: float | None = None
    prompt_fingerprint: str = ""
    prompt_name: str = ""  # llmmeter.prompt.name (explicit, or a LangChain prompt template's name)
    prompt_version: str = ""  # llmmeter.prompt.version (explicit); '' : versions are told apart by template
    template_fingerprint: str = ""  # keyed hash of the prompt's template part (llmmeter.prompt.template_fingerprint)
    prompt_simhash: str = ""  # 16 hex digits: a SimHash signature for near-duplicate grouping (opt-in in the SDK)
    reported_cost: Decimal | None = None
    cost: Cost | None = None  # None: no price known (stored as NULL, counted as unpriced)
    scope_version: str = ""  # that instrumentation scope's version (an SDK version: insights/sdk_versions.py)
    scope: str = ""  # the instrumentation scope that traced it (e.g. "llmmeter.openai", "openlit.otel.tracing")
    # The identity of the provider call (ingest/identity.py): spans of one trace with the same key are one call, priced
    # once. "" when the span says nothing that identifies it. ``completeness`` ranks the usage a span reports.
    call_key: str = ""
    completeness: int = 0
    duplicate_of: str = ""  # set by the ledger: the span id of the billable span of the same call
    replaces: str = ""  # set by the ledger: the span id of a less complete billable span this one displaced
    replaced_scope: str = ""  # and that span's instrumentation scope

    @property
    def model(self) -> str:
        """The model that served the call (the response model when reported)."""
        return self.response_model or self.request_model

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9
