"""Instrumentation of the ``google-genai`` SDK (Gemini Developer API and Vertex AI): every patched method.

Spans come from each generate request (``models.generate_content`` and ``generate_content_stream``, via
the per-request ``_generate_content`` / ``_generate_content_stream``, so automatic function calling and
continuation hops are each counted) and ``models.embed_content``, for ``client.models`` and
``client.aio.models``. Provider ``gcp.vertex_ai`` for a Vertex AI client, ``gcp.gemini`` otherwise.
``count_tokens`` is free and not spanned. ``BaseApiClient._request_once`` / ``_async_request_once`` run once
per HTTP attempt and are counted to report the SDK's internal retries.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from llmmeter.bootstrap import entry_point_instruments
from llmmeter.google_genai.patch import wrappers
from llmmeter.retries import counting_wrapper
from llmmeter.telemetry import Instruments

_MODELS = "google.genai.models"
_API_CLIENT = "google.genai._api_client"

# (module, class, method, wrapper kind)
PATCHED = (
    (_MODELS, "Models", "_generate_content", "generate"),
    (_MODELS, "AsyncModels", "_generate_content", "generate"),
    (_MODELS, "Models", "_generate_content_stream", "stream"),
    (_MODELS, "AsyncModels", "_generate_content_stream", "stream"),
    (_MODELS, "Models", "embed_content", "embed"),
    (_MODELS, "AsyncModels", "embed_content", "embed"),
    (_API_CLIENT, "BaseApiClient", "_request_once", "attempt"),
    (_API_CLIENT, "BaseApiClient", "_async_request_once", "attempt"),
)


class GoogleGenAIInstrumentor(BaseInstrumentor):
    """Patches google-genai so each model request emits a GenAI client span."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("google-genai >= 1.0",)

    def _instrument(self, **kwargs: Any) -> None:
        inst: Instruments = kwargs.get("instruments") or entry_point_instruments(self)
        by_kind = wrappers(inst)
        for module, cls, method, kind in PATCHED:
            if kind == "attempt":
                wrapper: Any = counting_wrapper
            else:
                wrapper = by_kind[kind][1 if cls.startswith("Async") else 0]
            if hasattr(getattr(importlib.import_module(module), cls), method):
                wrap_function_wrapper(module, f"{cls}.{method}", wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        for module, cls, method, _ in PATCHED:
            owner = getattr(importlib.import_module(module), cls)
            if hasattr(getattr(owner, method, None), "__wrapped__"):
                unwrap(owner, method)
