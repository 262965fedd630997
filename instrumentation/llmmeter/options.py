"""What ``llmmeter.instrument(...)`` was asked to do, read by every wrapper on the hot path.

One module-level ``Options`` object, replaced (never mutated) by ``instrument()``, so a wrapper reads a
consistent set of choices with one attribute lookup and no lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from llmmeter.redaction import redact_pii

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
FINGERPRINT_KEY_ENV = "LLMMETER_FINGERPRINT_KEY"
# Used when no per-deployment key is configured: fingerprints are then comparable across every
# deployment that also uses the default, and a guessed prompt can be confirmed by hashing it. Set
# LLMMETER_FINGERPRINT_KEY (or instrument(fingerprint_key=...)) to make them private to a deployment.
DEFAULT_FINGERPRINT_KEY = b"llmmeter-prompt-fingerprint-v1"
RECORDING_ENV = "LLMMETER_RECORDING"
PROMPT_SIGNATURE_ENV = "LLMMETER_PROMPT_SIGNATURE"
RECORDING_MODES = ("deferred", "inline")

Redactor = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Options:
    """Instrumentation choices: content capture, redaction, fingerprint key, stream usage injection."""

    capture_content: bool = False
    redact: Redactor | None = redact_pii
    fingerprint_key: bytes = DEFAULT_FINGERPRINT_KEY
    stream_usage: bool = False
    inline: bool = False  # recording="inline": span and metric points recorded before the call returns
    prompt_signature: bool = False  # add llmmeter.prompt.simhash (near-duplicate grouping without the text)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def build(
    *,
    capture_content: bool | None = None,
    redact: Redactor | bool = True,
    fingerprint_key: str | bytes | None = None,
    stream_usage: bool = False,
    recording: str | None = None,
    prompt_signature: bool | None = None,
) -> Options:
    """Resolve ``instrument()`` arguments against the environment; bad values raise naming the argument."""
    if capture_content is None:
        capture_content = _env_flag(CAPTURE_CONTENT_ENV)
    if redact is True:
        redactor: Redactor | None = redact_pii
    elif redact is False:
        redactor = None
    elif callable(redact):
        redactor = redact
    else:
        raise TypeError(f"llmmeter.instrument: redact must be True, False or a callable str -> str, got {redact!r}")
    key = fingerprint_key if fingerprint_key is not None else os.environ.get(FINGERPRINT_KEY_ENV)
    if key is None or key == "":
        key_bytes = DEFAULT_FINGERPRINT_KEY
    elif isinstance(key, str):
        key_bytes = key.encode()
    elif isinstance(key, bytes):
        key_bytes = key
    else:
        raise TypeError(f"llmmeter.instrument: fingerprint_key must be str or bytes, got {type(key).__name__}")
    mode = recording if recording is not None else (os.environ.get(RECORDING_ENV, "").strip().lower() or "deferred")
    if mode not in RECORDING_MODES:
        where = "recording" if recording is not None else RECORDING_ENV
        raise ValueError(f"llmmeter.instrument: {where} must be 'deferred' or 'inline', got {mode!r}")
    return Options(
        capture_content=bool(capture_content),
        redact=redactor,
        fingerprint_key=key_bytes,
        stream_usage=bool(stream_usage),
        inline=mode == "inline",
        prompt_signature=bool(prompt_signature) if prompt_signature is not None else _env_flag(PROMPT_SIGNATURE_ENV),
    )


current = Options()


def set_current(options: Options) -> None:
    global current
    current = options
