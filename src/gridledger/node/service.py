"""The node's implementations of the API's ``NodeService`` protocol.

``ValidatorService`` answers reads from one validator: state reads under the node lock from
the application's state, which only ever holds certified blocks (``Application`` sets an
executed block aside until its certificate arrives), so each answer is one certified height
and names it; block, receipt and index reads from the validator's SQLite store through a
read-only connection of its own (WAL: it sees committed rows only, and does not wait for
the node lock while a block executes). Nothing the API serves lives only in memory: after a
restart every answer is rebuilt from the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gridledger.api.dashboard import is_alert
from gridledger.api.service import BlockView
from gridledger.errors import RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.block import Certificate, Header
from gridledger.ledger.execute import BlockResult
from gridledger.ledger.rules import Rule
from gridledger.ledger.state import AbsenceProof, MembershipProof
from gridledger.ledger.tx import Tx
from gridledger.node.embedded import EmbeddedNetwork, FinalizedBlock
from gridledger.node.store import BlockStore
from gridledger.node.validator import Validator

Admit = Callable[[Sequence[bytes]], list[Tx | RejectedTx]]


def _plain(e: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in e.items()}


def block_event(header: Header, result: BlockResult) -> dict[str, Any]:
    """The event-stream record of a finalized block: counts, the block's events, failed
    transactions counted by rule (``rejected``) and the transactions' alert events."""
    rejected: dict[str, int] = {}
    for r in result.receipts:
        if not r.ok:
            rejected[r.rule] = rejected.get(r.rule, 0) + 1
    return {"type": "block", "height": header.height, "hash": header.hash.hex(),
            "slot_time": header.slot_time, "txs": len(result.receipts),
            "ok": sum(1 for r in result.receipts if r.ok),
            "events": [_plain(e) for e in result.block_events],
            "rejected": dict(sorted(rejected.items())),
            "alerts": [_plain(e) for r in result.receipts for e in r.events if is_alert(e)]}


class ValidatorService:
    """``NodeService`` over one validator; ``admit`` and ``counters`` come from its node."""

    def __init__(self, validator: Validator, lock: threading.RLock, admit: Admit,
                 counters: Callable[[], dict[str, Any]]) -> None:
        self.validator = validator
        self.chain_id = validator.app.chain_id
        self.lock = lock
        self._admit = admit
        self._counters = counters
        self._subs: list[Callable[[dict[str, Any]], None]] = []
        self._subs_lock = threading.Lock()
        self._reader = BlockStore(validator.store.path, readonly=True)
        self._reader_lock = threading.Lock()

    # -- writes ------------------------------------------------------------------
    def submit(self, raw: bytes) -> Tx:
        got = self._admit([raw])[0]
        if isinstance(got, RejectedTx):
            raise got
        return got

    def submit_many(self, raws: list[bytes]) -> list[Tx | RejectedTx]:
        return self._admit(raws)

    # -- certified reads -----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self.lock:
            app = self.validator.app
            out = {"chain_id": self.chain_id, "height": app.height,
                   "state_root": app.state.root().hex(), "block_hash": app.last_hash.hex(),
                   "slot_time": app.slot_time, "validators": len(app.validator_keys()),
                   "validator_index": self.validator.index,
                   "vote_index": self.validator.vote_index()}
        out.update(self._counters())
        return out

    def query(self, paths: Sequence[str]) -> tuple[int, list[Any]]:
        with self.lock:
            app = self.validator.app
            return app.height, [app.query(p) for p in paths]

    def prove(self, key: bytes) -> tuple[int, bytes, MembershipProof | AbsenceProof]:
        with self.lock:
            app = self.validator.app
            try:
                proof: MembershipProof | AbsenceProof = app.state.prove(key)
            except KeyError:
                proof = app.state.prove_absence(key)
            return app.height, app.state.root(), proof

    def rules(self) -> list[Rule]:
        return self.validator.app.rules()

    def views(self) -> list[str]:
        return self.validator.app.views()

    def block(self, height: int) -> BlockView | None:
        with self._reader_lock:
            blk = self._reader.block(height)
        if blk is None:
            return None
        return (Header.decode(blk.header), blk.tx_list(), codec.decode(blk.receipts),
                Certificate.decode(blk.cert))

    def receipt(self, tx_id: bytes) -> tuple[int, dict[str, Any]] | None:
        with self._reader_lock:
            h = self._reader.tx_height(tx_id)
        got = self.block(h) if h is not None else None
        if h is None or got is None:
            return None
        # the index names the successful receipt's block when there is one
        found = [r for r in got[2]["txs"] if r["tx"] == tx_id]
        ok = [r for r in found if r["ok"]]
        return (h, (ok or found)[0]) if found else None

    # -- events -----------------------------------------------------------------------
    def subscribe(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        with self._subs_lock:
            self._subs.append(fn)

        def cancel() -> None:
            with self._subs_lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return cancel

    def notify(self, header: Header, result: BlockResult) -> None:
        """Publish a finalized (certified and stored) block to the event subscribers."""
        ev = block_event(header, result)
        with self._subs_lock:
            subs = list(self._subs)
        for fn in subs:
            fn(ev)

    def subscribers(self) -> int:
        with self._subs_lock:
            return len(self._subs)

    def close(self) -> None:
        with self._reader_lock:
            self._reader.close()


class EmbeddedService(ValidatorService):
    """``NodeService`` over an in-process ``EmbeddedNetwork`` (the entry validator's view);
    ``tick`` drives the network (and publishes its blocks as events)."""

    def __init__(self, net: EmbeddedNetwork, clock: Callable[[], float] = time.monotonic,
                 lock: threading.RLock | None = None) -> None:
        """``lock``: the one whoever drives ``net`` holds while it executes blocks (the
        demo's ledger lock), so reads never see a block half applied."""
        lock = lock if lock is not None else threading.RLock()

        def admit(raws: Sequence[bytes]) -> list[Tx | RejectedTx]:
            with lock:
                return net.submit_many(raws, now_s=clock())

        def counters() -> dict[str, Any]:
            with lock:
                return {"validators": len(net.validators), "mempool": len(net.mempool),
                        "halted": net.halted is not None,
                        "offenders": {str(k): sorted(v) for k, v in net.offenders.items()}}

        super().__init__(net.entry, lock, admit, counters)
        self.net = net
        self.clock = clock

    def tick(self, time_s: int) -> list[FinalizedBlock]:
        """Close the blocks due at ``time_s``: a burst larger than a block is cut into
        blocks that all carry ``time_s`` (``EmbeddedNetwork.tick_stamped``), so a reading
        sent after its slot ended never executes as if before it (``reading-early``)."""
        with self.lock:
            fbs = self.net.tick_stamped(time_s)
        for fb in fbs:
            self.notify(fb.header, fb.result)
        return fbs
