"""Carry the OpenTelemetry context (and so llmmeter attribution) into threads started inside it.

asyncio tasks copy the context by themselves; threads do not. ``patch()`` makes ``threading.Thread``
and ``concurrent.futures.ThreadPoolExecutor.submit`` run their target in the context of the caller.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

_CONTEXT_ATTR = "_llmmeter_context"


def _thread_start(wrapped: Any, instance: threading.Thread, args: Any, kwargs: Any) -> Any:
    setattr(instance, _CONTEXT_ATTR, contextvars.copy_context())
    return wrapped(*args, **kwargs)


def _thread_run(wrapped: Any, instance: threading.Thread, args: Any, kwargs: Any) -> Any:
    ctx = getattr(instance, _CONTEXT_ATTR, None)
    if ctx is None:
        return wrapped(*args, **kwargs)
    return ctx.run(wrapped, *args, **kwargs)


def _executor_submit(wrapped: Any, instance: ThreadPoolExecutor, args: Any, kwargs: Any) -> Any:
    fn, *rest = args
    ctx = contextvars.copy_context()
    return wrapped(ctx.run, fn, *rest, **kwargs)


def patch() -> None:
    wrap_function_wrapper(threading, "Thread.start", _thread_start)
    wrap_function_wrapper(threading, "Thread.run", _thread_run)
    wrap_function_wrapper("concurrent.futures.thread", "ThreadPoolExecutor.submit", _executor_submit)


def unpatch() -> None:
    unwrap(threading.Thread, "start")
    unwrap(threading.Thread, "run")
    unwrap(ThreadPoolExecutor, "submit")
