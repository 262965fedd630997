"""LangChain embeddings as GenAI ``embeddings`` spans.

LangChain has no embedding callbacks, so the ``embed_documents`` / ``embed_query`` (and async) methods of every
``langchain_core.embeddings.Embeddings`` subclass are wrapped: the classes that exist at ``instrument()`` and,
through ``Embeddings.__init_subclass__``, those defined later. A method calling another (``embed_query`` ->
``embed_documents``, the async default -> the sync one) yields one span, not two.

LangChain embeddings return vectors only, never token usage. So, like a LangChain LLM run, the span enters an
``LlmRun``: when the provider SDK underneath is instrumented (OpenAI embeddings), its span is this span's
child, carries the usage and is the billable one, and this span is marked ``llmmeter.billable=false``. When it
is not, this span is the billable one with ``llmmeter.usage.missing=true`` (the call is visible, not $0).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context, trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from wrapt import ObjectProxy, wrap_function_wrapper

from llmmeter import semconv
from llmmeter.attribution import current_attributes
from llmmeter.invocation import LlmRun, llm_run_context, log_once
from llmmeter.langchain import results
from llmmeter.telemetry import Instruments

METHODS = ("embed_documents", "embed_query", "aembed_documents", "aembed_query")
_ACTIVE_KEY = context.create_key("llmmeter.langchain.embedding")


def provider_of(instance: Any) -> str:
    """``gen_ai.provider.name`` of an embeddings class, from the integration package it lives in."""
    cls = type(instance)
    package = cls.__module__.split(".", 1)[0]
    if package == "langchain_openai" and "Azure" in cls.__name__:
        return semconv.PROVIDER_AZURE_OPENAI
    provider = results.PACKAGE_PROVIDERS.get(package)
    if provider is not None:
        return provider
    return package.removeprefix("langchain_") or "langchain"


def model_of(instance: Any) -> str:
    for attr in ("model", "model_name", "model_id", "deployment"):
        value = getattr(instance, attr, None)
        if isinstance(value, str) and value:
            return value
    return ""


class _EmbeddingCall:
    """One embeddings span with its LlmRun; ``ctx`` is what the wrapped method runs in."""

    __slots__ = ("ctx", "llm_run", "metric_attrs", "span", "start")

    def __init__(self, inst: Instruments, instance: Any) -> None:
        provider, model = provider_of(instance), model_of(instance)
        attrs: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_EMBEDDINGS,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.LANGCHAIN_RUN_TYPE: "embeddings",
        }
        if model:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = model
        attrs.update(current_attributes())
        name = f"{semconv.OP_EMBEDDINGS} {model}" if model else semconv.OP_EMBEDDINGS
        self.span: Span = inst.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        self.llm_run = LlmRun()
        ctx = trace.set_span_in_context(self.span)
        self.ctx = context.set_value(_ACTIVE_KEY, True, llm_run_context(self.llm_run, ctx))
        self.metric_attrs = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_EMBEDDINGS,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.GEN_AI_REQUEST_MODEL: model,
        }
        self.start = time.perf_counter()

    def end(self, inst: Instruments, error: BaseException | None) -> None:
        span = self.span
        billable = not self.llm_run.covered
        if not billable:
            span.set_attribute(semconv.BILLABLE, False)
        elif error is None:
            span.set_attribute(semconv.USAGE_MISSING, True)  # LangChain embeddings report no usage
        if error is not None:
            error_type = type(error).__qualname__
            span.set_attribute(semconv.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
            self.metric_attrs[semconv.ERROR_TYPE] = error_type
        span.end()
        if billable:
            inst.metrics.add(self.metric_attrs, time.perf_counter() - self.start)


def _start(inst: Instruments, instance: Any) -> _EmbeddingCall | None:
    if context.get_value(_ACTIVE_KEY):
        return None  # an embeddings method called by another one: the outer call has the span
    try:
        return _EmbeddingCall(inst, instance)
    except Exception as exc:
        log_once("langchain.embeddings.start", exc)
        return None


def _end(inst: Instruments, call: _EmbeddingCall, error: BaseException | None) -> None:
    try:
        call.end(inst, error)
    except Exception as exc:
        log_once("langchain.embeddings.end", exc)


def sync_wrapper(inst: Instruments) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        call = _start(inst, instance)
        if call is None:
            return wrapped(*args, **kwargs)
        token = context.attach(call.ctx)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _end(inst, call, exc)
            raise
        finally:
            context.detach(token)
        _end(inst, call, None)
        return result

    return wrapper


def async_wrapper(inst: Instruments) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        async def run() -> Any:
            call = _start(inst, instance)
            if call is None:
                return await wrapped(*args, **kwargs)
            token = context.attach(call.ctx)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                _end(inst, call, exc)
                raise
            finally:
                context.detach(token)
            _end(inst, call, None)
            return result

        return run()

    return wrapper


class EmbeddingsPatch:
    """Wraps the embeddings methods of every ``Embeddings`` subclass, now and later; undone by ``remove``."""

    def __init__(self, inst: Instruments) -> None:
        self._sync = sync_wrapper(inst)
        self._async = async_wrapper(inst)
        self._wrapped: list[tuple[type, str]] = []

    def apply(self) -> None:
        from langchain_core.embeddings import Embeddings

        pending: list[type] = list(Embeddings.__subclasses__())
        while pending:
            cls = pending.pop()
            self.wrap_class(cls)
            pending.extend(cls.__subclasses__())
        patch = self

        def __init_subclass__(cls: type, **kwargs: Any) -> None:
            super(Embeddings, cls).__init_subclass__(**kwargs)  # type: ignore[misc]
            patch.wrap_class(cls)

        Embeddings.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]

    def wrap_class(self, cls: type) -> None:
        for name in METHODS:
            method = cls.__dict__.get(name)
            if method is None or isinstance(method, ObjectProxy) or getattr(method, "__isabstractmethod__", False):
                continue
            try:
                wrap_function_wrapper(cls, name, self._async if name.startswith("a") else self._sync)
                self._wrapped.append((cls, name))
            except Exception as exc:
                log_once("langchain.embeddings.wrap", exc)

    def remove(self) -> None:
        from langchain_core.embeddings import Embeddings

        if "__init_subclass__" in Embeddings.__dict__:
            del Embeddings.__init_subclass__
        while self._wrapped:
            cls, name = self._wrapped.pop()
            unwrap(cls, name)
