"""The write path: exports wait in a bounded queue, writer threads commit many of them per transaction.

An export is acknowledged only when the transaction holding its calls has committed, or, while Postgres is
unreachable and a spool is configured, when its calls are fsync'd in the on-disk spool (replayed into
Postgres by the same writer once it is back). When the queue is full the export is refused as retryable
(HTTP 503 / gRPC UNAVAILABLE) instead of growing memory; when Postgres fails and there is no spool, or the
spool is full, every export of that batch is refused as retryable and nothing is half-written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timezone

import psycopg

from llmmeter_collector.llmcall import LlmCall
from llmmeter_collector.spool import Spool, SpoolFull
from llmmeter_collector.storage import ROLLED_BACK, Ledger, copy_rows

logger = logging.getLogger("llmmeter.collector")

REPLAY_RETRY_SECONDS = 2.0  # while spooling, how often the writer tries Postgres again


class Overloaded(Exception):
    """The collector cannot take more now; the sender should retry later."""


class StorageUnavailable(Exception):
    """Postgres could not commit the export (and it could not be spooled); the sender should retry."""


# (calls, their COPY rows when already made, the future acknowledging them)
_Item = tuple[Sequence[LlmCall], "bytes | None", "Future[list[LlmCall]]"]


def _unreachable(exc: BaseException) -> bool:
    """A failure to reach Postgres (worth spooling), as opposed to a bug, a constraint violation, or a
    transaction Postgres rolled back (a deadlock: psycopg counts it as an ``OperationalError`` too)."""
    if isinstance(exc, ROLLED_BACK):
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError)


class Ingestor:
    """Bounded queue of pending exports and the writer threads that commit them, one Postgres connection each.

    With two writers one batch's rows are sent while the previous batch's insert runs, so Postgres is not
    idle between transactions. Their rollup upserts touch rows in the same order, so they queue behind each
    other rather than deadlock; every write stays idempotent. The spool is used by one writer at a time.
    """

    def __init__(
        self,
        ledgers: Ledger | Sequence[Ledger],
        *,
        max_queued_calls: int = 100_000,
        max_batch_calls: int = 20_000,
        on_commit: Callable[[list[LlmCall], float], None] | None = None,
        spool: Spool | None = None,
        on_state: Callable[[bool, int], None] | None = None,
        on_spooled: Callable[[int], None] | None = None,
        partition_days_ahead: int = 7,
    ) -> None:
        self._ledgers = [ledgers] if isinstance(ledgers, Ledger) else list(ledgers)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._max_queued = max_queued_calls
        self._max_batch = max_batch_calls
        self._queued = 0
        self._lock = threading.Lock()
        self._spool_lock = threading.RLock()
        self._on_commit = on_commit
        self._on_state = on_state
        self._on_spooled = on_spooled
        self._spool = spool
        self._days_ahead = partition_days_ahead
        self._partitions_day: object = None
        self.storage_ok = True
        self._next_retry = 0.0
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, args=(ledger,), name=f"llmmeter-writer-{n}", daemon=True)
            for n, ledger in enumerate(self._ledgers, 1)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued_calls(self) -> int:
        return self._queued

    @property
    def spool(self) -> Spool | None:
        return self._spool

    def submit(self, calls: Sequence[LlmCall], rows: bytes | None = None) -> Future[list[LlmCall]]:
        """Queue calls (and their ``storage.copy_rows``) for commit; the future resolves (to the calls newly
        inserted) once they are durable."""
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
        self._queue.put((calls, rows, future))
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

    def _run(self, ledger: Ledger) -> None:
        # Each writer takes one of close()'s end markers and then stops, after committing what it took.
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._idle(ledger)
                continue
            if first is None:
                self._idle(ledger, final=True)
                return
            batch, stop = self._take_batch(first)
            self._commit(ledger, batch)
            if stop:
                self._idle(ledger, final=True)
                return

    def _idle(self, ledger: Ledger, final: bool = False) -> None:
        """Between batches: create upcoming partitions once a day, replay the spool when Postgres is back."""
        try:
            today = datetime.now(timezone.utc).date()
            if today != self._partitions_day:
                ledger.ensure_partitions_ahead(today, self._days_ahead)
                self._partitions_day = today
        except Exception as exc:
            if not _unreachable(exc):
                logger.exception("could not create upcoming partitions")
        self._replay(ledger, final)

    def _replay(self, ledger: Ledger, final: bool = False) -> None:
        spool = self._spool
        if spool is None or (not final and time.monotonic() < self._next_retry):
            return
        with self._spool_lock:
            self._replay_segments(ledger, spool)

    def _replay_segments(self, ledger: Ledger, spool: Spool) -> None:
        for segment in spool.segments():
            calls = spool.read(segment)
            started = time.perf_counter()
            try:
                inserted = ledger.write(calls)
            except Exception as exc:
                self._set_state(False)
                self._next_retry = time.monotonic() + REPLAY_RETRY_SECONDS
                if not _unreachable(exc):
                    logger.exception("replay of spool segment %s failed", segment.name)
                return
            spool.remove(segment)
            self._set_state(True)
            logger.info("replayed %d spooled calls from %s (%d new)", len(calls), segment.name, len(inserted))
            self._observe(inserted, time.perf_counter() - started)

    def _set_state(self, ok: bool) -> None:
        if ok != self.storage_ok:
            (logger.info if ok else logger.error)("Postgres is %s", "reachable again" if ok else "unreachable")
        self.storage_ok = ok
        if self._on_state is not None:
            self._on_state(ok, self._spool.size_bytes if self._spool else 0)

    def _observe(self, inserted: list[LlmCall], elapsed: float) -> None:
        if self._on_commit is not None:
            try:
                self._on_commit(inserted, elapsed)
            except Exception:
                logger.exception("on_commit hook failed")

    def _commit(self, ledger: Ledger, batch: list[_Item]) -> None:
        calls = [call for item in batch for call in item[0]]
        try:
            self._write(ledger, batch, calls)
        finally:
            with self._lock:
                self._queued -= len(calls)

    def _write(self, ledger: Ledger, batch: list[_Item], calls: list[LlmCall]) -> None:
        spool = self._spool
        if spool is not None and (not self.storage_ok or spool.size_bytes > 0):
            with self._spool_lock:
                self._replay(ledger)  # no-op until the retry time; empties the spool when Postgres is back
                if not self.storage_ok or spool.size_bytes > 0:
                    self._to_spool(batch, calls)
                    return
        started = time.perf_counter()
        try:
            rows = b"".join(item[1] if item[1] is not None else copy_rows(item[0]) for item in batch)
            inserted = ledger.write(calls, rows)
        except Exception as exc:
            logger.error("commit of %d calls failed: %r", len(calls), exc)
            if _unreachable(exc):
                self._set_state(False)
                self._next_retry = time.monotonic() + REPLAY_RETRY_SECONDS
                if spool is not None:
                    with self._spool_lock:
                        self._to_spool(batch, calls)
                    return
            for *_, future in batch:
                future.set_exception(StorageUnavailable(str(exc)))
            return
        self._set_state(True)
        self._observe(inserted, time.perf_counter() - started)
        if len(inserted) == len(calls):  # the usual case: every call was new
            for item_calls, _, future in batch:
                future.set_result(list(item_calls))
            return
        new = {id(c) for c in inserted}
        for item_calls, _, future in batch:
            future.set_result([c for c in item_calls if id(c) in new])

    def _to_spool(self, batch: list[_Item], calls: list[LlmCall]) -> None:
        assert self._spool is not None
        try:
            self._spool.append(calls)
        except (SpoolFull, OSError) as exc:
            logger.error("cannot spool %d calls: %s", len(calls), exc)
            for *_, future in batch:
                future.set_exception(StorageUnavailable(f"Postgres unreachable and {exc}"))
            return
        self._set_state(False)
        if self._on_spooled is not None:
            self._on_spooled(len(calls))
        for *_, future in batch:
            future.set_result([])  # durable on disk; counted when replayed into Postgres

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking exports, commit everything queued (spooling it if Postgres is down), stop the writer."""
        with self._lock:
            self._stopping = True
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for ledger in self._ledgers:
            ledger.close()
