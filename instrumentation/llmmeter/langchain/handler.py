"""``LlmMeterCallbackHandler``: every LangChain run as an OpenTelemetry span, priced once.

* Chat model / LLM runs become GenAI client spans exactly like the SDK instrumentation's (``chat {model}``,
  kind CLIENT, ``gen_ai.provider.name`` from ``ls_provider``, usage from ``AIMessage.usage_metadata``).
* Agents become ``invoke_agent {name}`` spans, tools ``execute_tool {tool}``, chains and retrievers INTERNAL
  spans named after the run, each the child of its parent run (``parent_run_id``), so a trace is a waterfall.
* One call, one priced span: a provider SDK span started while the LLM run executes (see ``scope``) marks the
  run covered; the LangChain span then carries ``llmmeter.billable=false`` (the SDK span, closest to the wire,
  has the exact cache/reasoning details) and records no GenAI metrics. A model whose SDK llmmeter does not
  instrument (or a fake one) leaves the run uncovered and the LangChain span is the billable one.

Async-safe: state lives in a dict keyed by run id behind a lock; every method is synchronous, quick and never
blocks, so ``run_inline = True`` (async runs call it in the event loop, in the run's own context). Nothing
here raises into LangChain: errors are logged once and swallowed.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmmeter import semconv, telemetry
from llmmeter.attribution import KEY as _ATTRIBUTION_KEY  # the context key llmmeter.attributes() uses
from llmmeter.attribution import current_attributes
from llmmeter.invocation import LlmRun, TokenUsage, llm_run_context, log_once
from llmmeter.langchain import metadata as lc_metadata
from llmmeter.langchain import results, scope
from llmmeter.telemetry import Instruments

F = TypeVar("F", bound=Callable[..., Any])

# Runs whose end never arrives (a LangChain bug, a dropped stream) must not grow the table forever.
MAX_OPEN_RUNS = 10_000
_HIDDEN_TAG = "langsmith:hidden"
_LEGACY_AGENT_NAMES = frozenset({"AgentExecutor"})


def _guarded(where: str) -> Callable[[F], F]:
    """Never let an llmmeter error reach LangChain (it would log a warning per call, or raise)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                log_once(f"langchain.{where}", exc)
                return None

        return cast(F, guarded)

    return decorate


class _Run:
    """One open LangChain run. ``span`` is None for hidden runs (their children attach to the parent)."""

    __slots__ = (
        "agent",
        "attrs",
        "ctx",
        "first_chunk_s",
        "kind",
        "llm_run",
        "metric_attrs",
        "parent",
        "span",
        "start",
        "streamed",
    )

    def __init__(self, kind: str, span: Span | None, ctx: Context, attrs: dict[str, str], parent: _Run | None) -> None:
        self.kind = kind
        self.span = span
        self.ctx = ctx
        self.attrs = attrs
        self.parent = parent
        self.agent: str | None = parent.agent if parent is not None else None
        self.llm_run: LlmRun | None = None
        self.metric_attrs: dict[str, Any] | None = None
        self.start = time.perf_counter()
        self.first_chunk_s: float | None = None
        self.streamed = False


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
        ident = serialized.get("id")
        if isinstance(ident, list) and ident and isinstance(ident[-1], str):
            return ident[-1]
    return default


