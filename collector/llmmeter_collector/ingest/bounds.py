"""Limits on what one span may carry into the ledger, checked at the edge before a call is built.

A GenAI span with a value llmmeter stores that is over its length limit, a number that is not finite or out
of range, or text Postgres cannot hold (a NUL character, a lone surrogate) is rejected: not stored, counted
in ``llmmeter_collector_spans_rejected_total{reason}``, and named to the sender in the OTLP partial success
("llmmeter.project is 3000 characters (limit 128)"); the other spans of the export are stored. The limits
keep every value inside what a Postgres index row holds (about 2,700 bytes): the rollup key (project,
environment, provider, model, feature, operation) stays under it even in 4-byte characters.

``check`` is called once per GenAI span by ``normalize``. To keep ingest fast, the C attribute reader
(``_otlp_fields.c``) screens every value while it decodes it (at most ``SCREEN_BYTES`` bytes, no NUL, numbers
in [0, MAX_TOKENS]); for an export that passes, ``check`` has a microsecond or so of work a span left. Otherwise (and
for OTLP/JSON) a fast path of a few C-level scans per span runs, and the per-value checks that name the
culprit only when it fails.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from llmmeter_collector import semconv as sc

# --- the limits (characters, unless said otherwise) -------------------------------------------------
MAX_ATTRIBUTION_CHARS = 128  # llmmeter.project, llmmeter.feature, llmmeter.experiment, llmmeter.variant
MAX_ENVIRONMENT_CHARS = 64  # llmmeter.environment / deployment.environment.name
MAX_USER_CHARS = 256  # user.id, session.id
MAX_MODEL_CHARS = 192  # gen_ai.request.model, gen_ai.response.model
MAX_NAME_CHARS = 64  # gen_ai.provider.name, gen_ai.operation.name, service tier
MAX_ID_CHARS = 256  # gen_ai.response.id, llmmeter.prompt.fingerprint
MAX_TEXT_CHARS = 256  # service.name, error.type and any other stored text
MAX_TAG_KEY_CHARS = 64  # the <key> of llmmeter.tag.<key>
MAX_TAG_VALUE_CHARS = 256
MAX_TAGS = 64  # llmmeter.tag.* attributes per span
MAX_TOKENS = 100_000_000  # per token class and call; above it a count is not a real call's usage
MAX_COST_USD = 1_000_000  # a reported cost (gen_ai.usage.cost, llm.usage.cost) of one call
MAX_COST_CHARS = 40  # a reported cost given as text: digits, sign, point and exponent
MIN_COST_EXPONENT = -30  # smallest power of ten a reported cost may carry (Postgres numeric's scale)
MAX_DURATION_S = 7 * 86_400  # a call's duration (end - start) and its time to first token
PARENT_SPAN_ID_BYTES = (0, 8)  # no parent, or an 8-byte span id

# The bounded ``reason`` label values of the rejected-spans metric.
VALUE_TOO_LONG = "value_too_long"
NON_FINITE_NUMBER = "non_finite_number"
OUT_OF_RANGE = "out_of_range"
INVALID_STRING = "invalid_string"
INVALID_ID = "invalid_id"
REASONS = (VALUE_TOO_LONG, NON_FINITE_NUMBER, OUT_OF_RANGE, INVALID_STRING, INVALID_ID)

# normalize's text field -> (the attribute named in messages, limit). A text field not listed gets MAX_TEXT_CHARS.
TEXT_LIMITS: dict[str, tuple[str, int]] = {
    "project": (sc.PROJECT, MAX_ATTRIBUTION_CHARS),
    "feature": (sc.FEATURE, MAX_ATTRIBUTION_CHARS),
    "experiment": (sc.EXPERIMENT, MAX_ATTRIBUTION_CHARS),
    "variant": (sc.VARIANT, MAX_ATTRIBUTION_CHARS),
    "environment": (sc.ENVIRONMENT_KEYS[0], MAX_ENVIRONMENT_CHARS),
    "user": (sc.USER_KEYS[0], MAX_USER_CHARS),
    "session": (sc.SESSION_KEYS[0], MAX_USER_CHARS),
    "request_model": (sc.REQUEST_MODEL_KEYS[0], MAX_MODEL_CHARS),
    "response_model": (sc.RESPONSE_MODEL_KEYS[0], MAX_MODEL_CHARS),
    "provider": (sc.PROVIDER_KEYS[0], MAX_NAME_CHARS),
    "operation": (sc.GEN_AI_OPERATION_NAME, MAX_NAME_CHARS),
    "legacy_operation": ("llm.request.type", MAX_NAME_CHARS),
    "service_tier": (sc.SERVICE_TIER_KEYS[0], MAX_NAME_CHARS),
    "response_id": (sc.GEN_AI_RESPONSE_ID, MAX_ID_CHARS),
    "fingerprint": (sc.PROMPT_FINGERPRINT, MAX_ID_CHARS),
    "prompt_name": (sc.PROMPT_NAME_KEYS[0], MAX_ATTRIBUTION_CHARS),
    "prompt_version": (sc.PROMPT_VERSION_KEYS[0], MAX_ATTRIBUTION_CHARS),
    "template_fingerprint": (sc.PROMPT_TEMPLATE_FINGERPRINT, MAX_ID_CHARS),
    "simhash": (sc.PROMPT_SIGNATURE, MAX_ID_CHARS),
    "error_type": (sc.ERROR_TYPE, MAX_TEXT_CHARS),
}
_DEFAULT_TEXT = ("", MAX_TEXT_CHARS)
TOKEN_FIELDS = frozenset(
    {"input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning", "audio_input", "audio_output"}
)
_TOKEN_NAMES = {  # field -> (attribute, what normalize calls it)
    "input": (sc.INPUT_TOKEN_KEYS[0], "input tokens"),
    "output": (sc.OUTPUT_TOKEN_KEYS[0], "output tokens"),
    "cache_read": (sc.CACHE_READ_KEYS[0], "cache read tokens"),
    "cache_write": (sc.CACHE_WRITE_KEYS[0], "cache creation tokens"),
    "cache_write_1h": (sc.CACHE_CREATION_1H_INPUT_TOKENS, "1h cache creation tokens"),
    "reasoning": (sc.REASONING_KEYS[0], "reasoning tokens"),
    "audio_input": (sc.AUDIO_INPUT_TOKENS, "audio input tokens"),
    "audio_output": (sc.AUDIO_OUTPUT_TOKENS, "audio output tokens"),
}
# Fields normalize reads but never stores as text (flags, counters, the sender's name): not length-checked.
_UNSTORED = frozenset({"stream", "billable", "batch", "usage_missing", "provider_billed", "retries", "sender", "ttfc"})
_SURROGATE = re.compile("[\ud800-\udfff]")
_NS = 1_000_000_000


class OutOfBounds(ValueError):
    """A span value llmmeter would store breaks a limit; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Span(Protocol):
    @property
    def parent_span_id(self) -> bytes: ...
    @property
    def start_time_unix_nano(self) -> int: ...
    @property
    def end_time_unix_nano(self) -> int: ...


