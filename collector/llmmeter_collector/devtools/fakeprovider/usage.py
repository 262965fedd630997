"""The fake provider's deterministic token rules, response text and request overrides.

Everything a test needs to predict a fake answer is decided here, in one provider-neutral place:
the usage (`Usage`, in OpenTelemetry GenAI terms), the answer text, the structured-output placeholder,
the embedding vectors and whether the answer is a tool call. The provider modules only translate
these into each API's wire format.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

#: Added to the word count of every request: stands for the chat template / special tokens.
BASE_INPUT_TOKENS = 10
#: Output tokens of an answer when the request sets no smaller output limit.
DEFAULT_OUTPUT_TOKENS = 20
#: Longest answer text, in words: a huge `x-fake-usage` output count must not make a huge body.
MAX_ANSWER_WORDS = 1000
#: Length of an embedding vector when the request asks for no dimension.
DEFAULT_EMBEDDING_DIMENSIONS = 8

USAGE_HEADER = "x-fake-usage"
TOOL_CALL_HEADER = "x-fake-tool-call"
STREAM_FAIL_HEADER = "x-fake-stream-fail-after"
LATENCY_HEADER = "x-fake-latency-ms"
CHUNK_DELAY_HEADER = "x-fake-chunk-delay-ms"


class OverrideError(ValueError):
    """A malformed `x-fake-*` request header; answered with a 400 in the provider's error format."""


@dataclass(frozen=True)
class Usage:
    """Token usage of one fake call, in GenAI-convention terms (as `gen_ai.usage.*` counts them).

    `input_tokens` is the whole prompt, including cache reads and cache writes; `output_tokens` is the
    whole output, including reasoning. The other counts are parts of those two totals.
    `cache_creation_1h_input_tokens` is the part of `cache_creation_input_tokens` written with a 1-hour TTL
    (the rest is the 5-minute TTL), as in Anthropic's `cache_creation` breakdown.
    """

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens neither read from nor written to a cache (Anthropic's `input_tokens`)."""
        return self.input_tokens - self.cached_tokens - self.cache_creation_input_tokens

    @property
    def cache_creation_5m_input_tokens(self) -> int:
        return self.cache_creation_input_tokens - self.cache_creation_1h_input_tokens

    @property
    def visible_output_tokens(self) -> int:
        """Output tokens that are answer text, not reasoning (Gemini's `candidatesTokenCount`)."""
        return self.output_tokens - self.reasoning_tokens


_USAGE_FIELDS = {f.name for f in fields(Usage)}


def parse_usage_override(header: str | None, default: Usage) -> Usage:
    """The usage an `x-fake-usage` JSON header asks for; fields it leaves out keep their `default`.

    Raises `OverrideError` for anything that could not be meant: bad JSON, unknown or negative fields,
    parts larger than their totals. A typo fails loudly instead of silently reporting default usage.
    """
    if header is None:
        return default
    try:
        raw = json.loads(header)
    except ValueError as exc:
        raise OverrideError(f"{USAGE_HEADER}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise OverrideError(f"{USAGE_HEADER}: must be a JSON object")
    unknown = sorted(set(raw) - _USAGE_FIELDS)
    if unknown:
        raise OverrideError(f"{USAGE_HEADER}: unknown field(s) {unknown}; known: {sorted(_USAGE_FIELDS)}")
    values: dict[str, int] = {}
    for name, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise OverrideError(f"{USAGE_HEADER}: field {name!r} must be a non-negative integer")
        values[name] = value
    merged = {"input_tokens": default.input_tokens, "output_tokens": default.output_tokens, **values}
    usage = Usage(**merged)
    if usage.cached_tokens + usage.cache_creation_input_tokens > usage.input_tokens:
        raise OverrideError(
            f"{USAGE_HEADER}: cached_tokens + cache_creation_input_tokens exceed input_tokens "
            "(input_tokens is the whole prompt, cache included)"
        )
    if usage.cache_creation_1h_input_tokens > usage.cache_creation_input_tokens:
        raise OverrideError(
            f"{USAGE_HEADER}: cache_creation_1h_input_tokens is a part of cache_creation_input_tokens "
            "and cannot exceed it"
        )
    if usage.reasoning_tokens > usage.output_tokens:
        raise OverrideError(f"{USAGE_HEADER}: reasoning_tokens is a part of output_tokens and cannot exceed it")
    if usage.audio_input_tokens > usage.input_tokens or usage.audio_output_tokens > usage.output_tokens:
        raise OverrideError(f"{USAGE_HEADER}: audio tokens cannot exceed their input/output totals")
    return usage


def parse_int_header(headers: Mapping[str, str], name: str) -> int | None:
    """A non-negative integer header such as `x-fake-stream-fail-after`, or None when absent."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise OverrideError(f"{name}: must be a non-negative integer, got {value!r}")
    return number


def count_words(texts: Iterable[str]) -> int:
    return sum(len(text.split()) for text in texts)


def collect_text(value: Any) -> list[str]:
    """Every piece of text in a message structure: strings, `text` fields, nested `content`/`parts`.

    Works for all three providers' message shapes (OpenAI content parts, Anthropic blocks including
    tool results, Gemini parts). Images, audio, tool schemas and tool-call arguments carry no words.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in collect_text(item)]
    if isinstance(value, dict):
        found: list[str] = []
        if isinstance(value.get("text"), str):
            found.append(value["text"])
        for key in ("content", "parts"):
            if key in value:
                found.extend(collect_text(value[key]))
        return found
    return []


