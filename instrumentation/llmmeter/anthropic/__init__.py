"""Instrumentation of the ``anthropic`` SDK: every patched method is listed here.

Spans come from ``messages.create`` (incl. ``stream=True``), ``messages.parse`` and the
``messages.stream()`` helper, sync and async; ``with_raw_response`` / ``with_streaming_response`` go through
the patched methods. ``messages.count_tokens`` is free and is not spanned. Message Batches results are
recorded with ``llmmeter.batches.record_anthropic_batch``. ``BaseClient._build_request`` runs once per HTTP
attempt and is counted to report the SDK's internal retries.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from llmmeter.anthropic.patch import messages_create, messages_stream
from llmmeter.bootstrap import entry_point_instruments
from llmmeter.retries import counting_wrapper
from llmmeter.telemetry import Instruments

_MESSAGES = "anthropic.resources.messages.messages"
_BASE_CLIENT = "anthropic._base_client"

# (module, class, method, wrapper kind)
PATCHED = (
    (_MESSAGES, "Messages", "create", "create"),
    (_MESSAGES, "AsyncMessages", "create", "create"),
    (_MESSAGES, "Messages", "parse", "create"),
    (_MESSAGES, "AsyncMessages", "parse", "create"),
    (_MESSAGES, "Messages", "stream", "stream"),
    (_MESSAGES, "AsyncMessages", "stream", "stream"),
    (_BASE_CLIENT, "BaseClient", "_build_request", "attempt"),
)


class AnthropicInstrumentor(BaseInstrumentor):
    """Patches the Anthropic SDK so each Messages call emits a GenAI client span."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 0.40",)

    def _instrument(self, **kwargs: Any) -> None:
        inst: Instruments = kwargs.get("instruments") or entry_point_instruments(self)
        create = messages_create(inst)
        stream = messages_stream(inst)
        for module, cls, method, kind in PATCHED:
            if kind == "create":
                wrapper: Any = create[1 if cls.startswith("Async") else 0]
            elif kind == "stream":
                wrapper = stream
            else:
                wrapper = counting_wrapper
            if hasattr(getattr(importlib.import_module(module), cls), method):
                wrap_function_wrapper(module, f"{cls}.{method}", wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        for module, cls, method, _ in PATCHED:
            owner = getattr(importlib.import_module(module), cls)
            if hasattr(getattr(owner, method, None), "__wrapped__"):
                unwrap(owner, method)
