"""LangChain instrumentation: every chain, agent, tool and model step as a span, each model call priced once.

``llmmeter.instrument()`` registers ``LlmMeterCallbackHandler`` with LangChain's configure hook (so every run
gets it without code changes; a handler the app passes in ``callbacks=[...]`` is not doubled, LangChain keeps
one per type), wraps the methods listed in ``_instrument`` so provider SDK calls run in their LangChain run's
OpenTelemetry context (see ``scope``), and wraps embeddings classes (see ``embeddings``).
"""

from __future__ import annotations

from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from llmmeter.bootstrap import entry_point_instruments
from llmmeter.langchain import patches
from llmmeter.langchain.embeddings import EmbeddingsPatch
from llmmeter.langchain.handler import LlmMeterCallbackHandler

__all__ = ["LangChainInstrumentor", "LlmMeterCallbackHandler"]

_CHAT = "langchain_core.language_models.chat_models"
_LLM = "langchain_core.language_models.llms"
_TOOL = "langchain_core.tools.base"
_RETRIEVER = "langchain_core.retrievers"
_KW_ONLY = 1_000  # position of a keyword-only argument: never positional

# (module, class, method, wrapper): the whole list of what is patched.
_PATCHES = (
    (_CHAT, "BaseChatModel", "_generate_with_cache", patches.run_call(2, "run_manager")),
    (_CHAT, "BaseChatModel", "_agenerate_with_cache", patches.run_acall(2, "run_manager")),
    (_CHAT, "BaseChatModel", "_iter_v2_events", patches.run_steps(_KW_ONLY, "run_manager")),
    (_CHAT, "BaseChatModel", "_aiter_v2_events", patches.run_asteps(_KW_ONLY, "run_manager")),
    (_CHAT, "BaseChatModel", "stream", patches.scope_steps("llm")),
    (_CHAT, "BaseChatModel", "astream", patches.scope_asteps("llm")),
    (_LLM, "BaseLLM", "_generate_helper", patches.run_call(2, "run_managers")),
    (_LLM, "BaseLLM", "_agenerate_helper", patches.run_acall(2, "run_managers")),
    (_LLM, "BaseLLM", "stream", patches.scope_steps("llm")),
    (_LLM, "BaseLLM", "astream", patches.scope_asteps("llm")),
    (_TOOL, "BaseTool", "run", patches.scope_call("tool")),
    (_TOOL, "BaseTool", "arun", patches.scope_acall("tool")),
    (_RETRIEVER, "BaseRetriever", "invoke", patches.scope_call("retriever")),
    (_RETRIEVER, "BaseRetriever", "ainvoke", patches.scope_acall("retriever")),
)


class LangChainInstrumentor(BaseInstrumentor):
    """Registers the callback handler and gives model calls their LangChain run's context."""

    # State lives on the class's one instance (BaseInstrumentor is a singleton; __init__ would reset it).
    _handler_var: ContextVar[LlmMeterCallbackHandler | None] | None = None
    _patched: list[tuple[Any, str]]
    _embeddings: EmbeddingsPatch | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("langchain-core >= 0.3",)

    def _instrument(self, **kwargs: Any) -> None:
        import importlib

        from langchain_core.tracers.context import register_configure_hook

        inst = kwargs.get("instruments") or entry_point_instruments(self)
        handler = LlmMeterCallbackHandler(inst)
        # A ContextVar whose default is the handler: every context, every thread, sees it.
        self._handler_var = ContextVar("llmmeter_langchain_handler", default=handler)
        register_configure_hook(self._handler_var, True, LlmMeterCallbackHandler)
        self._patched = []
        for module_name, class_name, method, wrapper in _PATCHES:
            cls = getattr(importlib.import_module(module_name), class_name)
            if method in cls.__dict__:  # a private method a future langchain-core dropped is skipped
                wrap_function_wrapper(cls, method, wrapper)
                self._patched.append((cls, method))
        self._embeddings = EmbeddingsPatch(inst)
        self._embeddings.apply()

    def _uninstrument(self, **kwargs: Any) -> None:
        from langchain_core.tracers import context as tracer_context

        hooks = tracer_context._configure_hooks  # no public way to unregister a hook
        hooks[:] = [hook for hook in hooks if hook[0] is not self._handler_var]
        self._handler_var = None
        patched: list[tuple[Any, str]] = getattr(self, "_patched", [])
        while patched:
            cls, method = patched.pop()
            unwrap(cls, method)
        if self._embeddings is not None:
            self._embeddings.remove()
            self._embeddings = None
