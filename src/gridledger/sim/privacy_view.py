"""What a validator's own ledger store holds, read the way its operator could read it.

The privacy figures of the attack lab (issue 19) are measured on this view and nothing else:
``StoreView`` opens one validator's SQLite store file read-only after the run and decodes its
blocks, transactions, receipts and events; ``count_clear`` scans every validator's store for
readings and orders that name a household (its member or meter address, or its connection
point id) — ``summary.privacy.clear_household_readings`` / ``clear_household_orders``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridledger.errors import RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.block import Header
from gridledger.ledger.tx import Tx, decode_tx
from gridledger.sim.context import SimContext

READING_TXS = frozenset({"metering/reading", "metering/flag"})
ORDER_TXS = frozenset({"market/order", "market/commit", "market/reveal", "market/replace",
                       "market/cancel"})
READING_EVENTS = frozenset({"reading", "reading_flagged"})
ORDER_EVENTS = frozenset({"order_placed", "order_cancelled", "order_replaced", "committed",
                          "revealed", "trade"})


@dataclass(frozen=True)
class StoredTx:
    height: int
    slot_time: int
    tx: Tx
    ok: bool
    events: tuple[dict[str, Any], ...]


class StoreView:
    """One validator's store file, opened read-only (the file is not changed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # the writer has closed it: an immutable read needs no -wal/-shm side files
        self.db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StoreView:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def genesis(self) -> bytes:
        row = self.db.execute("SELECT value FROM meta WHERE key='genesis'").fetchone()
        return bytes(row[0])

    def blocks(self) -> Iterator[tuple[Header, list[StoredTx], list[dict[str, Any]]]]:
        """(header, transactions with their receipts, block events) by height."""
        for height, header, txs, receipts in self.db.execute(
                "SELECT height, header, txs, receipts FROM blocks ORDER BY height"):
            h = Header.decode(bytes(header))
            rec = codec.decode(bytes(receipts))
            by_hash = {r["tx"]: r for r in rec["txs"]}
            out = []
            for raw in codec.decode(bytes(txs)):
                try:
                    tx = decode_tx(raw)
                except RejectedTx:
                    continue  # undecodable bytes carry nothing to scan
                r = by_hash.get(tx.id) or by_hash.get(tx.hash) or {}
                out.append(StoredTx(int(height), h.slot_time, tx, bool(r.get("ok")),
                                    tuple(r.get("events", ()))))
            yield h, out, list(rec["block"])


def store_paths(ctx: SimContext) -> list[Path]:
    """Every validator's store file of the run."""
    return [Path(v.store.path) for v in ctx.net.validators]


def household_ids(ctx: SimContext) -> tuple[frozenset[bytes], frozenset[str]]:
    """(member and meter addresses, connection point ids) of the community's households."""
    addrs = {m.address for m in ctx.members} | {m.meter.address for m in ctx.members}
    return frozenset(addrs), frozenset(m.cp for m in ctx.members)


def names_any(obj: Any, addrs: frozenset[bytes], cps: frozenset[str]) -> bool:
    """Whether ``obj`` (a decoded body or event, nested) holds one of the addresses or cp
    ids, as a value or inside a string (a pseudonym's ``ps:`` cp never matches a household's)."""
    if isinstance(obj, bytes):
        return obj in addrs
    if isinstance(obj, str):
        return obj in cps
    if isinstance(obj, dict):
        return any(names_any(k, addrs, cps) or names_any(v, addrs, cps) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return any(names_any(x, addrs, cps) for x in obj)
    return False


def count_clear(ctx: SimContext) -> dict[str, Any]:
    """Scan every validator store: transactions and events that are readings or orders and
    name a household (sender, or any field: address or cp id). Both counts are per store
    item summed over the stores; 0 means no validator holds a household's reading or order."""
    addrs, cps = household_ids(ctx)
    readings = orders = 0
    paths = store_paths(ctx)
    for path in paths:
        with StoreView(path) as view:
            for _h, txs, block_events in view.blocks():
                for st in txs:
                    kind = st.tx.kind
                    if (kind in READING_TXS or kind in ORDER_TXS) and (
                            st.tx.sender in addrs or names_any(st.tx.body, addrs, cps)):
                        readings += kind in READING_TXS
                        orders += kind in ORDER_TXS
                    for e in st.events:
                        t = e.get("type")
                        if (t in READING_EVENTS or t in ORDER_EVENTS) and names_any(e, addrs, cps):
                            readings += t in READING_EVENTS
                            orders += t in ORDER_EVENTS
                for e in block_events:
                    t = e.get("type")
                    if (t in READING_EVENTS or t in ORDER_EVENTS) and names_any(e, addrs, cps):
                        readings += t in READING_EVENTS
                        orders += t in ORDER_EVENTS
    return {"clear_household_readings": readings, "clear_household_orders": orders,
            "stores_scanned": len(paths)}
