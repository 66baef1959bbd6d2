"""Orderers: the seam between admission and execution.

An orderer is an append-only log of entries, each a transaction (raw bytes) or a tick (a
time in seconds since genesis). Every validator reads the same log and cuts the same blocks
from it (``BlockCutter``): a block closes at ``max_txs`` transactions or at a tick, so block
boundaries depend on the log alone. ``LocalOrderer`` is the in-process default; the NATS
JetStream orderer implements the same protocol across processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gridledger.ledger import codec


@dataclass(frozen=True)
class Entry:
    kind: str  # "tx" or "tick"
    tx: bytes = b""
    time_s: int = 0

    def encode(self) -> bytes:
        return codec.encode(["tick", self.time_s] if self.kind == "tick" else ["tx", self.tx])

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        obj = codec.decode(raw)
        if not isinstance(obj, list) or len(obj) != 2 or obj[0] not in ("tx", "tick"):
            raise ValueError("bad log entry")
        if obj[0] == "tick":
            return cls("tick", time_s=int(obj[1]))
        return cls("tx", tx=bytes(obj[1]))


class Orderer(Protocol):
    def append(self, entry: Entry) -> int:
        """Append an entry; returns its position (0-based)."""

    def read(self, start: int, limit: int) -> Sequence[Entry]:
        """Entries from position ``start`` (fewer if the log is shorter)."""

    def length(self) -> int: ...


class LocalOrderer:
    """In-process ordered log (the embedded default)."""

    def __init__(self) -> None:
        self._log: list[Entry] = []

    def append(self, entry: Entry) -> int:
        self._log.append(entry)
        return len(self._log) - 1

    def read(self, start: int, limit: int) -> Sequence[Entry]:
        return self._log[start:start + limit]

    def length(self) -> int:
        return len(self._log)


@dataclass
class CutBlock:
    txs: list[bytes]
    slot_time: int
    log_start: int
    log_end: int


class BlockCutter:
    """Deterministic block boundaries from the ordered log.

    Scanning is incremental: entries already read for the open block are kept, so polling
    a log that has not closed a block yet costs only the new entries (``scanned`` is the
    log position up to which the cutter has looked; wait for the log to grow past it).
    """

    def __init__(self, max_txs: int = 500, pos: int = 0, slot_time: int = 0) -> None:
        self.max_txs = max_txs
        self.pos = pos
        self.slot_time = slot_time
        self._open: list[bytes] = []  # transactions of the open block, from ``pos`` on

    @property
    def scanned(self) -> int:
        """Log position after the last entry looked at."""
        return self.pos + len(self._open)

    def next_block(self, orderer: Orderer) -> CutBlock | None:
        """The next complete block, or ``None`` if the log does not yet close one."""
        txs = self._open
        start = self.scanned
        entries = orderer.read(start, self.max_txs - len(txs) + 1)
        for i, e in enumerate(entries):
            if e.kind == "tick":
                t = max(self.slot_time, e.time_s)
                blk = CutBlock(txs, t, self.pos, start + i + 1)
                self.pos, self.slot_time, self._open = blk.log_end, t, []
                return blk
            txs.append(e.tx)
            if len(txs) == self.max_txs:
                blk = CutBlock(txs, self.slot_time, self.pos, start + i + 1)
                self.pos, self._open = blk.log_end, []
                return blk
        return None