class LlmMeterCallbackHandler(BaseCallbackHandler):
    """Emits llmmeter's spans for LangChain runs. ``llmmeter.instrument()`` registers one automatically;
    passing one in ``callbacks=[...]`` as well is harmless (LangChain keeps one handler per type)."""

    run_inline = True  # quick and non-blocking: run in the event loop, in the run's context, in order
    raise_error = False
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, instruments: Instruments | None = None) -> None:
        super().__init__()
        self._inst = instruments if instruments is not None else telemetry.create_instruments()
        self._runs: dict[UUID, _Run] = {}
        self._prompts: dict[UUID, dict[str, str]] = {}  # sequence run id -> its prompt template run's prompt
        self._lock = threading.Lock()

    # --- what the instrumented LangChain methods ask -----------------------------------------------------
    def run_context(self, run_id: UUID) -> Context | None:
        """The context a model call / tool body of this open run executes in."""
        run = self._runs.get(run_id)
        return run.ctx if run is not None else None

    def model_call_context(self, run_ids: Sequence[UUID]) -> Context | None:
        """The context for one provider call that serves several LLM runs (a batched ``generate``).

        The runs share one ``LlmRun``: the SDK span covers them all. The call runs under the first run's span.
        """
        runs = [r for r in (self._runs.get(run_id) for run_id in run_ids) if r is not None and r.llm_run is not None]
        if not runs:
            return None
        if len(runs) == 1:
            return runs[0].ctx
        shared = LlmRun()
        for run in runs:
            run.llm_run = shared
        return llm_run_context(shared, runs[0].ctx)

    # --- bookkeeping ----------------------------------------------------------------------------------
    def _begin(
        self, parent_run_id: UUID | None, tags: Iterable[Any] | None, metadata: Mapping[str, Any] | None
    ) -> tuple[_Run | None, Context, dict[str, str]]:
        """The parent run (if llmmeter knows it), the context a new span starts in, and its attribution."""
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        base = parent.ctx if parent is not None else context.get_current()
        attrs = {**parent.attrs} if parent is not None else {}
        attrs.update(current_attributes())
        attrs.update(lc_metadata.attribution(metadata, tags))
        return parent, base, attrs

    def _open(
        self,
        run_id: UUID,
        kind: str,
        name: str,
        span_kind: SpanKind,
        span_attrs: dict[str, Any],
        parent: _Run | None,
        base: Context,
        attrs: dict[str, str],
    ) -> _Run:
        span_attrs.update(attrs)
        span_attrs[semconv.LANGCHAIN_RUN_TYPE] = kind
        span = self._inst.tracer.start_span(name, context=base, kind=span_kind, attributes=span_attrs)
        ctx = trace.set_span_in_context(span, context.set_value(_ATTRIBUTION_KEY, attrs, base))
        run = _Run(kind, span, ctx, attrs, parent)
        self._store(run_id, run)
        return run

    def _hidden(self, run_id: UUID, parent: _Run | None, base: Context, attrs: dict[str, str]) -> None:
        """A run LangChain marks hidden gets no span; its children hang off its parent."""
        self._store(run_id, _Run("hidden", None, context.set_value(_ATTRIBUTION_KEY, attrs, base), attrs, parent))

    def _store(self, run_id: UUID, run: _Run) -> None:
        with self._lock:
            if len(self._runs) >= MAX_OPEN_RUNS:
                stale = next(iter(self._runs))
                dropped = self._runs.pop(stale)
                if dropped.span is not None:
                    dropped.span.end()
                log_once("langchain.open_runs", RuntimeError(f"more than {MAX_OPEN_RUNS} open LangChain runs"))
            self._runs[run_id] = run

    def _pop(self, run_id: UUID) -> _Run | None:
        with self._lock:
            return self._runs.pop(run_id, None)

    @staticmethod
    def _fail(span: Span, error: BaseException, attrs: dict[str, Any] | None = None) -> str:
        error_type = type(error).__qualname__
        out: dict[str, Any] = dict(attrs) if attrs else {}
        out[semconv.ERROR_TYPE] = error_type
        status_code = getattr(error, "status_code", None)
        if isinstance(status_code, int) and not isinstance(status_code, bool):
            out[semconv.HTTP_RESPONSE_STATUS_CODE] = status_code
        span.set_attributes(out)
        span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
        span.end()
        return error_type

    def _end_plain(self, run_id: UUID, error: BaseException | None = None) -> None:
        run = self._pop(run_id)
        if run is None or run.span is None:
            return
        if error is None or isinstance(error, GeneratorExit):  # the app stopped reading a stream: not a failure
            run.span.end()
        else:
            self._fail(run.span, error)

    # --- model runs -----------------------------------------------------------------------------------
    def _start_model(
        self,
        operation: str,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        parent, base, attrs = self._begin(parent_run_id, tags, metadata)
        meta = metadata or {}
        params = kwargs.get("invocation_params") or {}
        provider = results.provider_name(meta.get("ls_provider"))
        model = results.request_model(params, meta)
        span_attrs = results.request_attributes(params, meta)
        span_attrs[semconv.GEN_AI_OPERATION_NAME] = operation
        span_attrs[semconv.GEN_AI_PROVIDER_NAME] = provider
        if parent_run_id is not None and parent_run_id in self._prompts:
            # the prompt template run before it in the sequence: on this span and the provider SDK's span inside
            attrs.update(self._prompts[parent_run_id])
        if model:
            span_attrs[semconv.GEN_AI_REQUEST_MODEL] = model
        name = f"{operation} {model}" if model else operation
        run = self._open(run_id, "llm", name, SpanKind.CLIENT, span_attrs, parent, base, attrs)
        run.llm_run = LlmRun()
        run.ctx = llm_run_context(run.llm_run, run.ctx)
        run.streamed = params.get("stream") is True or params.get("streaming") is True
        run.metric_attrs = {
            semconv.GEN_AI_OPERATION_NAME: operation,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.GEN_AI_REQUEST_MODEL: model,
        }
        # A LangChain model run inside another one (a model wrapping a model): the inner run is the call;
        # the outer one must not be priced as well.
        ancestor = parent
        while ancestor is not None:
            if ancestor.llm_run is not None:
                ancestor.llm_run.covered = True
            ancestor = ancestor.parent
        scope.claim("llm", run.ctx)

    @_guarded("on_chat_model_start")
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_model(semconv.OP_CHAT, serialized, run_id, parent_run_id, tags, metadata, kwargs)

    @_guarded("on_llm_start")
    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        model_type = (metadata or {}).get("ls_model_type")
        operation = semconv.OP_CHAT if model_type == "chat" else semconv.OP_TEXT_COMPLETION
        self._start_model(operation, serialized, run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)  # hot path: a plain dict read (atomic), no lock
        if run is not None and run.first_chunk_s is None:
            run.first_chunk_s = time.perf_counter() - run.start

    def _model_attrs(self, run: _Run, result: results.RunResult | None) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if run.first_chunk_s is not None:
            attrs[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = run.first_chunk_s
        attrs[semconv.GEN_AI_REQUEST_STREAM] = run.streamed or run.first_chunk_s is not None
        if result is not None:
            if result.response_model:
                attrs[semconv.GEN_AI_RESPONSE_MODEL] = result.response_model
                if run.metric_attrs is not None:
                    run.metric_attrs[semconv.GEN_AI_RESPONSE_MODEL] = result.response_model
            if result.response_id:
                attrs[semconv.GEN_AI_RESPONSE_ID] = result.response_id
            if result.finish_reasons:
                attrs[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = result.finish_reasons
            if result.tool_calls:
                attrs[semconv.TOOL_CALLS] = result.tool_calls
            if result.usage is not None:
                attrs.update(result.usage.attributes())
        return attrs

    def _record_metrics(self, run: _Run, usage: TokenUsage | None, error_type: str | None = None) -> None:
        inst, attrs = self._inst, dict(run.metric_attrs or {})
        if error_type is not None:
            attrs[semconv.ERROR_TYPE] = error_type
        inst.metrics.add(attrs, time.perf_counter() - run.start, run.first_chunk_s, usage)

    @_guarded("on_llm_end")
    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is None or run.span is None or run.llm_run is None:
            return
        result = results.RunResult(response)
        attrs = self._model_attrs(run, result)
        billable = True
        if run.llm_run.covered:
            billable = False  # the provider SDK span underneath carries this call's usage
        elif result.cache_hit:
            billable = False  # replayed from LangChain's cache: no provider call, nothing to pay
            attrs[semconv.LANGCHAIN_CACHE_HIT] = True
        if not billable:
            attrs[semconv.BILLABLE] = False
        if result.usage is None:
            attrs[semconv.USAGE_MISSING] = True
        run.span.set_attributes(attrs)
        run.span.end()
        if billable:
            self._record_metrics(run, result.usage)

    @_guarded("on_llm_error")
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if run is None or run.span is None or run.llm_run is None:
            return
        response = kwargs.get("response")
        result = results.RunResult(response) if response is not None else None
        attrs = self._model_attrs(run, result)
        if run.llm_run.covered:
            attrs[semconv.BILLABLE] = False
        usage = result.usage if result is not None else None
        if isinstance(error, GeneratorExit):
            # The app stopped reading the stream: the call happened, usage (if any arrived) may be partial.
            attrs[semconv.STREAM_CLOSED_EARLY] = True
            if usage is None:
                attrs[semconv.USAGE_MISSING] = True
            run.span.set_attributes(attrs)
            run.span.end()
            if not run.llm_run.covered:
                self._record_metrics(run, usage)
            return
        error_type = self._fail(run.span, error, attrs)
        if not run.llm_run.covered:
            self._record_metrics(run, usage, error_type)

    # --- chains and agents ----------------------------------------------------------------------------
    @_guarded("on_chain_start")
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        parent, base, attrs = self._begin(parent_run_id, tags, metadata)
        if kwargs.get("run_type") == "prompt" and parent_run_id is not None:
            # a prompt template: the model call that follows it in the same sequence sends its prompt
            self._prompts[parent_run_id] = lc_metadata.prompt_template(serialized, kwargs.get("name"), metadata)
        if tags and _HIDDEN_TAG in tags:
            self._hidden(run_id, parent, base, attrs)
            return
        name = _run_name(serialized, kwargs, "chain")
        agent = (metadata or {}).get("lc_agent_name")
        inherited_agent = parent.agent if parent is not None else None
        if not (isinstance(agent, str) and agent and agent != inherited_agent):
            agent = name if name in _LEGACY_AGENT_NAMES else None
        if agent is None:
            self._open(run_id, "chain", name, SpanKind.INTERNAL, {}, parent, base, attrs)
            return
        span_attrs = {semconv.GEN_AI_OPERATION_NAME: semconv.OP_INVOKE_AGENT, semconv.GEN_AI_AGENT_NAME: agent}
        name = f"{semconv.OP_INVOKE_AGENT} {agent}"
        run = self._open(run_id, "agent", name, SpanKind.INTERNAL, span_attrs, parent, base, attrs)
        run.agent = agent

    @_guarded("on_agent_action")
    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Legacy agents (``AgentExecutor`` and kin) report actions on their own run: make it an agent span."""
        run = self._runs.get(run_id)
        if run is None or run.span is None or run.kind != "chain":
            return
        name = getattr(run.span, "name", None) or "agent"
        run.kind = "agent"
        run.agent = name
        run.span.update_name(f"{semconv.OP_INVOKE_AGENT} {name}")
        run.span.set_attributes(
            {
                semconv.GEN_AI_OPERATION_NAME: semconv.OP_INVOKE_AGENT,
                semconv.GEN_AI_AGENT_NAME: name,
                semconv.LANGCHAIN_RUN_TYPE: "agent",
            }
        )

    @_guarded("on_chain_end")
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._prompts.pop(run_id, None)
        self._end_plain(run_id)

    @_guarded("on_chain_error")
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._prompts.pop(run_id, None)
        self._end_plain(run_id, error)

    # --- tools and retrievers -------------------------------------------------------------------------
    @_guarded("on_tool_start")
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        parent, base, attrs = self._begin(parent_run_id, tags, metadata)
        name = _run_name(serialized, kwargs, "tool")
        span_attrs: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OP_EXECUTE_TOOL,
            semconv.GEN_AI_TOOL_NAME: name,
            semconv.GEN_AI_TOOL_TYPE: "function",
        }
        call_id = kwargs.get("tool_call_id")
        if isinstance(call_id, str) and call_id:
            span_attrs[semconv.GEN_AI_TOOL_CALL_ID] = call_id
        span_name = f"{semconv.OP_EXECUTE_TOOL} {name}"
        run = self._open(run_id, "tool", span_name, SpanKind.INTERNAL, span_attrs, parent, base, attrs)
        scope.claim("tool", run.ctx)

    @_guarded("on_tool_end")
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_plain(run_id)

    @_guarded("on_tool_error")
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_plain(run_id, error)

    @_guarded("on_retriever_start")
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        parent, base, attrs = self._begin(parent_run_id, tags, metadata)
        name = _run_name(serialized, kwargs, "retriever")
        run = self._open(run_id, "retriever", name, SpanKind.INTERNAL, {}, parent, base, attrs)
        scope.claim("retriever", run.ctx)

    @_guarded("on_retriever_end")
    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_plain(run_id)

    @_guarded("on_retriever_error")
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_plain(run_id, error)
