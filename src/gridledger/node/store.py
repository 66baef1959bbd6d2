"""SQLite block store: one file per validator.

Tables: ``meta`` (genesis, validator index), ``blocks`` (header, txs, receipts, certificate,
log position), ``snapshots`` (full state every K blocks), ``txindex`` (transaction id ->
height of its receipt), ``evidence`` (equivocation, faults). A block row, its snapshot and
its index rows are written in one SQLite transaction with ``synchronous=FULL`` in WAL mode,
so a process killed at any instant either has the whole certified block or none of it, and
everything the API serves after a restart is read from here (bounded memory).
``gridledger verify-chain`` checks every row of every table (``node.verify``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from gridledger.errors import MalformedEncoding
from gridledger.ledger import codec
from gridledger.ledger.genesis import Genesis

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height   INTEGER PRIMARY KEY,
    header   BLOB NOT NULL,
    txs      BLOB NOT NULL,
    receipts BLOB NOT NULL,
    cert     BLOB NOT NULL,
    log_end  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (height INTEGER PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT, height INTEGER NOT NULL, kind TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txindex (
    tx     BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    ok     INTEGER NOT NULL
) WITHOUT ROWID;
"""
TXINDEX_READY = "txindex"  # meta key: the index covers every stored block
STORE_SUFFIX = ".sqlite"


@dataclass(frozen=True)
class StoredBlock:
    height: int
    header: bytes
    txs: bytes
    receipts: bytes
    cert: bytes
    log_end: int

    def tx_list(self) -> list[bytes]:
        txs = codec.decode(self.txs)
        if not isinstance(txs, list) or not all(type(t) is bytes for t in txs):
            raise MalformedEncoding(f"block {self.height}: txs is not a list of byte strings")
        return txs


def index_entries(receipts: bytes) -> list[tuple[bytes, bool]]:
    """(transaction id, ok) of each receipt in an encoded ``BlockResult``, in block order."""
    return [(bytes(r["tx"]), bool(r["ok"])) for r in cbor2.loads(receipts)["txs"]]


def index_rows(entries: Sequence[tuple[bytes, bool]], height: int) -> list[tuple[bytes, int, int]]:
    """The index rows of one block. A transaction ordered twice (submitted through two
    validators) fails its second run (replayed nonce): the first run's receipt is the one
    to serve, so within a block a successful receipt wins over a failed one."""
    rows: dict[bytes, tuple[bytes, int, int]] = {}
    for tx, ok in entries:
        if ok or tx not in rows:
            rows[tx] = (tx, height, int(ok))
    return list(rows.values())


# across blocks: a later successful receipt replaces a failed one, never the other way
UPSERT_INDEX = ("INSERT INTO txindex VALUES (?, ?, ?) ON CONFLICT(tx) DO UPDATE SET "
                "height=excluded.height, ok=excluded.ok WHERE excluded.ok=1")


