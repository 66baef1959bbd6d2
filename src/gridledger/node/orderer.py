"""Orderers: the seam between admission and execution.

An orderer is an append-only log of entries: a transaction (raw bytes), a batch of
transactions (``txs``: one log message for many, so the log's per-message cost is paid once
per batch), or a signed tick (``node.ticks``). Every validator reads the same log and cuts
the same blocks from it (``BlockCutter``): a block closes at ``max_txs`` transactions or
when the validators' ticks say so (``TickClock``), so block boundaries and block times
depend on the log and the validator set alone.

Beside the log, an orderer carries the vote channel: a durable stream of signed votes per
height (``publish_vote`` / ``follow_votes``), which ``node.votes.VoteBoard`` reads. The
``Orderer`` protocol is everything a node uses; ``LocalOrderer`` is the in-process
implementation, ``node.nats_orderer.NatsOrderer`` the NATS JetStream one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gridledger.errors import MalformedEncoding
from gridledger.ledger import codec
from gridledger.node.ticks import Tick, TickClock

KINDS = ("tx", "txs", "tick")
MAX_BATCH_BYTES = 512 * 1024  # one log message; NATS refuses payloads over 1 MiB by default


@dataclass(frozen=True)
class Entry:
    kind: str  # "tx", "txs", "tick", or "void" (an undecodable message: carries nothing)
    tx: bytes = b""
    batch: tuple[bytes, ...] = ()
    tick: Tick | None = field(default=None)

    def encode(self) -> bytes:
        if self.kind == "tick" and self.tick is not None:
            return codec.encode(["tick", self.tick.to_obj()])
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
        """Strict decoding; raises ``MalformedEncoding``."""
        obj = codec.decode(raw)
        if not isinstance(obj, list) or len(obj) != 2 or obj[0] not in KINDS:
            raise MalformedEncoding("bad log entry")
        if obj[0] == "tick":
            return cls("tick", tick=Tick.from_obj(obj[1]))
        if obj[0] == "txs":
            if not isinstance(obj[1], list) or not all(type(t) is bytes for t in obj[1]):
                raise MalformedEncoding("bad transaction batch")
            return cls("txs", batch=tuple(obj[1]))
        if type(obj[1]) is not bytes:
            raise MalformedEncoding("bad transaction entry")
        return cls("tx", tx=obj[1])


def batch_entries(raws: Sequence[bytes], max_txs: int) -> list[Entry]:
    """Log entries for ``raws`` in order: batches of at most ``max_txs`` transactions and
    ``MAX_BATCH_BYTES`` bytes (a lone transaction stays a ``tx`` entry, whose message id is
    its hash)."""
    out: list[Entry] = []
    cur: list[bytes] = []
    size = 0
    for raw in raws:
        if cur and (len(cur) >= max_txs or size + len(raw) > MAX_BATCH_BYTES):
            out.append(Entry("txs", batch=tuple(cur)) if len(cur) > 1 else Entry("tx", tx=cur[0]))
            cur, size = [], 0
        cur.append(raw)
        size += len(raw)
    if cur:
        out.append(Entry("txs", batch=tuple(cur)) if len(cur) > 1 else Entry("tx", tx=cur[0]))
    return out


class Orderer(Protocol):
    """What a node needs from the ordering service: the log and the vote channel."""

    def append(self, entry: Entry) -> int:
        """Append an entry; returns its position (0-based)."""

    def append_many(self, entries: Sequence[Entry]) -> list[int]:
        """Append entries in order (one round trip where the transport allows it)."""

    def read(self, start: int, limit: int) -> Sequence[Entry]:
        """Entries from position ``start`` (fewer if the log is shorter)."""

    def length(self) -> int:
        """Entries available to read locally."""

    def wait_for(self, n: int, timeout_s: float | None = None) -> bool:
        """Block until at least ``n`` entries are readable; False on timeout."""

    def publish_vote(self, height: int, data: bytes) -> None:
        """Put an encoded vote on the vote channel of ``height`` (durable; deduplicated by
        content)."""

    def follow_votes(self, height: int, deliver: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``deliver`` with every vote published for ``height``, past and future (on
        any thread); returns a function that stops following."""

    def forget_before(self, position: int) -> None:
        """The node has cut everything below ``position``: the orderer may drop it from
        memory (``read`` then returns nothing there)."""

    def close(self) -> None:
        """Release connections (the log itself is durable where the transport is)."""