def _text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise OutOfBounds(VALUE_TOO_LONG, f"{name} is {len(value)} characters (limit {limit})")
    if "\x00" in value:
        raise OutOfBounds(INVALID_STRING, f"{name} contains a NUL character")
    if not value.isascii() and _SURROGATE.search(value):
        raise OutOfBounds(INVALID_STRING, f"{name} contains a lone surrogate (not valid Unicode)")


def _show(value: int | float) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise OutOfBounds(NON_FINITE_NUMBER, f"{name} is {value} (must be a finite number)")


def _tokens(field: str, value: Any) -> None:
    name, label = _TOKEN_NAMES[field]
    if isinstance(value, str):  # a count sent as text: only its value matters here
        try:
            value = float(value) if len(value) <= MAX_COST_CHARS else math.inf
        except ValueError:
            return  # not a number: normalize says so
    if isinstance(value, float):
        _finite(name, value)
    if isinstance(value, int | float) and not 0 <= value <= MAX_TOKENS:
        what = "negative" if value < 0 else "absurdly large"
        raise OutOfBounds(OUT_OF_RANGE, f"{label} is {what}: {_show(value)} ({name} must be 0 to {MAX_TOKENS})")


def _cost(value: Any) -> None:
    name = sc.REPORTED_COST_KEYS[0]
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > MAX_COST_CHARS:
            raise OutOfBounds(OUT_OF_RANGE, f"{name} is {len(value)} characters (limit {MAX_COST_CHARS})")
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            return  # not a number: ignored, as before
    if isinstance(value, float):
        _finite(name, value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise OutOfBounds(NON_FINITE_NUMBER, f"{name} is {value} (must be a finite number)")
        exponent = value.as_tuple().exponent
        if value and isinstance(exponent, int) and exponent < MIN_COST_EXPONENT:
            raise OutOfBounds(OUT_OF_RANGE, f"{name} has digits below 1e{MIN_COST_EXPONENT}")
    if isinstance(value, int | float | Decimal) and not -MAX_COST_USD <= value <= MAX_COST_USD:
        raise OutOfBounds(OUT_OF_RANGE, f"{name} is out of range (limit {MAX_COST_USD} USD)")


def _seconds(name: str, value: Any) -> None:
    if isinstance(value, float):
        _finite(name, value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_DURATION_S:
        raise OutOfBounds(OUT_OF_RANGE, f"{name} is {_show(value)} s (limit {MAX_DURATION_S} s)")


class _Resource(Protocol):
    @property
    def service_name(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def environment(self) -> str: ...


def check(
    span: _Span, fields: dict[str, Any], tags: dict[str, str], resource: _Resource, screened: bool = False
) -> None:
    """Raise OutOfBounds naming the first value of this GenAI span that breaks a limit.

    ``fields``: normalize's decoded attributes by field; ``tags``: ``llmmeter.tag.*`` without the prefix;
    ``resource``: what the span's resource contributes (service.name, project, environment).
    ``screened``: the C reader found every value of the export short (``SCREEN_BYTES``), without NUL and every
    number in [0, MAX_TOKENS] (``_otlp_fields.c``); only the tag count, the two numbers with smaller limits,
    the resource and the span's own fields are then left. Otherwise a fast path (every value short, plain
    and in range) in a few C-level passes; the precise per-value checks run only when one of them fails.
    """
    if not screened:
        _check_values(fields, tags)
    else:
        if len(tags) > MAX_TAGS:
            _check_texts(fields, tags)
        if (value := fields.get("ttfc")) is not None and not 0 <= value <= MAX_DURATION_S:
            _ttfc("ttfc", value)
        if (value := fields.get("reported_cost")) is not None and not 0 <= value <= MAX_COST_USD:
            _reported_cost("reported_cost", value)
    if resource is not _checked_resource[0]:  # a resource is shared by its spans: checked once in a row
        _check_resource(resource)
        _checked_resource[0] = resource
    parent = len(span.parent_span_id)
    if parent not in PARENT_SPAN_ID_BYTES:
        raise OutOfBounds(INVALID_ID, f"parent_span_id is {parent} bytes (must be 8 or empty)")
    end = span.end_time_unix_nano
    if end and end - span.start_time_unix_nano > MAX_DURATION_S * _NS:
        _seconds("span duration", (end - span.start_time_unix_nano) / _NS)


def check_scope(name: str) -> None:
    """Raise OutOfBounds when an instrumentation scope's name (stored with each of its calls) breaks a limit."""
    _text("scope name", name, MAX_TEXT_CHARS)


def _check_values(fields: dict[str, Any], tags: dict[str, str]) -> None:
    texts = list(filter(_is_str, fields.values()))
    if tags:
        texts += tags
        texts += tags.values()
    joined = "".join(texts)
    if (
        (len(joined) > _SHORTEST_LIMIT and max(map(len, texts)) > _SHORTEST_LIMIT)
        or "\x00" in joined
        or (not joined.isascii() and _SURROGATE.search(joined))
        or len(tags) > MAX_TAGS
    ):
        _check_texts(fields, tags)
    for field in fields.keys() & _NUMBERS:
        value = fields[field]
        kind = type(value)
        if (kind is int or kind is float) and 0 <= value <= _NUMBERS[field]:
            continue  # NaN and the infinities fail this comparison
        _NUMBER_CHECKS[field](field, value)


def _check_texts(fields: dict[str, Any], tags: dict[str, str]) -> None:
    """Every stored text value against its limit: raises OutOfBounds naming the first that breaks one."""
    for field, value in fields.items():
        if type(value) is str and field not in _NUMBERS and field not in _UNSTORED:
            name, limit = TEXT_LIMITS.get(field, _DEFAULT_TEXT)
            _text(name or field, value, limit)
    if len(tags) > MAX_TAGS:
        raise OutOfBounds(VALUE_TOO_LONG, f"{sc.TAG_PREFIX}* has {len(tags)} tags (limit {MAX_TAGS})")
    for key, value in tags.items():
        _text(f"tag key {sc.TAG_PREFIX}{key[:40]}", key, MAX_TAG_KEY_CHARS)
        _text(f"{sc.TAG_PREFIX}{key}", value, MAX_TAG_VALUE_CHARS)


def _check_resource(resource: _Resource) -> None:
    _text("resource service.name", resource.service_name, MAX_TEXT_CHARS)
    _text(f"resource {sc.PROJECT}", resource.project, MAX_ATTRIBUTION_CHARS)
    _text(f"resource {sc.RESOURCE_ENVIRONMENT_KEYS[0]}", resource.environment, MAX_ENVIRONMENT_CHARS)


def _ttfc(field: str, value: Any) -> None:
    _seconds(sc.TTFC_KEYS[0], value)


def _reported_cost(field: str, value: Any) -> None:
    _cost(value)


# Numeric fields -> the largest value the fast path lets through, and the precise check for the rest.
_NUMBERS: dict[str, float] = {
    **dict.fromkeys(TOKEN_FIELDS, MAX_TOKENS),
    "ttfc": MAX_DURATION_S,
    "reported_cost": MAX_COST_USD,
}
_NUMBER_CHECKS = {**dict.fromkeys(TOKEN_FIELDS, _tokens), "ttfc": _ttfc, "reported_cost": _reported_cost}
_is_str = str.__instancecheck__
_checked_resource: list[object] = [None]  # the last resource that passed (any thread; a miss only re-checks)
_SHORTEST_LIMIT = min(
    MAX_TAG_KEY_CHARS, MAX_NAME_CHARS, MAX_ENVIRONMENT_CHARS, *(limit for _, limit in TEXT_LIMITS.values())
)
SCREEN_BYTES = _SHORTEST_LIMIT  # the C reader's screen: strings up to this many UTF-8 bytes pass every limit


class RejectionLog:
    """Logs rejected spans at most once per reason per ``interval`` seconds, with the count since the last line."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def note(self, reason: str, count: int, example: str) -> None:
        now = time.monotonic()
        with self._lock:
            pending = self._pending.get(reason, 0) + count
            last = self._last.get(reason)
            if last is not None and now - last < self._interval:
                self._pending[reason] = pending
                return
            self._last[reason] = now
            self._pending[reason] = 0
        self._logger.warning(
            "rejected %d GenAI span(s) for %s (logged at most every %.0f s), e.g. %s",
            pending, reason, self._interval, example,
        )  # fmt: skip
