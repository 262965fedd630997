"""Prompt fingerprints (always), an opt-in similarity signature and opt-in content capture.

Provider wrappers turn a request into a ``Prompt`` (system instructions + messages, each message a role
and a list of convention "parts"), and a response into output ``Message``s. ``prompt_attributes`` then adds:

* ``llmmeter.prompt.fingerprint``: an HMAC-SHA256 of the whole normalised prompt under the deployment's key,
  truncated to 16 hex digits, so repeated prompts can be found without storing them;
* ``llmmeter.prompt.template_fingerprint``: the same over the prompt's *template part*, decided per message role:
  the system (and developer) instructions and the sequence of roles are the template; user, assistant and tool
  message contents are the variables. A change of instructions is a new version of the prompt; a new question
  is not. The limit: fixed text written into the user message ("Summarise this: {text}") is variable to this
  rule (LangChain prompt templates give their template exactly: ``Prompt.template``);
* with ``prompt_signature`` on, ``llmmeter.prompt.simhash``: a 64-bit SimHash of the prompt's lower-cased word
  3-shingles, each shingle hashed with the deployment's key (BLAKE2b), so near-identical prompts have signatures a
  few bits apart; it reveals how similar two prompts are, not their words (see docs/prompts.md);
* only when content capture is on, ``gen_ai.system_instructions`` / ``gen_ai.input.messages`` with PII redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmmeter import semconv
from llmmeter.options import Options

FINGERPRINT_HEX_DIGITS = 16  # 64 bits: collisions are negligible at any realistic number of distinct prompts


@dataclass(slots=True)
class Message:
    """One message as the conventions write it: ``{"role", "parts": [...], "finish_reason"?}``."""

    role: str
    parts: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None

    def as_json(self, redact: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "parts": [_redacted(p, redact) for p in self.parts]}
        if self.finish_reason is not None:
            out["finish_reason"] = self.finish_reason
        return out


@dataclass(slots=True)
class Prompt:
    """What was sent: system instructions (text) and the conversation."""

    system: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    template: str | None = None  # the template's own text, when a framework knows it (LangChain)


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def tool_call_part(call_id: str | None, name: str | None, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_response_part(call_id: str | None, response: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": call_id, "response": response}


def _texts(prompt: Prompt) -> Iterable[str]:
    for text in prompt.system:
        yield "system\x1f" + " ".join(text.split())
    for message in prompt.messages:
        for part in message.parts:
            content = part.get("content")
            if isinstance(content, str):
                yield message.role + "\x1f" + " ".join(content.split())


_keyed: dict[bytes, hmac.HMAC] = {}  # key -> HMAC with the key already absorbed (copied per prompt: cheaper)


def fingerprint(prompt: Prompt, key: bytes) -> str:
    """Keyed hash (HMAC-SHA256) of the prompt's roles and texts, whitespace-normalised; stable across
    processes."""
    base = _keyed.get(key)
    if base is None:
        if len(_keyed) >= 8:  # keys come from instrument(): a handful at most
            _keyed.clear()
        base = _keyed[key] = hmac.new(key, b"", hashlib.sha256)
    mac = base.copy()
    for text in _texts(prompt):
        mac.update(text.encode("utf-8", "surrogatepass"))
        mac.update(b"\x1e")
    return mac.hexdigest()[:FINGERPRINT_HEX_DIGITS]


_TEMPLATE_ROLES = frozenset({"system", "developer"})


def template_fingerprint(prompt: Prompt, key: bytes) -> str:
    """Keyed hash of the prompt's template part: the template text when known, else the instructions (system and
    developer messages) and the sequence of roles."""
    mac = hmac.new(key, b"template\x1e", hashlib.sha256)
    if prompt.template is not None:
        mac.update(" ".join(prompt.template.split()).encode("utf-8", "surrogatepass"))
        return mac.hexdigest()[:FINGERPRINT_HEX_DIGITS]
    for text in prompt.system:
        mac.update(b"system\x1f" + " ".join(text.split()).encode("utf-8", "surrogatepass") + b"\x1e")
    for message in prompt.messages:
        mac.update(message.role.encode() + b"\x1f")
        if message.role in _TEMPLATE_ROLES:
            for part in message.parts:
                content = part.get("content")
                if isinstance(content, str):
                    mac.update(" ".join(content.split()).encode("utf-8", "surrogatepass"))
        mac.update(b"\x1e")
    return mac.hexdigest()[:FINGERPRINT_HEX_DIGITS]


SIGNATURE_BITS = 64
MAX_SHINGLES = 4096  # a longer prompt is signed by its first 4096 shingles (bounded cost, off the call path)
_SHINGLE = 3


def simhash(prompt: Prompt, key: bytes) -> str:
    """64-bit SimHash (16 hex digits) of the prompt's lower-cased word 3-shingles, each hashed with BLAKE2b keyed
    by the deployment's key: prompts that share most shingles have signatures few bits apart."""
    words: list[str] = []
    for text in prompt.system:
        words += text.lower().split()
    for message in prompt.messages:
        for part in message.parts:
            content = part.get("content")
            if isinstance(content, str):
                words += content.lower().split()
    count = min(max(1, len(words) - _SHINGLE + 1), MAX_SHINGLES)
    secret = key[:64]
    # Bit-sliced counters: planes[i] holds bit i of every position's count of ones, all 64 positions at once,
    # so adding a shingle's hash is a ripple carry over ~log2(count) integers instead of 64 additions.
    planes: list[int] = []
    for i in range(count):
        shingle = " ".join(words[i : i + _SHINGLE]).encode("utf-8", "surrogatepass")
        carry = int.from_bytes(hashlib.blake2b(shingle, digest_size=8, key=secret).digest(), "big")
        for level, plane in enumerate(planes):
            planes[level], carry = plane ^ carry, plane & carry
            if not carry:
                break
        if carry:
            planes.append(carry)
    signature = 0
    for bit in range(SIGNATURE_BITS):
        ones = sum(((plane >> bit) & 1) << level for level, plane in enumerate(planes))
        if 2 * ones > count:  # more shingles set this bit than not
            signature |= 1 << bit
    return f"{signature:016x}"


