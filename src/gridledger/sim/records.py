"""What a run has seen so far: per-slot records, ground truth, and the ledger's events.

``RunData`` is the engine's blackboard. Features write what they produce (views, envelopes,
battery plans, deliveries) and read what others produced; attacks read it to measure
themselves. Everything ledger-side in it comes from finalized blocks (``absorb``), never
from what a client intended.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sqlite3
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from gridledger.grid import SLOTS_PER_DAY, CurtailmentCause, EnvelopeReport, SlotMeasurements
from gridledger.ledger.modules.certificates.archive import EVENT as ARCHIVED
from gridledger.ledger.params import SECONDS_PER_DAY
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.agents import MarketView
from gridledger.sim.secagg import Round

V = TypeVar("V")
Envelopes = dict[str, tuple[int, int]]
"""cp -> (import_max_wh, export_max_wh) for one slot, as the DSO published it."""

RECENT_SLOTS = 8
"""Slots whose whole-network delivery (every cp's injection and every device's readings) the
run keeps: features read the slot being delivered and the one before (state estimation,
readings, aggregation, certificates); older ones would grow the run's memory with every slot
(a 5,141-cp network: ~0.5 M entries a day). Members' true injections stay (``truth``)."""


@dataclass
class SlotRecord:
    """One trading slot as the report shows it (energies in Wh, prices in micro/kWh)."""

    slot: int
    label: str
    price_micro_per_kwh: int | None = None
    volume_wh: int = 0
    trades: int = 0
    orders: int = 0
    clipped_wh: int = 0
    retail_micro_per_kwh: int = 0
    feed_in_micro_per_kwh: int = 0
    grid_fee_micro_per_kwh: int = 0
    max_vm_pu: float = 1.0
    min_vm_pu: float = 1.0
    max_loading_pct: float = 0.0
    violations: int = 0
    curtailed_wh: int = 0
    flags: int = 0
    community_net_wh: int = 0


@dataclass
class Delivered:
    """What physically happened in one slot (ground truth, known to the simulator only)."""

    slot: int
    actual_wh_by_cp: dict[str, int]     # net injection of every cp (> 0 export)
    measurements: SlotMeasurements      # what devices report (after any attack)


@dataclass
class Stats:
    blocks: int = 0
    txs: int = 0
    rejected_txs: int = 0
    admitted: int = 0
    admission_rejected: dict[str, int] = field(default_factory=dict)
    rejected_receipts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FailedTx:
    """A transaction whose receipt failed: which, under which rule, at which height."""

    tx_id: bytes
    rule: str
    height: int


@dataclass
class TxInfo:
    """A transaction the simulator signed: who sent it, what it is."""

    sender: bytes
    kind: str
    body: dict[str, Any]