class LocalOrderer:
    """In-process ordered log and vote channel (the embedded default; in-process tests of
    validator processes share one)."""

    def __init__(self, *, sole_reader: bool = False) -> None:
        """``sole_reader``: one reader cuts this log (an embedded network), so
        ``forget_before`` drops what it has cut and memory holds a window, not the run
        (issue 17: at 1,000 members a slot's transactions are ~8 MiB). Otherwise the log is
        kept whole: several in-process readers may be at different positions."""
        # the log from position ``_base`` on; entries below it were forgotten
        self._log: list[Entry] = []
        self._base = 0
        self._sole_reader = sole_reader
        self._cond = threading.Condition()
        self._votes: dict[int, list[bytes]] = {}
        self._followers: dict[int, list[Callable[[bytes], None]]] = {}

    def append(self, entry: Entry) -> int:
        with self._cond:
            self._log.append(entry)
            self._cond.notify_all()
            return self._base + len(self._log) - 1

    def append_many(self, entries: Sequence[Entry]) -> list[int]:
        with self._cond:
            start = self._base + len(self._log)
            self._log.extend(entries)
            self._cond.notify_all()
            return list(range(start, self._base + len(self._log)))

    def read(self, start: int, limit: int) -> Sequence[Entry]:
        """Entries from ``start``; none for a position already forgotten."""
        with self._cond:
            if start < self._base:
                return []
            i = start - self._base
            return self._log[i:i + limit]

    def length(self) -> int:
        with self._cond:
            return self._base + len(self._log)

    def wait_for(self, n: int, timeout_s: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._base + len(self._log) >= n, timeout_s)

    def buffered(self) -> int:
        """Entries held in memory."""
        with self._cond:
            return len(self._log)

    def publish_vote(self, height: int, data: bytes) -> None:
        with self._cond:
            stored = self._votes.setdefault(height, [])
            if data in stored:  # same bytes: deduplicated, as JetStream does by message id
                return
            stored.append(data)
            followers = list(self._followers.get(height, ()))
        for deliver in followers:
            deliver(data)

    def follow_votes(self, height: int, deliver: Callable[[bytes], None]) -> Callable[[], None]:
        with self._cond:
            past = list(self._votes.get(height, ()))
            self._followers.setdefault(height, []).append(deliver)
        for data in past:
            deliver(data)

        def stop() -> None:
            with self._cond:
                subs = self._followers.get(height, [])
                if deliver in subs:
                    subs.remove(deliver)
                if not subs:
                    self._followers.pop(height, None)

        return stop

    def forget_before(self, position: int) -> None:
        """With a sole reader: drop entries below ``position`` (cut into blocks). Otherwise
        kept: an in-process log may be shared by several readers (in-process validator
        processes, a second embedded network); it lives as long as this object."""
        if not self._sole_reader:
            return
        with self._cond:
            drop = min(max(0, position - self._base), len(self._log))
            if drop:
                del self._log[:drop]
                self._base += drop

    def close(self) -> None:
        """Nothing to release: the log lives as long as this object."""


@dataclass
class CutBlock:
    txs: list[bytes]
    slot_time: int
    log_start: int
    log_end: int


class BlockCutter:
    """Deterministic block boundaries from the ordered log.

    A block closes when the validators' ticks say so (``TickClock``: f+1 validators' signed
    ticks), or once it holds ``max_txs`` transactions; a batch entry is never split, so a
    batch that would overflow the open block starts the next one (a single batch larger than
    ``max_txs`` is a block of its own). Scanning is incremental: entries already read for the
    open block are kept, so polling a log that has not closed a block yet costs only the new
    entries (``scanned`` is the log position up to which the cutter has looked; wait for the
    log to grow past it). ``keys`` passed to ``next_block`` is the validator set of the block
    being cut (the set in the state its parent left).
    """

    def __init__(self, chain_id: str, max_txs: int = 500, pos: int = 0, slot_time: int = 0) -> None:
        self.max_txs = max_txs
        self.pos = pos
        self.slot_time = slot_time
        self.clock = TickClock(chain_id)
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
        self.clock.reset()
        return blk

    def next_block(self, orderer: Orderer, keys: Sequence[tuple[str, bytes]]) -> CutBlock | None:
        """The next complete block, or ``None`` if the log does not yet close one."""
        while True:
            start = self._scanned
            entries = orderer.read(start, max(1, self.max_txs - len(self._open)) + 1)
            if not entries:
                return None
            for i, e in enumerate(entries):
                if e.kind == "tick" and e.tick is not None:
                    self._scanned = start + i + 1
                    at = self.clock.add(e.tick, keys, self.slot_time, len(self._open))
                    if at is not None:
                        return self._close(start + i + 1, at)
                    continue
                txs = e.txs()
                if self._open and len(self._open) + len(txs) > self.max_txs:
                    return self._close(start + i, self.slot_time)
                self._open.extend(txs)
                self._scanned = start + i + 1
                if len(self._open) >= self.max_txs:
                    return self._close(start + i + 1, self.slot_time)