def _redacted(value: Any, redact: Any) -> Any:
    if redact is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: (v if k in ("type", "id", "name") else _redacted(v, redact)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, redact) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def prompt_attributes(prompt: Prompt | None, options: Options) -> dict[str, Any]:
    """The fingerprint, plus the redacted input content when capture is enabled."""
    if prompt is None:
        return {}
    key = options.fingerprint_key
    attrs: dict[str, Any] = {
        semconv.PROMPT_FINGERPRINT: fingerprint(prompt, key),
        semconv.PROMPT_TEMPLATE_FINGERPRINT: template_fingerprint(prompt, key),
    }
    if options.prompt_signature:
        attrs[semconv.PROMPT_SIGNATURE] = simhash(prompt, key)
    if options.capture_content:
        redact = options.redact
        if prompt.system:
            attrs[semconv.GEN_AI_SYSTEM_INSTRUCTIONS] = _dumps([_redacted(text_part(t), redact) for t in prompt.system])
        attrs[semconv.GEN_AI_INPUT_MESSAGES] = _dumps([m.as_json(redact) for m in prompt.messages])
    return attrs


def output_attributes(messages: Sequence[Message], options: Options) -> dict[str, Any]:
    """``gen_ai.output.messages`` (redacted) when capture is enabled, else nothing."""
    if not options.capture_content or not messages:
        return {}
    return {semconv.GEN_AI_OUTPUT_MESSAGES: _dumps([m.as_json(options.redact) for m in messages])}


def as_text(value: Any) -> str | None:
    """A content value's text when it is plain text, else None."""
    return value if isinstance(value, str) else None
