"""Instrumentation of the ``openai`` SDK: every method patched is listed in ``_instrument``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from llmmeter.openai.patch import chat_completions_create
from llmmeter.telemetry import Instruments

_MODULE = "openai.resources.chat.completions"


class OpenAIInstrumentor(BaseInstrumentor):
    """Patches the OpenAI SDK so each call emits a GenAI client span."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.40",)

    def _instrument(self, **kwargs: Any) -> None:
        inst: Instruments = kwargs["instruments"]
        wrap_function_wrapper(_MODULE, "Completions.create", chat_completions_create(inst))

    def _uninstrument(self, **kwargs: Any) -> None:
        import openai.resources.chat.completions as completions

        unwrap(completions.Completions, "create")