class BlockStore:
    """A validator's durable ledger."""

    def __init__(self, path: str | Path, readonly: bool = False, durable: bool = True) -> None:
        """Open (and create, unless ``readonly``) the store at ``path``. A read-only store
        never writes to the file (checkers such as ``verify-chain`` open stores so).
        ``durable=False``: ``synchronous=NORMAL`` — in WAL mode a killed *process* still has
        every committed block (SQLite's WAL writes reach the OS before the commit returns);
        only a power loss may take the last ones back. For the simulator's stores (a run in
        a scratch folder, crashes simulated as process kills): a default day's 2 × 306
        fsyncs a core were idle time on the run's critical path (issue 17)."""
        self.path = Path(path)
        self.readonly = readonly
        self._side_files: list[Path] = []
        if readonly:
            # SQLite creates -wal/-shm beside a WAL store even to read it: note which did not
            # exist, and remove them again on close (grid, issue 18.11: a checker leaves the
            # folder as it found it).
            side = [Path(f"{self.path}{s}") for s in ("-wal", "-shm")]
            before = {p for p in side if p.exists()}
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                      isolation_level=None, check_same_thread=False)
            self._side_files = [p for p in side if p not in before]
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.db.executescript(SCHEMA)
        if self.get_meta(TXINDEX_READY) is None:
            self._rebuild_index()

    def _rebuild_index(self) -> None:
        """Index every stored block (stores written before the index existed)."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("DELETE FROM txindex")
            for h, receipts in self.db.execute("SELECT height, receipts FROM blocks ORDER BY height"):
                cur.executemany(UPSERT_INDEX, index_rows(index_entries(bytes(receipts)), int(h)))
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (TXINDEX_READY, b"1"))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()
        # Only side files this read-only open created, and only while no writer used them
        # meanwhile (an empty -wal): a node that opened the store since keeps its own.
        if all(not p.exists() or p.stat().st_size == 0
               for p in self._side_files if p.name.endswith("-wal")):
            for p in self._side_files:
                p.unlink(missing_ok=True)
        self._side_files = []

    # -- meta ----------------------------------------------------------------
    def set_meta(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def init_genesis(self, genesis: Genesis) -> None:
        existing = self.get_meta("genesis")
        if existing is not None and existing != genesis.encode():
            raise ValueError(f"{self.path} holds a different genesis")
        self.set_meta("genesis", genesis.encode())

    def genesis(self) -> Genesis | None:
        raw = self.get_meta("genesis")
        return None if raw is None else Genesis.decode(raw)

    # -- blocks --------------------------------------------------------------
    def append_block(self, height: int, header: bytes, txs: list[bytes], receipts: bytes,
                     cert: bytes, log_end: int, snapshot: bytes | None = None,
                     entries: Sequence[tuple[bytes, bool]] | None = None) -> None:
        """Write one certified block, its transaction index rows (and optionally a
        snapshot) atomically. ``entries``: ``index_entries(receipts)``, when the caller
        holds the receipts it encoded (a validator: decoding them again to index them was
        ~1 % of the main core's block work, issue 17)."""
        rows = index_rows(index_entries(receipts) if entries is None else entries, height)
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                        (height, header, codec.encode(txs), receipts, cert, log_end))
            cur.executemany(UPSERT_INDEX, rows)
            if snapshot is not None:
                cur.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (height, snapshot))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def tip(self) -> int:
        row = self.db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def block(self, height: int) -> StoredBlock | None:
        row = self.db.execute("SELECT * FROM blocks WHERE height=?", (height,)).fetchone()
        return None if row is None else StoredBlock(int(row[0]), bytes(row[1]), bytes(row[2]),
                                                    bytes(row[3]), bytes(row[4]), int(row[5]))

    def blocks(self, start: int = 1) -> Iterator[StoredBlock]:
        cur = self.db.execute("SELECT * FROM blocks WHERE height>=? ORDER BY height", (start,))
        for row in cur:
            yield StoredBlock(int(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3]),
                              bytes(row[4]), int(row[5]))

    def tx_height(self, tx_id: bytes) -> int | None:
        """Height of the block holding ``tx_id``'s receipt (the successful one if any)."""
        row = self.db.execute("SELECT height FROM txindex WHERE tx=?", (tx_id,)).fetchone()
        return None if row is None else int(row[0])

    def index(self) -> Iterator[tuple[bytes, int, bool]]:
        """Every transaction index row (tx id, height, ok), by tx id."""
        for tx, h, ok in self.db.execute("SELECT tx, height, ok FROM txindex ORDER BY tx"):
            yield bytes(tx), int(h), bool(ok)

    def snapshot_heights(self) -> list[int]:
        return [int(h) for (h,) in self.db.execute("SELECT height FROM snapshots ORDER BY height")]

    def snapshot_bytes(self, height: int) -> bytes | None:
        row = self.db.execute("SELECT state FROM snapshots WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def latest_snapshot(self) -> tuple[int, dict[bytes, bytes]] | None:
        row = self.db.execute(
            "SELECT height, state FROM snapshots ORDER BY height DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return int(row[0]), decode_snapshot(bytes(row[1]))

    # -- evidence ------------------------------------------------------------
    def add_evidence(self, height: int, kind: str, body: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO evidence (height, kind, body) VALUES (?, ?, ?)",
                        (height, kind, codec.encode(body)))

    def evidence(self) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.db.execute("SELECT height, kind, body FROM evidence ORDER BY id").fetchall()
        return [(int(h), str(k), codec.decode(bytes(b))) for h, k, b in rows]


def fold_wal(path: str | Path) -> None:
    """Fold a closed store's write-ahead log into its file and remove the ``-wal``/``-shm``
    beside it: what the writer's own close does when no reader holds the store at that
    moment (a checker that followed the store while it was written, ``node.verify``).
    The content does not change."""
    path = Path(path)
    if not Path(f"{path}-wal").exists():
        return
    try:
        db = sqlite3.connect(str(path), isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()  # the last connection: SQLite deletes the log files
    except sqlite3.Error:  # not a store after all: verify-chain has reported it
        pass


def encode_snapshot(items: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A state's (key, value) pairs in key order as canonical CBOR: a list of [key, value]
    byte-string pairs. It holds no map, so its plain encoding is the canonical one
    (``codec.encode``'s result, byte for byte) — written by ``cbor2`` directly, without
    ``codec.encode``'s walk through every pair looking for maps to put in key order (a
    privacy day's snapshot holds ~30-40k pairs, encoded by each validator and checked by
    the store follower, issue 17)."""
    if all(type(k) is bytes and type(v) is bytes for k, v in items):
        return cbor2.dumps(list(items))
    return codec.encode([[k, v] for k, v in items])


def decode_snapshot(raw: bytes) -> dict[bytes, bytes]:
    """Strict: canonical CBOR list of [key, value] byte-string pairs, keys strictly ascending
    (the only encoding ``encode_snapshot`` produces); raises ``MalformedEncoding``.

    What ``codec.decode`` checks beyond the pairs' shape — no float or other type, maps in
    key order — cannot apply to a list of byte-string pairs, so the bytes are canonical
    exactly when they re-encode to themselves (checked last, once)."""
    try:
        pairs = cbor2.loads(raw)
    except Exception as exc:
        raise MalformedEncoding(f"not valid CBOR: {exc}") from exc
    if not isinstance(pairs, list):
        raise MalformedEncoding("snapshot is not a list of [key, value] pairs")
    out: dict[bytes, bytes] = {}
    last: bytes | None = None
    for p in pairs:
        if (not isinstance(p, list) or len(p) != 2 or type(p[0]) is not bytes
                or type(p[1]) is not bytes):
            raise MalformedEncoding("snapshot entry is not a [key, value] pair of byte strings")
        if last is not None and p[0] <= last:
            raise MalformedEncoding("snapshot keys are not strictly ascending")
        last = p[0]
        out[last] = p[1]
    if cbor2.dumps(pairs) != raw:
        raise MalformedEncoding("not canonical CBOR (RFC 8949 §4.2.1)")
    return out


class StoreHistory:
    """``ledger.module.History`` over a store: the block events it holds for a height (the
    ``block`` part of the block's stored receipts, which its header's ``receipts_root``
    commits to). The last heights read are kept decoded (256: a few days of the
    certificates archive's hours, which a view of every holder's matching scans in turn)."""

    KEEP = 256

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self._recent: dict[int, list[dict[str, Any]] | None] = {}

    def _block(self, height: int) -> StoredBlock | None:
        try:
            return self.store.block(height)
        except sqlite3.ProgrammingError:
            # the node closed its store (a run's end, before its summary reads attacks'
            # results): read the file, leaving it as found
            ro = BlockStore(self.store.path, readonly=True)
            try:
                return ro.block(height)
            finally:
                ro.close()

    def block_events(self, height: int) -> list[dict[str, Any]] | None:
        if height in self._recent:
            return self._recent[height]
        blk = self._block(height)
        if blk is None:
            return None         # not stored (yet): asked again later
        doc = codec.decode(blk.receipts)
        got = doc.get("block") if isinstance(doc, dict) else None
        events = got if isinstance(got, list) else None
        if len(self._recent) >= self.KEEP:
            self._recent.pop(next(iter(self._recent)))
        self._recent[height] = events
        return events