def own_text(message: Any) -> list[str]:
    """The text a message says itself, leaving out tool results it carries (for the tool-call trigger)."""
    if isinstance(message, str):
        return [message]
    if not isinstance(message, dict):
        return []
    texts: list[str] = []
    for key in ("content", "parts"):
        body = message.get(key)
        if isinstance(body, str):
            texts.append(body)
        elif isinstance(body, list):
            for part in body:
                if isinstance(part, str):
                    texts.append(part)
                elif (
                    isinstance(part, dict)
                    and isinstance(part.get("text"), str)
                    and part.get("type", "text") in ("text", "input_text")
                ):
                    texts.append(part["text"])
    return texts


def default_usage(texts: Iterable[str], *output_limits: Any) -> Usage:
    """Usage without an override: words of all the request's text + 10 in, 20 (or a smaller limit) out."""
    limits = [limit for limit in output_limits if isinstance(limit, int) and not isinstance(limit, bool)]
    output = min([DEFAULT_OUTPUT_TOKENS, *limits])
    return Usage(input_tokens=count_words(texts) + BASE_INPUT_TOKENS, output_tokens=max(output, 0))


def answer_words(count: int) -> list[str]:
    """The answer text as a list of `count` words (at most 1000): "Fake answer w3 w4 ... wN"."""
    count = min(count, MAX_ANSWER_WORDS)
    words = ["Fake", "answer", *(f"w{i}" for i in range(3, count + 1))]
    return words[:count]


def answer_text(count: int) -> str:
    return " ".join(answer_words(count))


def text_deltas(text: str) -> list[str]:
    """Streaming pieces of `text`: one per word, the leading space kept on every word after the first."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


_WEATHER = re.compile(r"\bweather\b", re.IGNORECASE)


def wants_tool_call(has_tools: bool, last_message_texts: Iterable[str], force_header: str | None) -> bool:
    """Answer with a tool call when tools are offered and the last message (a user turn) says "weather".

    The header `x-fake-tool-call: 1` forces a tool call (`0` forbids one). A conversation whose last
    message is a tool result gets a text answer, so agent loops terminate.
    """
    if not has_tools:
        return False
    if force_header is not None:
        return force_header.strip().lower() in ("1", "true", "yes")
    return any(_WEATHER.search(text) for text in last_message_texts)


def placeholder(schema: Any, defs: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A value that satisfies a JSON schema trivially, for structured output and tool arguments.

    Accepts JSON Schema and Gemini's upper-case OpenAPI `Schema`. Objects get every listed property,
    strings "fake", numbers 0, booleans false, arrays one item, enums/consts their first value;
    `$ref`s into `$defs`/`definitions` and `anyOf`/`oneOf` are followed.
    """
    if not isinstance(schema, dict) or depth > 20:
        return None
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1])
        return placeholder(target, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if isinstance(o, dict) and str(o.get("type")).lower() != "null"]
        if options:
            return placeholder(options[0], defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = kind.lower() if isinstance(kind, str) else kind  # Gemini's OpenAPI schemas say "OBJECT", "STRING"
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties", {})
        return {name: placeholder(sub, defs, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        item = placeholder(schema.get("items", {"type": "string"}), defs, depth + 1)
        return [item] * max(int(schema.get("minItems", 1)), 1)
    if kind == "string":
        return "fake"
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    return None


def embedding(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic vector for `text`: bytes of its SHA-256 scaled into [-1, 1).

    Every value is a multiple of 1/128, exact in float32, so the float and base64 encodings agree.
    """
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return [byte / 128.0 - 1.0 for byte in digest[:dimensions]]
