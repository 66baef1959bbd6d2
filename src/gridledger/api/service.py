"""What the HTTP API needs from a node, and the embedded implementation of it.

``NodeService`` is the seam: the API never touches validators or orderers directly. The
embedded service wraps an ``EmbeddedNetwork`` behind a lock (FastAPI runs handlers in a
thread pool) and keeps a small index of transaction hash -> height for receipt lookups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from gridledger.ledger.block import Certificate, Header
from gridledger.ledger.execute import BlockResult
from gridledger.ledger.state import MembershipProof
from gridledger.ledger.tx import Tx
from gridledger.node.embedded import EmbeddedNetwork, FinalizedBlock


class NodeService(Protocol):
    chain_id: str

    def submit(self, raw: bytes) -> Tx: ...
    def status(self) -> dict[str, Any]: ...
    def query(self, path: str) -> Any: ...
    def prove(self, key: bytes) -> tuple[int, bytes, MembershipProof]: ...
    def block(self, height: int) -> tuple[Header, list[bytes], dict[str, Any], Certificate] | None: ...
    def receipt(self, tx_hash: bytes) -> tuple[int, dict[str, Any]] | None: ...
    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]: ...


def block_event(fb_header: Header, result: BlockResult) -> dict[str, Any]:
    return {"type": "block", "height": fb_header.height, "hash": fb_header.hash.hex(),
            "slot_time": fb_header.slot_time, "txs": len(result.receipts),
            "ok": sum(1 for r in result.receipts if r.ok),
            "events": [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in e.items()}
                       for e in result.block_events]}


class EmbeddedService:
    """``NodeService`` over an in-process ``EmbeddedNetwork``."""

    def __init__(self, net: EmbeddedNetwork, clock: Callable[[], float] = time.monotonic) -> None:
        self.net = net
        self.chain_id = net.genesis.chain_id
        self.clock = clock
        self.lock = threading.RLock()
        self._index: dict[bytes, int] = {}
        self._subs: list[Callable[[dict[str, Any]], None]] = []
        for v in [net.entry]:
            for blk in v.store.blocks(1):
                from gridledger.ledger import codec

                for r in codec.decode(blk.receipts)["txs"]:
                    self._index[r["tx"]] = blk.height

    def submit(self, raw: bytes) -> Tx:
        with self.lock:
            return self.net.submit(raw, now_s=self.clock())

    def tick(self, time_s: int) -> list[FinalizedBlock]:
        with self.lock:
            fbs = self.net.tick(time_s)
            for fb in fbs:
                for r in fb.result.receipts:
                    self._index[r.tx_hash] = fb.header.height
            subs = list(self._subs)
        for fb in fbs:
            ev = block_event(fb.header, fb.result)
            for fn in subs:
                fn(ev)
        return fbs

    def status(self) -> dict[str, Any]:
        with self.lock:
            app = self.net.entry.app
            return {"chain_id": self.chain_id, "height": app.height,
                    "state_root": app.state.root().hex(), "slot_time": app.slot_time,
                    "validators": len(self.net.validators), "mempool": len(self.net.mempool),
                    "halted": self.net.halted is not None,
                    "offenders": {str(k): sorted(v) for k, v in self.net.offenders.items()}}

    def query(self, path: str) -> Any:
        with self.lock:
            return self.net.entry.app.query(path)

    def prove(self, key: bytes) -> tuple[int, bytes, MembershipProof]:
        with self.lock:
            app = self.net.entry.app
            return app.height, app.state.root(), app.state.prove(key)

    def block(self, height: int) -> tuple[Header, list[bytes], dict[str, Any], Certificate] | None:
        from gridledger.ledger import codec

        with self.lock:
            blk = self.net.entry.store.block(height)
        if blk is None:
            return None
        return (Header.decode(blk.header), blk.tx_list(), codec.decode(blk.receipts),
                Certificate.decode(blk.cert))

    def receipt(self, tx_hash: bytes) -> tuple[int, dict[str, Any]] | None:
        with self.lock:
            h = self._index.get(tx_hash)
        if h is None:
            return None
        got = self.block(h)
        if got is None:
            return None
        for r in got[2]["txs"]:
            if r["tx"] == tx_hash:
                return h, r
        return None

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self.lock:
            self._subs.append(fn)

        def cancel() -> None:
            with self.lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return cancel
