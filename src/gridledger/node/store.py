"""SQLite block store: one file per validator.

Tables: ``meta`` (genesis, validator index), ``blocks`` (header, txs, receipts, certificate,
log position), ``snapshots`` (full state every K blocks), ``evidence`` (equivocation, faults).
A block row is written in one SQLite transaction with ``synchronous=FULL`` in WAL mode, so a
process killed at any instant either has the whole certified block or none of it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
"""
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
        return list(codec.decode(self.txs))


class BlockStore:
    """A validator's durable ledger."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

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
                     cert: bytes, log_end: int, snapshot: bytes | None = None) -> None:
        """Write one certified block (and optionally a snapshot) atomically."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                        (height, header, codec.encode(txs), receipts, cert, log_end))
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

    def latest_snapshot(self) -> tuple[int, dict[bytes, bytes]] | None:
        row = self.db.execute(
            "SELECT height, state FROM snapshots ORDER BY height DESC LIMIT 1").fetchone()
        if row is None:
            return None
        pairs = codec.decode(bytes(row[1]))
        return int(row[0]), {bytes(k): bytes(v) for k, v in pairs}

    # -- evidence ------------------------------------------------------------
    def add_evidence(self, height: int, kind: str, body: dict[str, Any]) -> None:
        self.db.execute("INSERT INTO evidence (height, kind, body) VALUES (?, ?, ?)",
                        (height, kind, codec.encode(body)))

    def evidence(self) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.db.execute("SELECT height, kind, body FROM evidence ORDER BY id").fetchall()
        return [(int(h), str(k), codec.decode(bytes(b))) for h, k, b in rows]


def encode_snapshot(items: list[tuple[bytes, bytes]]) -> bytes:
    return codec.encode([[k, v] for k, v in items])