class _SideFile:
    """A scratch SQLite file holding what a run keeps for its whole length but reads back
    rarely (issue 17: RSS flat over days, while a year's events and transactions run to
    gigabytes). Created at the first write in the temp directory and unlinked at once: the
    open connection keeps it, the OS frees it when the run ends however it ends (a crash
    leaves no file). No journal, no fsync: nothing in it outlives the run."""

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the dashboard's server thread may read the run

    def db(self) -> sqlite3.Connection:
        if self._db is None:
            fd, path = tempfile.mkstemp(prefix="gridledger-run-", suffix=".sqlite")
            try:
                db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            finally:
                os.close(fd)
                os.unlink(path)
            db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                             "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8192;")
            self._db = db
        return self._db

    def execute(self, sql: str) -> None:
        with self._lock:
            self.db().execute(sql)

    def write(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self._lock:
            self.db().executemany(sql, rows)

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        if self._db is None:
            return []
        with self._lock:
            return self._db.execute(sql, args).fetchall()


def _dump(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


MEM_WINDOW_S = SECONDS_PER_DAY
"""Block time the whole-run logs (``EventLog``, ``TxLog``) keep in memory: a day, the
dispute window — what features and attacks read during the run. Older entries go to the
run's side file, so the logs' memory is reached within the first day whatever the run's
length (issue 17, thirteenth session: with only a count bound sized for 1,000 members, a
10-member run's logs grew ~+8 MiB a day until day ~10)."""


class _Window:
    """Where a log's entries of each block time begin (``mark``), to find the first entry
    still inside ``MEM_WINDOW_S`` (``cut``)."""

    def __init__(self) -> None:
        self._marks: deque[tuple[int, int]] = deque()   # (block time, first seq at it)

    def mark(self, time_s: int, seq: int) -> None:
        if not self._marks or time_s > self._marks[-1][0]:
            self._marks.append((time_s, seq))

    def cut(self, time_s: int) -> int:
        """The first seq marked inside the window ending at ``time_s`` (entries before it
        came before a block a window older; call after ``mark(time_s)``)."""
        while len(self._marks) > 1 and self._marks[0][0] <= time_s - MEM_WINDOW_S:
            self._marks.popleft()
        return self._marks[0][1] if self._marks else 0


class EventLog:
    """Every ledger event of the run, in block order: those of the last day of block time
    (``MEM_WINDOW_S``, at most ``MEM_EVENTS``) in memory, older ones on a side file
    (``_SideFile``), spilled ``_CHUNK`` or more at a time — a day of the default community
    never spills (no cost), a long run or 1,000 members stay bounded from the first day on.
    ``extend`` appends a block's events; ``of(kind)`` and iteration read them back (what
    summaries and attacks' results do, once, at the end)."""

    MEM_EVENTS = 60_000
    _CHUNK = 2_000

    def __init__(self) -> None:
        self._file = _SideFile()
        self._mem: list[dict[str, Any]] = []
        self._spilled = 0
        self._window = _Window()

    def extend(self, events: Iterable[dict[str, Any]], time_s: int | None = None) -> None:
        """Append a block's events; ``time_s``: its block time (events a day older leave
        memory)."""
        if time_s is not None:
            self._window.mark(time_s, len(self))
        self._mem.extend(events)
        cut = 0 if time_s is None else self._window.cut(time_s)
        if cut - self._spilled >= self._CHUNK:
            self._spill(cut - self._spilled)
        if len(self._mem) > self.MEM_EVENTS:
            self._spill(self.MEM_EVENTS // 2)

    def _spill(self, n: int) -> None:
        if n > 0:
            old = self._mem[:n]
            if not self._spilled:
                self._file.execute("CREATE TABLE ev (seq INTEGER PRIMARY KEY, kind TEXT, body BLOB)")
                self._file.execute("CREATE INDEX ev_kind ON ev (kind, seq)")
            self._file.write("INSERT INTO ev VALUES (?, ?, ?)",
                             [(self._spilled + i, str(e.get("type", "")), _dump(e))
                              for i, e in enumerate(old)])
            self._spilled += len(old)
            del self._mem[:len(old)]

    def __len__(self) -> int:
        return self._spilled + len(self._mem)

    @property
    def in_memory(self) -> int:
        return len(self._mem)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events whose ``type`` is ``kind``, in block order."""
        rows = self._file.read("SELECT body FROM ev WHERE kind = ? ORDER BY seq", (kind,))
        return [*(pickle.loads(b) for (b,) in rows),
                *(e for e in self._mem if e.get("type") == kind)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for first in range(0, self._spilled, self._CHUNK):
            rows = self._file.read("SELECT body FROM ev WHERE seq >= ? AND seq < ? ORDER BY seq",
                                   (first, first + self._CHUNK))
            yield from (pickle.loads(b) for (b,) in rows)
        yield from list(self._mem)


class TxLog:
    """``tx id -> TxInfo`` of every transaction the simulator signed: those signed in the
    last day of block time (``mark``, ``MEM_WINDOW_S``; at most ``MEM_TXS``) in memory,
    older ones on a side file (as ``EventLog``), with the reads a dict gives: ``get``,
    ``[]``, ``in``, ``len``, ``items()`` in signing order (also reversed, newest first,
    lazily). Ids are unique (a signature covers a fresh nonce); the same id set again while
    in memory replaces its value, as a dict would."""

    MEM_TXS = 20_000

    def __init__(self) -> None:
        self._file = _SideFile()
        self._mem: dict[bytes, TxInfo] = {}
        self._spilled = 0
        self._window = _Window()

    def __setitem__(self, tx_id: bytes, info: TxInfo) -> None:
        self._mem[tx_id] = info
        if len(self._mem) > self.MEM_TXS:
            self._spill(self.MEM_TXS // 2)

    def mark(self, time_s: int) -> None:
        """Block time reached ``time_s`` (a finalized block's): what was signed before the
        block a day earlier leaves memory."""
        self._window.mark(time_s, len(self))
        cut = self._window.cut(time_s)
        if cut - self._spilled >= EventLog._CHUNK:
            self._spill(cut - self._spilled)

    @property
    def in_memory(self) -> int:
        return len(self._mem)

    def _spill(self, n: int) -> None:
        if n > 0:
            old = list(itertools.islice(self._mem.items(), n))
            if not self._spilled:
                self._file.execute("CREATE TABLE tx (id BLOB PRIMARY KEY, seq INTEGER, body BLOB)")
                self._file.execute("CREATE INDEX tx_seq ON tx (seq)")
            self._file.write("INSERT OR IGNORE INTO tx VALUES (?, ?, ?)",
                             [(i, self._spilled + k, _dump((t.sender, t.kind, t.body)))
                              for k, (i, t) in enumerate(old)])
            self._spilled += len(old)
            for i, _t in old:
                del self._mem[i]

    def get(self, tx_id: bytes, default: TxInfo | None = None) -> TxInfo | None:
        got = self._mem.get(tx_id)
        if got is not None or not self._spilled:
            return got if got is not None else default
        rows = self._file.read("SELECT body FROM tx WHERE id = ?", (tx_id,))
        return TxInfo(*pickle.loads(rows[0][0])) if rows else default

    def __getitem__(self, tx_id: bytes) -> TxInfo:
        got = self.get(tx_id)
        if got is None:
            raise KeyError(tx_id)
        return got

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._mem or (
            bool(self._spilled) and bool(self._file.read("SELECT 1 FROM tx WHERE id = ?",
                                                         (tx_id,))))

    def __len__(self) -> int:
        return self._spilled + len(self._mem)

    def items(self) -> _TxItems:
        return _TxItems(self)

    def _spilled_rows(self, newest_first: bool) -> Iterator[tuple[bytes, TxInfo]]:
        order = "DESC" if newest_first else "ASC"
        step = EventLog._CHUNK
        starts = range(0, self._spilled, step)
        for lo in (reversed(starts) if newest_first else starts):
            rows = self._file.read(f"SELECT id, body FROM tx WHERE seq >= ? AND seq < ? "
                                   f"ORDER BY seq {order}", (lo, lo + step))
            yield from ((bytes(i), TxInfo(*pickle.loads(b))) for i, b in rows)

    def _rows(self, newest_first: bool) -> Iterator[tuple[bytes, TxInfo]]:
        # lazily, as a dict's items (no adding meanwhile): a reader of the newest few
        # (dso_committee, every tick) stops early instead of copying 20,000 entries a time
        if newest_first:
            yield from reversed(self._mem.items())
            yield from self._spilled_rows(True)
        else:
            yield from self._spilled_rows(False)
            yield from self._mem.items()


class _TxItems:
    def __init__(self, log: TxLog) -> None:
        self._log = log

    def __iter__(self) -> Iterator[tuple[bytes, TxInfo]]:
        return self._log._rows(newest_first=False)

    def __reversed__(self) -> Iterator[tuple[bytes, TxInfo]]:
        return self._log._rows(newest_first=True)

    def __len__(self) -> int:
        return len(self._log)


class RecentSlots(dict[int, V]):
    """``slot -> record`` a feature keeps for its own use a few slots on (a battery's flows
    for the next slot's storage reading, a flexibility request until its delivery): only
    the newest ``keep`` slots (by the highest slot set) stay; older ones are dropped, not
    spilled — nothing reads them again (issue 17, thirteenth session: such dicts kept every
    slot of the run). What a report needs of every slot goes to ``RunData`` (``slots``,
    ``SlotLog``s) or a running total instead."""

    def __init__(self, keep: int = SLOTS_PER_DAY) -> None:
        super().__init__()
        self.keep = keep
        self._top: int | None = None

    def __setitem__(self, k: int, v: V) -> None:
        super().__setitem__(k, v)
        if self._top is None or k > self._top:
            self._top = k
            for old in [s for s in self if s <= k - self.keep]:
                del self[old]

    def setdefault(self, k: int, default: V = None) -> V:  # type: ignore[assignment]
        if k not in self:
            self[k] = default
        return self[k]


class SlotLog(MutableMapping[int, V]):
    """``slot -> that slot's record`` for the whole run, as a dict reads and writes it: the
    records of the newest ``MEM_SLOTS`` slots (by the highest slot set) in memory, older ones
    pickled to a side file (``_SideFile``) once they fall out of that window — a year of a
    community's bills, trades and fills stays off the heap (issue 17: RSS flat after the
    first day; at 1,000 members a day of bills alone is ~100 MB).

    Reading a spilled slot (``[]``, ``get``, iteration) gives a copy read back from the
    file; ``setdefault`` of a spilled slot brings it back to memory first (until it falls
    out of the window again), so a late write to an old slot is kept. Keys iterate in the
    order they were first set, as a dict's do; setting a key again keeps its place."""

    MEM_SLOTS = SLOTS_PER_DAY
    """A day: what a run still changes (settlement a few slots on, disputes within the
    one-day dispute window) and what the features and attacks read during the run stay in
    memory; a late write to an older slot is kept all the same (``setdefault``)."""

    def __init__(self) -> None:
        self._file = _SideFile()
        self._mem: dict[int, V] = {}
        self._order: dict[int, None] = {}     # every key, in insertion order
        self._top: int | None = None
        self._table = False

    def _spill(self) -> None:
        if self._top is None:
            return
        old = [k for k in self._mem if k <= self._top - self.MEM_SLOTS]
        if not old:
            return
        if not self._table:
            self._file.execute("CREATE TABLE slot (k INTEGER PRIMARY KEY, body BLOB)")
            self._table = True
        self._file.write("INSERT OR REPLACE INTO slot VALUES (?, ?)",
                         [(k, _dump(self._mem[k])) for k in old])
        for k in old:
            del self._mem[k]

    def _load(self, k: int) -> V:
        rows = self._file.read("SELECT body FROM slot WHERE k = ?", (k,)) if self._table else []
        if not rows:
            raise KeyError(k)
        got: V = pickle.loads(rows[0][0])
        return got

    def __setitem__(self, k: int, v: V) -> None:
        self._mem[k] = v
        self._order.setdefault(k, None)
        if self._top is None or k > self._top:
            self._top = k
            self._spill()

    def __getitem__(self, k: int) -> V:
        got = self._mem.get(k, _MISSING)
        if got is not _MISSING:
            return got  # type: ignore[return-value]
        if k not in self._order:
            raise KeyError(k)
        return self._load(k)

    def setdefault(self, k: int, default: V = None) -> V:  # type: ignore[assignment]
        got = self._mem.get(k, _MISSING)
        if got is not _MISSING:
            return got  # type: ignore[return-value]
        if k not in self._order:
            self[k] = default
            return default
        value = self._load(k)
        self._mem[k] = value   # in memory until the window passes it again
        return value

    def __delitem__(self, k: int) -> None:
        if k not in self._order:
            raise KeyError(k)
        del self._order[k]
        self._mem.pop(k, None)
        if self._table:
            self._file.execute(f"DELETE FROM slot WHERE k = {int(k)}")

    def __contains__(self, k: object) -> bool:
        return k in self._order

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def spilled(self) -> int:
        """Slots whose record is only on the side file now."""
        return len(self._order) - len(self._mem)


_MISSING = object()


class ByteMap:
    """``bytes -> int`` for the whole run (e.g. every pseudonym's address -> its household):
    the newest ``MEM_KEYS`` entries in memory, the rest on the side file."""

    MEM_KEYS = 20_000

    def __init__(self) -> None:
        self._file = _SideFile()
        self._mem: dict[bytes, int] = {}
        self._table = False

    def __setitem__(self, key: bytes, value: int) -> None:
        self._mem[key] = value
        if len(self._mem) > self.MEM_KEYS:
            if not self._table:
                self._file.execute("CREATE TABLE m (k BLOB PRIMARY KEY, v INTEGER)")
                self._table = True
            self._file.write("INSERT OR REPLACE INTO m VALUES (?, ?)", list(self._mem.items()))
            self._mem = {}

    def get(self, key: bytes) -> int | None:
        got = self._mem.get(key)
        if got is not None or not self._table:
            return got
        rows = self._file.read("SELECT v FROM m WHERE k = ?", (key,))
        return int(rows[0][0]) if rows else None


class BlobMap(Generic[V]):
    """``bytes -> object`` kept on the side file only (pickled), for what a run must keep
    but reads back rarely, by key: e.g. the trustees' escrow of every live pseudonym, read
    only for an opening (issue 17: ~11 KB each, 96,000 an epoch at 1,000 members).
    ``put`` many at once, ``get`` one, ``discard`` many (their space is reused)."""

    _CHUNK = 1_000

    def __init__(self) -> None:
        self._file = _SideFile()
        self._table = False

    def put(self, items: Iterable[tuple[bytes, V]]) -> None:
        """Keep ``items`` (pickled a chunk at a time: never all of them in memory twice)."""
        it = iter(items)
        while rows := [(k, _dump(v)) for k, v in itertools.islice(it, self._CHUNK)]:
            if not self._table:
                self._file.execute("CREATE TABLE b (k BLOB PRIMARY KEY, v BLOB)")
                self._table = True
            self._file.write("INSERT OR REPLACE INTO b VALUES (?, ?)", rows)

    def get(self, key: bytes) -> V | None:
        rows = self._file.read("SELECT v FROM b WHERE k = ?", (key,)) if self._table else []
        if not rows:
            return None
        got: V = pickle.loads(rows[0][0])
        return got

    def discard(self, keys: Iterable[bytes]) -> None:
        if self._table:
            self._file.write("DELETE FROM b WHERE k = ?", [(k,) for k in keys])


class CountLog:
    """``key -> count`` for the whole run (``order_placed`` events by order id: one a member
    and slot): counts added since the last flush in memory, at most ``MEM_KEYS`` of them,
    the rest summed on the side file (a year of a 30-member community: 1 M order ids)."""

    MEM_KEYS = 20_000

    def __init__(self) -> None:
        self._file = _SideFile()
        self._mem: dict[bytes, int] = {}
        self._table = False

    def add(self, key: bytes, n: int = 1) -> None:
        self._mem[key] = self._mem.get(key, 0) + n
        if len(self._mem) > self.MEM_KEYS:
            if not self._table:
                self._file.execute("CREATE TABLE n (k BLOB PRIMARY KEY, n INTEGER)")
                self._table = True
            self._file.write("INSERT INTO n VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET "
                             "n = n + excluded.n", list(self._mem.items()))
            self._mem = {}

    def get(self, key: bytes, default: int = 0) -> int:
        """The count of ``key`` (``default`` if never added)."""
        on_file = self._file.read("SELECT n FROM n WHERE k = ?", (key,)) if self._table else []
        if key not in self._mem and not on_file:
            return default
        return self._mem.get(key, 0) + (int(on_file[0][0]) if on_file else 0)


def _bump(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


@dataclass
class RunData:
    """The run's blackboard (see the module docstring). Keys are slot numbers."""

    slots: dict[int, SlotRecord] = field(default_factory=dict)
    views: SlotLog[MarketView] = field(default_factory=SlotLog)
    envelopes: SlotLog[Envelopes] = field(default_factory=SlotLog)
    envelope_reports: dict[int, EnvelopeReport] = field(default_factory=dict)
    """The DSO's envelope computation for a slot (binding constraints), until it is delivered."""
    battery_wh: SlotLog[dict[str, int]] = field(default_factory=SlotLog)
    """Battery injection each agent planned for the slot (> 0 discharge), by cp."""
    truth: dict[int, npt.NDArray[np.int64]] = field(default_factory=dict)
    """Net injection (Wh, > 0 export) each member's cp really had, by slot, in ``truth_cps``
    order (``truth_of``); compact: 8 bytes a member and slot."""
    truth_cps: dict[str, int] = field(default_factory=dict)
    delivered: dict[int, Delivered] = field(default_factory=dict)
    """The last ``RECENT_SLOTS`` deliveries (``record_delivery``); ``delivered_slots`` lists
    every slot delivered."""
    delivered_slots: list[int] = field(default_factory=list)
    curtailments: dict[int, tuple[CurtailmentCause, ...]] = field(default_factory=dict)
    """Slot -> why energy was curtailed in it (only slots where some was)."""
    rounds: SlotLog[Round] = field(default_factory=SlotLog)
    """Secure-aggregation rounds (off-ledger result) by the slot they summed."""
    order_ids: SlotLog[list[bytes]] = field(default_factory=SlotLog)
    """Ids of the honest order transactions per slot, in submission order (their sender and
    body are in ``tx_info``; the signed bytes are on the ledger)."""
    tx_info: TxLog = field(default_factory=TxLog)
    """Every transaction the simulator signed (on a side file: ``TxLog``)."""
    stats: Stats = field(default_factory=Stats)
    # what the ledger did (from finalized blocks)
    events: EventLog = field(default_factory=EventLog)
    """Every ledger event of the run, in block order (on a side file: ``EventLog``)."""
    trades: SlotLog[list[dict[str, Any]]] = field(default_factory=SlotLog)
    fills: SlotLog[dict[bytes, dict[str, int]]] = field(default_factory=SlotLog)
    bills: SlotLog[dict[bytes, dict[str, Any]]] = field(default_factory=SlotLog)
    placed: CountLog = field(default_factory=CountLog)
    """Order id -> number of ``order_placed`` events (a replayed order would show 2)."""
    flagged: dict[int, set[str]] = field(default_factory=dict)
    """Slot -> cps whose reading the DSO flagged as false data (``reading_flagged``)."""
    quarantined_readings: dict[int, set[str]] = field(default_factory=dict)
    """Slot -> cps whose reading the ledger took from a quarantined meter (``reading`` with
    ``quarantine``): the DSO's estimate must replace it."""
    estimated: dict[int, set[str]] = field(default_factory=dict)
    """Slot -> cps whose quarantined reading the DSO's estimate replaced (``reading_flagged``
    with ``quarantine``; not false-data detections)."""
    flex_adjust_wh: SlotLog[dict[str, int]] = field(default_factory=SlotLog)
    """Slot -> cp -> change of net injection the DSO ordered (flexibility, > 0 up) and its
    rebound: the DSO's forecast for envelopes and what honest devices do."""
    failed: list[FailedTx] = field(default_factory=list)
    """Every failed receipt, in block order (each must be some attack's doing)."""
    dp_release: dict[str, Any] = field(default_factory=dict)
    """The DSO's differentially private publication and its accounting, for
    ``summary.privacy`` (``features.publication``)."""

    def record_truth(self, slot: int, actual_wh_by_cp: Mapping[str, int],
                     member_cps: Sequence[str]) -> None:
        """Keep what the members' cps really injected in ``slot`` for the whole run (set
        before measuring: attacks on readings read it). Raises ``KeyError`` if a member's cp
        is missing."""
        if not self.truth_cps:
            self.truth_cps = {cp: i for i, cp in enumerate(member_cps)}
        self.truth[slot] = np.array([actual_wh_by_cp[cp] for cp in self.truth_cps],
                                    dtype=np.int64)

    def record_delivery(self, d: Delivered) -> None:
        """Keep a slot's whole-network delivery for ``RECENT_SLOTS`` slots."""
        if d.slot not in self.delivered:
            self.delivered_slots.append(d.slot)
        self.delivered[d.slot] = d
        for s in [s for s in self.delivered if s <= d.slot - RECENT_SLOTS]:
            del self.delivered[s]

    def orders(self, slot: int) -> list[tuple[bytes, TxInfo]]:
        """The honest order transactions of ``slot`` as (tx id, what was signed)."""
        return [(i, self.tx_info[i]) for i in self.order_ids.get(slot, [])]

    def truth_of(self, slot: int, cp: str) -> int:
        """A member's true net injection (Wh, > 0 export) in ``slot``. Raises ``KeyError``
        for a slot not delivered or a cp that is not a member's."""
        return int(self.truth[slot][self.truth_cps[cp]])

    def absorb(self, fb: FinalizedBlock) -> list[dict[str, Any]]:
        """Record a finalized block's receipts and events; returns the block's events."""
        st = self.stats
        st.blocks += 1
        st.txs += len(fb.result.receipts)
        # the certificates archive's records stay in the stores (the views read them there)
        evs: list[dict[str, Any]] = [
            {k: v for k, v in e.items() if k != "records"} if e.get("type") == ARCHIVED else e
            for e in fb.result.block_events]
        for r in fb.result.receipts:
            if not r.ok:
                st.rejected_txs += 1
                _bump(st.rejected_receipts, r.rule)
                self.failed.append(FailedTx(r.tx_hash, r.rule, fb.header.height))
            evs += list(r.events)
        for ev in evs:
            self._absorb_event(ev)
        self.events.extend(evs, fb.header.slot_time)
        self.tx_info.mark(fb.header.slot_time)
        return evs

    def _absorb_event(self, ev: dict[str, Any]) -> None:
        t = ev.get("type")
        if t == "trade":
            self.trades.setdefault(ev["slot"], []).append(ev)
            f = self.fills.setdefault(ev["slot"], {})
            buyer = f.setdefault(ev["buyer"], {})
            buyer["buy"] = buyer.get("buy", 0) + ev["energy_wh"]
            seller = f.setdefault(ev["seller"], {})
            seller["sell"] = seller.get("sell", 0) + ev["energy_wh"]
        elif t == "slot_cleared":
            rec = self.slots.get(ev["slot"])
            if rec is not None:
                rec.price_micro_per_kwh = ev["price_micro_per_kwh"] if ev["trades"] else None
                rec.volume_wh = ev["volume_wh"]
                rec.trades = ev["trades"]
                rec.orders = ev["orders"]
                rec.clipped_wh = ev["clipped_wh"]
        elif t == "order_placed":
            self.placed.add(ev["order_id"])
        elif t == "bill":
            self.bills.setdefault(ev["slot"], {})[ev["addr"]] = ev
        elif t == "reading_flagged" and ev.get("quarantine"):
            self.estimated.setdefault(ev["slot"], set()).add(ev["cp"])
        elif t == "reading_flagged":
            self.flagged.setdefault(ev["slot"], set()).add(ev["cp"])
            if ev["slot"] in self.slots:
                self.slots[ev["slot"]].flags += 1
        elif t == "reading" and ev.get("quarantine"):
            self.quarantined_readings.setdefault(ev["slot"], set()).add(ev["cp"])

    def record_admission(self, rejected_rules: Iterable[str], admitted: int) -> None:
        for rule in rejected_rules:
            _bump(self.stats.admission_rejected, rule)
        self.stats.admitted += admitted

    # -- queries attacks measure themselves with ------------------------------------------
    def placed_ok(self, order_id: bytes) -> bool:
        return self.placed.get(order_id, 0) > 0

    def duplicate_orders(self, ids: Iterable[bytes]) -> int:
        return sum(max(0, self.placed.get(i, 0) - 1) for i in set(ids))

    def excess_paid(self, slots: Iterable[int], addrs: set[bytes]) -> int:
        """Micro-units the accounts ``addrs`` paid beyond their no-market bill in ``slots``."""
        return sum(max(0, b["total_micro"] - b["baseline_total_micro"])
                   for s in set(slots) for a, b in self.bills.get(s, {}).items() if a in addrs)

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        """The run's ledger events of one ``type``, in block order."""
        return self.events.of(kind)
