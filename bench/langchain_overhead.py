"""Overhead of llmmeter's LangChain instrumentation per LLM run.

Method (as bench/instrumentation_overhead.py): an in-process fake chat model (``GenericFakeChatModel``
answering with usage metadata, no network), the same workload run bare and with ``llmmeter.instrument()``
in interleaved rounds (instrument, run a batch, uninstrument, run a batch, ...) so drift hits both sides
alike; the figure is the median over rounds of (instrumented minus bare time per run), per LLM run. Spans go to
a real SDK TracerProvider whose processor drops them (what export costs is the exporter's business).

A third, interleaved the same way, registers a no-op callback handler instead: LangChain does extra work for
any handler (dispatch, streaming checks, input tee-ing), which that column isolates from llmmeter's own share.

    .venv/bin/python bench/langchain_overhead.py [--rounds 15] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Callable
from contextvars import ContextVar

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.tracers.context import _configure_hooks, register_configure_hook
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import llmmeter

ANSWER = " ".join(f"w{i}" for i in range(20))  # streamed as 20-odd chunks
USAGE = {"input_tokens": 120, "output_tokens": 20, "total_tokens": 140, "input_token_details": {"cache_read": 100}}


def _model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.repeat(AIMessage(content=ANSWER, usage_metadata=USAGE)))


@tool
def lookup(query: str) -> str:
    """A tool step."""
    return query.upper()


def _workloads() -> dict[str, tuple[Callable[[int], object], int]]:
    """name -> (run the workload n times, LLM runs per workload)."""
    model = _model()
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()

    def agent_step(value: object) -> str:
        first = model.invoke("plan")
        lookup.invoke({"query": str(first.content)[:10]})
        return str(model.invoke("answer").content)

    agent_chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | RunnableLambda(agent_step).with_config(
        run_name="agent", metadata={"lc_agent_name": "agent"}
    )

    async def ainvoke_n(n: int) -> None:
        for _ in range(n):
            await model.ainvoke("hello")

    return {
        "chat model invoke": (lambda n: [model.invoke("hello") for _ in range(n)], 1),
        "chat model stream (20 chunks)": (lambda n: [list(model.stream("hello")) for _ in range(n)], 1),
        "chat model ainvoke": (lambda n: asyncio.run(ainvoke_n(n)), 1),
        "prompt | model | parser": (lambda n: [chain.invoke({"q": "hello"}) for _ in range(n)], 1),
        "agent chain (2 LLM runs + tool)": (lambda n: [agent_chain.invoke({"q": "hello"}) for _ in range(n)], 2),
    }


class _NoopHandler(BaseCallbackHandler):
    run_inline = True


class _NoopRegistration:
    """A no-op handler registered like llmmeter registers its own (configure hook, every run)."""

    def __enter__(self) -> None:
        handler = _NoopHandler()
        self.var: ContextVar[BaseCallbackHandler | None] = ContextVar("noop", default=handler)
        register_configure_hook(self.var, True, _NoopHandler)

    def __exit__(self, *exc: object) -> None:
        _configure_hooks[:] = [hook for hook in _configure_hooks if hook[0] is not self.var]


def _batch(run: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    run(n)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    trace.set_tracer_provider(TracerProvider())  # spans are built and ended, then dropped
    metrics.set_meter_provider(MeterProvider())
    workloads = _workloads()
    for run, _ in workloads.values():  # warm up both paths
        _batch(run, 20)
    bare: dict[str, list[float]] = {name: [] for name in workloads}
    noop: dict[str, list[float]] = {name: [] for name in workloads}
    instrumented: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(args.rounds):
        for name, (run, _) in workloads.items():  # the three batches of a workload run back to back
            bare[name].append(_batch(run, args.batch))
            with _NoopRegistration():
                noop[name].append(_batch(run, args.batch))
            llmmeter.instrument(configure_export=False)
            instrumented[name].append(_batch(run, args.batch))
            llmmeter.uninstrument()
    print(
        f"{'workload':32} {'bare/run':>9} {'llmmeter/run':>12} {'added/LLM run':>14} {'added %':>8}"
        f" {'of which any handler':>21}"
    )
    for name, (_, llm_runs) in workloads.items():
        b, i = statistics.median(bare[name]), statistics.median(instrumented[name])
        # paired per round (bare, no-op and llmmeter batches ran back to back): drift cancels out
        added = statistics.median(x - y for x, y in zip(instrumented[name], bare[name], strict=True)) / llm_runs
        handler = statistics.median(x - y for x, y in zip(noop[name], bare[name], strict=True)) / llm_runs
        print(
            f"{name:32} {b * 1e6:7.0f}us {i * 1e6:10.0f}us {added * 1e6:12.0f}us {100 * added * llm_runs / b:7.1f}%"
            f" {handler * 1e6:19.0f}us"
        )


if __name__ == "__main__":
    main()
