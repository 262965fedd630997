"""``llmmeter.instrument()`` and ``llmmeter.uninstrument()``: set up export and patch what is installed."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from typing import Any

from llmmeter import guard, options, recorder, telemetry, threads
from llmmeter.options import Redactor

logger = logging.getLogger("llmmeter")

# (distribution module that must be importable, instrumentor module, class name)
_INSTRUMENTORS = (
    ("openai", "llmmeter.openai", "OpenAIInstrumentor"),
    ("anthropic", "llmmeter.anthropic", "AnthropicInstrumentor"),
    ("google.genai", "llmmeter.google_genai", "GoogleGenAIInstrumentor"),
    ("langchain_core", "llmmeter.langchain", "LangChainInstrumentor"),
)

_lock = threading.Lock()
_active: list[Any] = []
_threads_patched = False
_entry_point_instruments: telemetry.Instruments | None = None


def _installed(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):  # a dotted name whose parent package is missing
        return False


def instrument(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    configure_export: bool = True,
    capture_content: bool | None = None,
    redact: Redactor | bool = True,
    fingerprint_key: str | bytes | None = None,
    stream_usage: bool = False,
    budget_policy: guard.PolicySource | None = None,
    recording: str | None = None,
    prompt_signature: bool | None = None,
) -> None:
    """Patch every supported SDK that is installed, and export spans/metrics over OTLP/HTTP.

    Export is set up only when the app has not configured OpenTelemetry itself (``endpoint`` defaults
    to ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``http://localhost:4318``). Calling it twice is harmless.

    ``capture_content`` records prompts and completions (default: the
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` variable, else off), passed through ``redact``
    (True: built-in PII redaction, False: none, or a ``str -> str`` callable). ``fingerprint_key`` keys the
    prompt fingerprint (default ``LLMMETER_FINGERPRINT_KEY``). ``stream_usage`` adds
    ``stream_options.include_usage`` to OpenAI chat/completions streams that did not ask for usage.
    ``budget_policy`` (a YAML/JSON file or a mapping) swaps models or raises ``BudgetExceeded`` when a budget
    is over; a bad policy raises ``llmmeter.guard.PolicyError`` naming the field (see ``llmmeter.guard``).
    ``recording``: ``"deferred"`` (default: spans and metric points recorded off the call path) or ``"inline"``
    (recorded before the call returns: tests, serverless, apps reading spans synchronously); default the
    ``LLMMETER_RECORDING`` variable. A bad value raises ``ValueError`` naming it. ``prompt_signature`` adds a
    locality-sensitive signature of each prompt (``llmmeter.prompt.simhash``) so the collector can group
    near-identical prompts without the text (default: the ``LLMMETER_PROMPT_SIGNATURE`` variable, else off).
    """
    global _threads_patched
    guard.configure(budget_policy, endpoint=endpoint)
    with _lock:
        if _active or _threads_patched:
            return
        options.set_current(
            options.build(
                capture_content=capture_content,
                redact=redact,
                fingerprint_key=fingerprint_key,
                stream_usage=stream_usage,
                recording=recording,
                prompt_signature=prompt_signature,
            )
        )
        if configure_export:
            telemetry.configure(service_name=service_name, endpoint=endpoint)
        inst = telemetry.create_instruments()
        for module_name, instrumentor_module, class_name in _INSTRUMENTORS:
            if not _installed(module_name):
                continue  # SDK not installed: skipped quietly
            try:
                cls = getattr(importlib.import_module(instrumentor_module), class_name)
                instrumentor = cls()
                instrumentor.instrument(instruments=inst, skip_dep_check=False)
                if instrumentor.is_instrumented_by_opentelemetry:
                    _active.append(instrumentor)
            except Exception as exc:  # never break the app
                logger.warning("llmmeter: could not instrument %s: %r", module_name, exc)
        threads.patch()
        recorder.hook_flush()
        _threads_patched = True
    recorder.restart()


def uninstrument() -> None:
    """Restore every patched method."""
    global _threads_patched
    with _lock:
        while _active:
            _active.pop().uninstrument()
        if _threads_patched:
            threads.unpatch()
            recorder.unhook_flush()
            _threads_patched = False
    recorder.drain()  # what instrumented calls queued is ended and recorded, not left behind


def entry_point_instruments(instrumentor: Any) -> telemetry.Instruments:
    """The instruments for ``instrumentor`` when ``opentelemetry-instrument`` loaded it (an
    ``opentelemetry_instrumentor`` entry point) instead of ``instrument()``.

    Options come from the environment (``LLMMETER_*``, ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``),
    spans and metrics go to the providers the distro configured, and what the four instrumentors share (options,
    instruments, thread propagation, the recorder) is set up once. An SDK that is missing raises
    ``ModuleNotFoundError``, which ``opentelemetry-instrument`` skips quietly; one too old is also skipped, with a
    warning naming the version needed.
    """
    global _entry_point_instruments, _threads_patched
    conflict = instrumentor._check_dependency_conflicts()
    if conflict is not None:
        if getattr(conflict, "found", None):  # installed, but a version llmmeter does not support
            logger.warning("llmmeter: not instrumenting %s: %s", getattr(conflict, "required", ""), conflict)
        raise ModuleNotFoundError(f"llmmeter: {conflict}")
    with _lock:
        if _entry_point_instruments is None:
            options.set_current(options.build())
            _entry_point_instruments = telemetry.create_instruments()
        if not _threads_patched:
            threads.patch()
            recorder.hook_flush()
            _threads_patched = True
        _active.append(instrumentor)  # instrument() is then a no-op, uninstrument() undoes it
    recorder.restart()
    return _entry_point_instruments
