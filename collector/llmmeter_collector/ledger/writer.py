"""The write path: exports wait in a bounded queue, writer threads commit many of them per transaction.

An export is acknowledged only when the transaction holding its calls has committed, or, while Postgres is
unreachable and a spool is configured, when its calls are fsync'd in the on-disk spool (replayed into
Postgres by the same writer once it is back). When the queue is full the export is refused as retryable
(HTTP 503 / gRPC UNAVAILABLE) instead of growing memory; when Postgres fails and there is no spool, or the
spool is full, every export of that batch is refused as retryable and nothing is half-written.

A batch Postgres refuses for its data is split until the refused calls are alone (``Ledger.write_salvaging``):
they are rejected (reported back per export, counted, kept in the dead-letter table) and the rest commit.
``problems()`` names what keeps the ledger from being written: ``storage_unreachable`` (Postgres down, or
not migrated yet), ``spool_full``, ``poisoned_segment`` (a spool segment was quarantined).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from llmmeter_collector.ledger.spool import CorruptSegment, Spool, SpoolFull
from llmmeter_collector.ledger.storage import ROLLED_BACK, Ledger, Rejected, Written, copy_rows, is_data_error
from llmmeter_collector.llmcall import LlmCall

logger = logging.getLogger("llmmeter.collector")

REPLAY_RETRY_SECONDS = 2.0  # while spooling, how often the writer tries Postgres again


class Overloaded(Exception):
    """The collector cannot take more now; the sender should retry later."""


class StorageUnavailable(Exception):
    """Postgres could not commit the export (and it could not be spooled); the sender should retry."""


# (calls, their COPY rows when already made, the future acknowledging them)
_Item = tuple[Sequence[LlmCall], "bytes | None", "Future[Written]"]

STORAGE_UNREACHABLE = "storage_unreachable"
SPOOL_FULL = "spool_full"
POISONED_SEGMENT = "poisoned_segment"
WRITE_ERROR = "write_error"  # a failure that is neither Postgres being away nor a refused row (a bug)
PROBLEMS = (STORAGE_UNREACHABLE, SPOOL_FULL, POISONED_SEGMENT, WRITE_ERROR)


def _unreachable(exc: BaseException) -> bool:
    """A failure to reach Postgres (worth spooling), as opposed to a bug, a constraint violation, or a
    transaction Postgres rolled back (a deadlock: psycopg counts it as an ``OperationalError`` too)."""
    if isinstance(exc, ROLLED_BACK) or is_data_error(exc):
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError)


def _rows(batch: list[_Item]) -> bytes | None:
    """The batch's COPY rows; None when a call cannot be formatted (the ledger then isolates it)."""
    try:
        return b"".join(item[1] if item[1] is not None else copy_rows(item[0]) for item in batch)
    except psycopg.DataError:
        return None


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
        on_rejected: Callable[[list[Rejected], str], None] | None = None,
        on_quarantined: Callable[[], None] | None = None,
        storage_ready: bool = True,
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
        self._on_rejected = on_rejected
        self._on_quarantined = on_quarantined
        # Set once the schema is migrated (Collector: when Postgres first answers); until then exports spool.
        self.storage_ready = threading.Event()
        if storage_ready:
            self.storage_ready.set()
        self.spool_full = False
        self.write_error = False
        self._days_ahead = partition_days_ahead
        self._partitions_day: object = None
        self.storage_ok = storage_ready
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

    def problems(self) -> list[str]:
        """What keeps calls from reaching the ledger now (empty when all is well), named as in ``PROBLEMS``."""
        found = []
        if not self.storage_ok or not self.storage_ready.is_set():
            found.append(STORAGE_UNREACHABLE)
        if self.spool_full:
            found.append(SPOOL_FULL)
        if self._spool is not None and self._spool.quarantined():
            found.append(POISONED_SEGMENT)
        if self.write_error:
            found.append(WRITE_ERROR)
        return found

    def submit(self, calls: Sequence[LlmCall], rows: bytes | None = None) -> Future[Written]:
        """Queue calls (and their ``storage.copy_rows``) for commit; the future resolves, once they are durable,
        to what was written: the calls newly inserted and the ones Postgres refused for their data."""
        future: Future[Written] = Future()
        if not calls:
            future.set_result(Written())
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
        if not self.storage_ready.is_set():
            return
        try:
            today = datetime.now(timezone.utc).date()
            if today != self._partitions_day:
                ledger.ensure_partitions_ahead(today, self._days_ahead)
                self._partitions_day = today
        except Exception as exc:
            if not _unreachable(exc):
                logger.exception("could not create upcoming partitions")
        self._replay(ledger, final)
        spool_empty = self._spool is None or self._spool.size_bytes == 0
        if not self.storage_ok and spool_empty and time.monotonic() >= self._next_retry:
            try:  # nothing to replay: find out whether Postgres is back without waiting for an export
                ledger.ping()
            except Exception:
                self._next_retry = time.monotonic() + REPLAY_RETRY_SECONDS
            else:
                self._set_state(True)

    def _replay(self, ledger: Ledger, final: bool = False) -> None:
        spool = self._spool
        if spool is None or (not final and time.monotonic() < self._next_retry) or not self.storage_ready.is_set():
            return
        with self._spool_lock:
            self._replay_segments(ledger, spool)

    def _replay_segments(self, ledger: Ledger, spool: Spool) -> None:
        for segment in spool.segments():
            try:
                calls = spool.read(segment)
            except CorruptSegment as exc:
                self._quarantine(spool, segment, f"unreadable: {exc}")
                continue
            except OSError:
                continue  # removed meanwhile
            started = time.perf_counter()
            try:
                written = ledger.write_salvaging(calls)
            except Exception as exc:
                if _unreachable(exc) or isinstance(exc, ROLLED_BACK):
                    self._set_state(False)
                    self._next_retry = time.monotonic() + REPLAY_RETRY_SECONDS
                    return
                # neither Postgres being away nor a refused row (those are isolated): never retry it forever
                logger.exception("replay of spool segment %s failed", segment.name)
                self._quarantine(spool, segment, f"replay failed: {exc!r}"[:1000])
                continue
            spool.remove(segment)
            self.spool_full = False
            self._set_state(True)
            logger.info(
                "replayed %d spooled calls from %s (%d new, %d refused, kept in llm_calls_dead_letter)",
                len(calls), segment.name, len(written.inserted), len(written.rejected),
            )  # fmt: skip
            self._reject(written.rejected, "spool")
            self._observe(written.inserted, time.perf_counter() - started)

    def _quarantine(self, spool: Spool, segment: Path, reason: str) -> None:
        try:
            spool.quarantine(segment, reason)
        except OSError:
            logger.exception("could not quarantine spool segment %s", segment.name)
            return
        logger.error("storage problem %s: spool segment %s set aside in %s", POISONED_SEGMENT, segment.name,
                     spool.quarantine_dir)  # fmt: skip
        if self._on_quarantined is not None:
            self._on_quarantined()

    def _reject(self, rejected: list[Rejected], source: str) -> None:
        if rejected and self._on_rejected is not None:
            try:
                self._on_rejected(rejected, source)
            except Exception:
                logger.exception("on_rejected hook failed")

    def _set_state(self, ok: bool) -> None:
        if ok != self.storage_ok:
            if ok:
                logger.info("Postgres is reachable again")
            else:
                logger.error("storage problem %s: Postgres is unreachable", STORAGE_UNREACHABLE)
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
        if not self.storage_ready.is_set():  # Postgres not reached since the start: not migrated yet
            if spool is not None:
                with self._spool_lock:
                    self._to_spool(batch, calls)
            else:
                for *_, future in batch:
                    future.set_exception(StorageUnavailable("Postgres has not been reachable since the start"))
            return
        if spool is not None and (not self.storage_ok or spool.size_bytes > 0):
            with self._spool_lock:
                self._replay(ledger)  # no-op until the retry time; empties the spool when Postgres is back
                if not self.storage_ok or spool.size_bytes > 0:
                    self._to_spool(batch, calls)
                    return
        started = time.perf_counter()
        try:
            written = ledger.write_salvaging(calls, _rows(batch))
        except Exception as exc:
            logger.error("commit of %d calls failed: %r", len(calls), exc)
            if _unreachable(exc):
                self._set_state(False)
                self._next_retry = time.monotonic() + REPLAY_RETRY_SECONDS
                if spool is not None:
                    with self._spool_lock:
                        self._to_spool(batch, calls)
                    return
            else:
                self.write_error = True
            for *_, future in batch:
                future.set_exception(StorageUnavailable(str(exc)))
            return
        self.write_error = False
        self._set_state(True)
        self._reject(written.rejected, "export")
        self._observe(written.inserted, time.perf_counter() - started)
        if not written.rejected and len(written.inserted) == len(calls):  # the usual case: every call was new
            for item_calls, _, future in batch:
                future.set_result(Written(list(item_calls)))
            return
        new = {id(c) for c in written.inserted}
        refused = {id(r.call): r for r in written.rejected}
        for item_calls, _, future in batch:
            inserted = [c for c in item_calls if id(c) in new]
            future.set_result(Written(inserted, [refused[id(c)] for c in item_calls if id(c) in refused]))

    def _to_spool(self, batch: list[_Item], calls: list[LlmCall]) -> None:
        assert self._spool is not None
        try:
            self._spool.append(calls)
        except (SpoolFull, OSError) as exc:
            if not self.spool_full:
                logger.error("storage problem %s: cannot spool %d calls: %s", SPOOL_FULL, len(calls), exc)
            self.spool_full = True
            for *_, future in batch:
                future.set_exception(StorageUnavailable(f"Postgres unreachable and {exc}"))
            return
        self.spool_full = False
        self._set_state(False)
        if self._on_spooled is not None:
            self._on_spooled(len(calls))
        for *_, future in batch:
            future.set_result(Written())  # durable on disk; counted when replayed into Postgres

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
