"""Wrapper factories for the patched google-genai methods, sync and async side by side.

The per-request methods ``Models._generate_content`` / ``_generate_content_stream`` are patched rather
than the public ``generate_content``: with automatic function calling or automatic continuation one public
call sends several billable requests, and each gets its own span. ``generate_content_stream`` (sync) is a
generator whose HTTP request happens on the first ``next()``, so the stream proxy counts retries then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmmeter import semconv
from llmmeter.calls import Shape, Wrapper, async_wrapper, sync_wrapper
from llmmeter.google_genai import response as rsp
from llmmeter.google_genai.stream import GenerateAccumulator
from llmmeter.invocation import Invocation
from llmmeter.streaming import AsyncStream, SyncStream
from llmmeter.telemetry import Instruments


def _respond_generate(invocation: Invocation, result: Any) -> Any:
    invocation.end_later(rsp.end_generate, result)
    return result


def _respond_stream(invocation: Invocation, result: Any) -> Any:
    if hasattr(result, "__anext__"):
        return AsyncStream(result, invocation, GenerateAccumulator())
    # The request is sent on the first next(): count its attempts there.
    return SyncStream(result, invocation, GenerateAccumulator(), attempts=invocation)


def _respond_embed(invocation: Invocation, result: Any) -> Any:
    invocation.end_later(rsp.end_embed, result)
    return result


def _shape(name: str, operation: str, request: Callable[..., dict[str, Any]], respond: Callable[..., Any]) -> Shape:
    return Shape(
        name=name,
        operation=operation,
        endpoint=rsp.endpoint,
        request=request,
        respond=respond,
        prompt=rsp.prompt if operation == semconv.OP_GENERATE_CONTENT else None,
    )


GENERATE = _shape(
    "google_genai.generate", semconv.OP_GENERATE_CONTENT, rsp.generate_request_attributes, _respond_generate
)
STREAM = _shape("google_genai.stream", semconv.OP_GENERATE_CONTENT, rsp.stream_request_attributes, _respond_stream)
EMBED = _shape("google_genai.embed", semconv.OP_EMBEDDINGS, rsp.generate_request_attributes, _respond_embed)


def wrappers(inst: Instruments) -> dict[str, tuple[Wrapper, Wrapper]]:
    """(sync, async) wrappers: generate, stream, embed."""
    return {
        "generate": (sync_wrapper(inst, GENERATE), async_wrapper(inst, GENERATE)),
        "stream": (sync_wrapper(inst, STREAM), async_wrapper(inst, STREAM)),
        "embed": (sync_wrapper(inst, EMBED), async_wrapper(inst, EMBED)),
    }
