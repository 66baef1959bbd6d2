"""Orderers: the seam between admission and execution.

An orderer is an append-only log of entries: a transaction (raw bytes), a batch of
transactions (``txs``: one log message for many, so the log's per-message cost is paid once
per batch), or a tick (a time in seconds since genesis). Every validator reads the same log
and cuts the same blocks from it (``BlockCutter``): a block closes at ``max_txs``
transactions or at a tick, so block boundaries depend on the log alone. ``LocalOrderer`` is
the in-process default; the NATS JetStream orderer implements the same protocol across
processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gridledger.ledger import codec

KINDS = ("tx", "txs", "tick")


@dataclass(frozen=True)
class Entry:
    kind: str  # "tx", "txs", "tick", or "void" (an undecodable message: carries nothing)
    tx: bytes = b""
    time_s: int = 0
    batch: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        if self.kind == "tick":
            return codec.encode(["tick", self.time_s])
        if self.kind == "txs":
            return codec.encode(["txs", list(self.batch)])
        return codec.encode(["tx", self.tx])

    def txs(self) -> tuple[bytes, ...]:
        """The transactions this entry carries, in log order (none for a tick)."""
        if self.kind == "tx":
            return (self.tx,)
        return self.batch

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        obj = codec.decode(raw)
        if not isinstance(obj, list) or len(obj) != 2 or obj[0] not in KINDS:
            raise ValueError("bad log entry")
        if obj[0] == "tick":
            if not isinstance(obj[1], int) or isinstance(obj[1], bool):
                raise ValueError("bad tick")
            return cls("tick", time_s=obj[1])
        if obj[0] == "txs":
            if not isinstance(obj[1], list) or not all(isinstance(t, bytes) for t in obj[1]):
                raise ValueError("bad transaction batch")
            return cls("txs", batch=tuple(obj[1]))
        if not isinstance(obj[1], bytes):
            raise ValueError("bad transaction entry")
        return cls("tx", tx=obj[1])


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

    A block closes at a tick, or once it holds ``max_txs`` transactions; a batch entry is
    never split, so a batch that would overflow the open block starts the next one (a
    single batch larger than ``max_txs`` is a block of its own). Scanning is incremental:
    entries already read for the open block are kept, so polling a log that has not closed a
    block yet costs only the new entries (``scanned`` is the log position up to which the
    cutter has looked; wait for the log to grow past it).
    """

    def __init__(self, max_txs: int = 500, pos: int = 0, slot_time: int = 0) -> None:
        self.max_txs = max_txs
        self.pos = pos
        self.slot_time = slot_time
        self._open: list[bytes] = []  # transactions of the open block, from ``pos`` on
        self._scanned = pos

    @property
    def scanned(self) -> int:
        """Log position after the last entry looked at."""
        return self._scanned

    @property
    def open_txs(self) -> int:
        """Transactions read into the block that is not closed yet."""
        return len(self._open)

    def _close(self, end: int, slot_time: int) -> CutBlock:
        blk = CutBlock(self._open, slot_time, self.pos, end)
        self.pos = self._scanned = end
        self.slot_time = slot_time
        self._open = []
        return blk

    def next_block(self, orderer: Orderer) -> CutBlock | None:
        """The next complete block, or ``None`` if the log does not yet close one."""
        while True:
            start = self._scanned
            entries = orderer.read(start, max(1, self.max_txs - len(self._open)) + 1)
            if not entries:
                return None
            for i, e in enumerate(entries):
                if e.kind == "tick":
                    return self._close(start + i + 1, max(self.slot_time, e.time_s))
                txs = e.txs()
                if self._open and len(self._open) + len(txs) > self.max_txs:
                    return self._close(start + i, self.slot_time)
                self._open.extend(txs)
                self._scanned = start + i + 1
                if len(self._open) >= self.max_txs:
                    return self._close(start + i + 1, self.slot_time)
