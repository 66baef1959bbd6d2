"""What the HTTP API needs from a node, and the embedded implementation of it.

``NodeService`` is the seam: the API never touches validators or orderers directly. The
embedded service wraps an ``EmbeddedNetwork`` behind a lock (FastAPI runs handlers in a
thread pool) and keeps a small index of transaction hash -> height for receipt lookups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gridledger.errors import RejectedTx
from gridledger.ledger.block import Certificate, Header
from gridledger.ledger.execute import BlockResult
from gridledger.ledger.state import MembershipProof
from gridledger.ledger.tx import Tx
from gridledger.ledger import codec
from gridledger.node.embedded import EmbeddedNetwork, FinalizedBlock
from gridledger.node.validator import Validator

if TYPE_CHECKING:
    from gridledger.node.process import ValidatorProcess


class NodeService(Protocol):
    chain_id: str

    def submit(self, raw: bytes) -> Tx: ...
    def submit_many(self, raws: list[bytes]) -> list[Tx | RejectedTx]: ...
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


class ValidatorService:
    """Read side shared by every ``NodeService``: one validator's state and store."""

    def __init__(self, validator: Validator, lock: threading.RLock,
                 index: dict[bytes, int], subs: list[Callable[[dict[str, Any]], None]]) -> None:
        self.validator = validator
        self.chain_id = validator.app.chain_id
        self.lock = lock
        self._index = index
        self._subs = subs

    def status(self) -> dict[str, Any]:
        with self.lock:
            app = self.validator.app
            return {"chain_id": self.chain_id, "height": app.height,
                    "state_root": app.state.root().hex(), "slot_time": app.slot_time,
                    "validators": len(app.validator_keys()), "validator_index": self.validator.index,
                    "vote_index": self.validator.vote_index()}

    def query(self, path: str) -> Any:
        with self.lock:
            return self.validator.app.query(path)

    def prove(self, key: bytes) -> tuple[int, bytes, MembershipProof]:
        with self.lock:
            app = self.validator.app
            return app.height, app.state.root(), app.state.prove(key)

    def block(self, height: int) -> tuple[Header, list[bytes], dict[str, Any], Certificate] | None:
        with self.lock:
            blk = self.validator.store.block(height)
        if blk is None:
            return None
        return (Header.decode(blk.header), blk.tx_list(), codec.decode(blk.receipts),
                Certificate.decode(blk.cert))

    def receipt(self, tx_hash: bytes) -> tuple[int, dict[str, Any]] | None:
        with self.lock:
            h = self._index.get(tx_hash)
        got = self.block(h) if h is not None else None
        if got is None:
            return None
        for r in got[2]["txs"]:
            if r["tx"] == tx_hash:
                return h, r  # type: ignore[return-value]
        return None

    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self.lock:
            self._subs.append(fn)

        def cancel() -> None:
            with self.lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return cancel


class EmbeddedService(ValidatorService):
    """``NodeService`` over an in-process ``EmbeddedNetwork`` (the entry validator's view)."""

    def __init__(self, net: EmbeddedNetwork, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(net.entry, threading.RLock(), {}, [])
        self.net = net
        self.clock = clock
        for blk in net.entry.store.blocks(1):
            for r in codec.decode(blk.receipts)["txs"]:
                self._index[r["tx"]] = blk.height

    def submit(self, raw: bytes) -> Tx:
        with self.lock:
            return self.net.submit(raw, now_s=self.clock())

    def submit_many(self, raws: list[bytes]) -> list[Tx | RejectedTx]:
        with self.lock:
            return self.net.submit_many(raws, now_s=self.clock())

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
        out = super().status()
        with self.lock:
            out.update(validators=len(self.net.validators), mempool=len(self.net.mempool),
                       halted=self.net.halted is not None,
                       offenders={str(k): sorted(v) for k, v in self.net.offenders.items()})
        return out


class ProcessService(ValidatorService):
    """``NodeService`` over a validator process (``gridledger node start``)."""

    def __init__(self, proc: ValidatorProcess) -> None:
        super().__init__(proc.validator, proc.lock, proc.index, proc.subs)
        self.proc = proc

    # the mempool is thread-safe and admission only looks up single state entries, so
    # admission does not wait for the node lock (held while a block executes)
    def submit(self, raw: bytes) -> Tx:
        return self.proc.mempool.admit(raw, time.monotonic())

    def submit_many(self, raws: list[bytes]) -> list[Tx | RejectedTx]:
        return self.proc.mempool.admit_many(raws, time.monotonic())

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(mempool=len(self.proc.mempool), log_length=self.proc.orderer.length(),
                   offenders={str(k): sorted(v) for k, v in self.proc.offenders.items()})
        return out
