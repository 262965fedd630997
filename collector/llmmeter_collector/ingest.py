"""The write path: exports wait in a bounded queue, one writer commits many of them per transaction.

An export is acknowledged only when the transaction holding its calls has committed. When the queue
is full the export is refused as retryable (HTTP 503 / gRPC UNAVAILABLE) instead of growing memory;
when Postgres fails, every export of that batch is refused as retryable and nothing is half-written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from llmmeter_collector.llmcall import LlmCall
from llmmeter_collector.storage import Ledger

logger = logging.getLogger("llmmeter.collector")


class Overloaded(Exception):
    """The collector cannot take more now; the sender should retry later."""


class StorageUnavailable(Exception):
    """Postgres could not commit the export; the sender should retry."""


_Item = tuple[Sequence[LlmCall], "Future[list[LlmCall]]"]


class Ingestor:
    """Bounded queue of pending exports and the writer thread that commits them."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_queued_calls: int = 100_000,
        max_batch_calls: int = 5_000,
        on_commit: Callable[[list[LlmCall], float], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._max_queued = max_queued_calls
        self._max_batch = max_batch_calls
        self._queued = 0
        self._lock = threading.Lock()
        self._on_commit = on_commit
        self._thread = threading.Thread(target=self._run, name="llmmeter-writer", daemon=True)
        self._stopping = False
        self._thread.start()

    @property
    def queued_calls(self) -> int:
        return self._queued

    def submit(self, calls: Sequence[LlmCall]) -> Future[list[LlmCall]]:
        """Queue calls for commit; the future resolves to the newly inserted calls once durable."""
        future: Future[list[LlmCall]] = Future()
        if not calls:
            future.set_result([])
            return future
        with self._lock:
            if self._stopping:
                raise Overloaded("collector is shutting down")
            if self._queued + len(calls) > self._max_queued and self._queued > 0:
                raise Overloaded(f"write queue full ({self._queued} calls pending)")
            self._queued += len(calls)
        self._queue.put((calls, future))
        return future

    def _take_batch(self, first: _Item) -> tuple[list[_Item], bool]:
        batch = [first]
        size = len(first[0])
        stop = False
        while size < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
            size += len(item[0])
        return batch, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._take_batch(first)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        calls = [call for item in batch for call in item[0]]
        started = time.perf_counter()
        try:
            inserted = self._ledger.write(calls)
        except Exception as exc:
            logger.error("commit of %d calls failed: %r", len(calls), exc)
            for _, future in batch:
                future.set_exception(StorageUnavailable(str(exc)))
        else:
            elapsed = time.perf_counter() - started
            if self._on_commit is not None:
                try:
                    self._on_commit(inserted, elapsed)
                except Exception:
                    logger.exception("on_commit hook failed")
            new_keys = {(c.trace_id, c.span_id) for c in inserted}
            for item_calls, future in batch:
                future.set_result([c for c in item_calls if (c.trace_id, c.span_id) in new_keys])
        finally:
            with self._lock:
                self._queued -= len(calls)

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking exports, commit everything queued, stop the writer."""
        with self._lock:
            self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._ledger.close()
