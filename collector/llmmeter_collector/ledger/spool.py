"""The on-disk spool: priced calls held while Postgres is unreachable, replayed when it is back.

When a commit fails because Postgres cannot be reached, the writer appends the batch to the spool instead
of refusing it: one segment file per batch, written to a temporary name, fsync'd, renamed and the directory
fsync'd, and only then are the exports acknowledged. So an acknowledged export survives a crash of the
collector as well as the outage. Replay writes each segment through the same idempotent ledger write
(unique on start time, trace id, span id), so a segment replayed twice after a crash counts once.

The spool is bounded (``max_bytes``); when it is full, exports are refused as retryable (503 / UNAVAILABLE)
and the sender keeps them.

Replay never blocks on one segment: calls Postgres refuses for their data go to the dead-letter table (the
rest of the segment commits), and a segment that cannot be read (corrupt, truncated, not llmmeter's) is moved
to ``quarantine/`` beside a ``.reason`` file, counted and reported, and replay moves on to the next.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmmeter_collector.llmcall import Cost, LlmCall, Usage

logger = logging.getLogger("llmmeter.collector")

_SUFFIX = ".calls.jsonl"


class CorruptSegment(Exception):
    """A spool segment that cannot be read back as calls."""


class SpoolFull(Exception):
    """The spool has reached its size limit; the export must be refused as retryable."""


def call_to_json(call: LlmCall) -> str:
    data = asdict(call)
    if call.reported_cost is not None:
        data["reported_cost"] = str(call.reported_cost)
    if call.cost is not None:
        data["cost"] = {
            "total": str(call.cost.total),
            "parts": {k: str(v) for k, v in call.cost.parts.items()},
            "price_source": call.cost.price_source,
        }
    return json.dumps(data, separators=(",", ":"))


def call_from_json(line: str) -> LlmCall:
    data: dict[str, Any] = json.loads(line)
    data["usage"] = Usage(**data["usage"])
    if data.get("reported_cost") is not None:
        data["reported_cost"] = Decimal(data["reported_cost"])
    cost = data.get("cost")
    if cost is not None:
        data["cost"] = Cost(
            total=Decimal(cost["total"]),
            parts={k: Decimal(v) for k, v in cost["parts"].items()},
            price_source=cost["price_source"],
        )
    return LlmCall(**data)


class Spool:
    """A directory of segment files, oldest first."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):  # a write interrupted before its fsync+rename: never acked
            leftover.unlink(missing_ok=True)
        self._lock = threading.Lock()
        segments = self.segments()
        self._seq = max((int(p.name.split(".")[0]) for p in segments), default=0)
        self._bytes = sum(p.stat().st_size for p in segments)
        if segments:
            logger.warning("spool holds %d segment(s), %d bytes, to replay into Postgres", len(segments), self._bytes)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*" + _SUFFIX))

    def append(self, calls: Sequence[LlmCall]) -> Path:
        """Write calls durably (fsync'd) as one segment; raises SpoolFull beyond the size limit."""
        payload = ("\n".join(call_to_json(c) for c in calls) + "\n").encode("utf-8")
        with self._lock:
            if self._bytes + len(payload) > self.max_bytes:
                raise SpoolFull(f"spool is full ({self._bytes} of {self.max_bytes} bytes)")
            self._seq += 1
            final = self.directory / f"{self._seq:012d}{_SUFFIX}"
            self._bytes += len(payload)
        tmp = final.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            with self._lock:
                self._bytes -= len(payload)
            tmp.unlink(missing_ok=True)
            raise
        return final

    @staticmethod
    def read(segment: Path) -> list[LlmCall]:
        """The calls of a segment; raises CorruptSegment when it cannot be read back (OSError when it is gone)."""
        try:
            text = segment.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptSegment(f"not UTF-8: {exc}") from None
        calls = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line:
                continue
            try:
                calls.append(call_from_json(line))
            except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                raise CorruptSegment(f"line {number} is not a spooled call: {exc!r}"[:500]) from None
        return calls

    @property
    def quarantine_dir(self) -> Path:
        return self.directory / "quarantine"

    def quarantined(self) -> list[Path]:
        """Segments set aside by ``quarantine``, oldest first (a user inspects and removes them)."""
        return sorted(self.quarantine_dir.glob("*" + _SUFFIX))

    def quarantine(self, segment: Path, reason: str) -> Path:
        """Move a segment replay cannot use out of the way, with the reason beside it; replay goes on."""
        self.quarantine_dir.mkdir(exist_ok=True)
        target = self.quarantine_dir / segment.name
        (self.quarantine_dir / (segment.name + ".reason")).write_text(reason + "\n", encoding="utf-8")
        size = segment.stat().st_size
        os.replace(segment, target)
        with self._lock:
            self._bytes -= size
        logger.error("spool segment %s quarantined to %s: %s", segment.name, target, reason)
        return target

    def remove(self, segment: Path) -> None:
        size = segment.stat().st_size
        segment.unlink()
        with self._lock:
            self._bytes -= size
