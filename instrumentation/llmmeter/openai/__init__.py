"""Instrumentation of the ``openai`` SDK (OpenAI and Azure OpenAI clients): every patched method is listed here.

Spans come from ``create`` / ``parse`` of chat completions and the Responses API, legacy completions and
embeddings, sync and async; ``with_raw_response`` / ``with_streaming_response`` and the ``.stream()``
helpers go through the patched ``create``. ``BaseClient._build_request`` runs once per HTTP attempt and is
counted to report the SDK's internal retries.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from llmmeter.bootstrap import entry_point_instruments
from llmmeter.openai.patch import stream_helper, wrappers
from llmmeter.retries import counting_wrapper
from llmmeter.telemetry import Instruments

_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_COMPLETIONS = "openai.resources.completions"
_EMBEDDINGS = "openai.resources.embeddings"
_BASE_CLIENT = "openai._base_client"

# (module, class, method, which wrapper: an API key of patch.wrappers, or "stream_helper")
PATCHED = (
    (_CHAT, "Completions", "create", "chat"),
    (_CHAT, "AsyncCompletions", "create", "chat"),
    (_CHAT, "Completions", "parse", "chat"),
    (_CHAT, "AsyncCompletions", "parse", "chat"),
    (_CHAT, "Completions", "stream", "stream_helper"),
    (_CHAT, "AsyncCompletions", "stream", "stream_helper"),
    (_RESPONSES, "Responses", "create", "responses"),
    (_RESPONSES, "AsyncResponses", "create", "responses"),
    (_RESPONSES, "Responses", "parse", "responses"),
    (_RESPONSES, "AsyncResponses", "parse", "responses"),
    (_RESPONSES, "Responses", "stream", "stream_helper"),
    (_RESPONSES, "AsyncResponses", "stream", "stream_helper"),
    (_COMPLETIONS, "Completions", "create", "completions"),
    (_COMPLETIONS, "AsyncCompletions", "create", "completions"),
    (_EMBEDDINGS, "Embeddings", "create", "embeddings"),
    (_EMBEDDINGS, "AsyncEmbeddings", "create", "embeddings"),
    (_BASE_CLIENT, "BaseClient", "_build_request", "attempt"),
)


class OpenAIInstrumentor(BaseInstrumentor):
    """Patches the OpenAI SDK so each call emits a GenAI client span."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.40",)

    def _instrument(self, **kwargs: Any) -> None:
        inst: Instruments = kwargs.get("instruments") or entry_point_instruments(self)
        by_api = wrappers(inst)
        for module, cls, method, api in PATCHED:
            if api == "stream_helper":
                wrapper: Any = stream_helper
            elif api == "attempt":
                wrapper = counting_wrapper
            else:
                wrapper = by_api[api][1 if cls.startswith("Async") else 0]
            wrap_function_wrapper(module, f"{cls}.{method}", wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        for module, cls, method, _ in PATCHED:
            unwrap(getattr(importlib.import_module(module), cls), method)
