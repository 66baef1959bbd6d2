"""A validator: its application, its durable store, its key, and (for the attack lab) a
configurable fault.

Faults, for docs/threat-model.md row 4 (``byzantine-validator``): ``wrong-root`` signs a header whose
state root was altered; ``equivocate`` signs both the true header and an altered one;
``garbage`` sends a vote whose signature is random bytes; ``silent`` sends nothing (an
offline validator, no votes and no ticks); ``relabel`` votes correctly and also replays the
previous height's certificate votes (the other validators' real signatures) relabelled as
this height's; ``forge-tick`` votes correctly but ticks a century ahead, in its own name and
in another validator's; ``far-future`` votes correctly and also sends signed votes for a
height a million blocks ahead. Several may be combined, comma-separated
(``relabel,forge-tick``). The validator still executes correctly, so its own store stays
correct; only what it tells the others is bad.

A validator votes under its index in the set that certifies the block (the set in the
state before the block, ``Application.validator_keys``), found by its public key; when its
key is not in that set (not yet added, or voted out) it executes and stores blocks like any
full node but does not vote.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gridledger.crypto.sig import SigningKey, address_of
from gridledger.errors import BlockError, StateRootMismatch
from gridledger.ledger.app import Application
from gridledger.ledger.block import Certificate, Header, Vote, sign_vote
from gridledger.ledger.execute import BlockResult, SigCheck, default_sig_check
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules import Module
from gridledger.ledger.state import State
from gridledger.node.orderer import CutBlock
from gridledger.node.store import BlockStore, StoreHistory, decode_snapshot, encode_snapshot
from gridledger.node.ticks import Tick, sign_tick

FAULTS = ("wrong-root", "equivocate", "garbage", "silent", "relabel", "forge-tick", "far-future")
CENTURY_MS = 100 * 365 * 86_400 * 1000
FAR_AHEAD = 10**6
# A block that writes (sets or deletes) at least this many state keys is snapshotted too,
# beside every ``snapshot_every``-th block: a privacy epoch's registration (~20k keys) and
# pay-out (sweep, retirement: ~3k-15k) blocks cost a second or more each to re-execute, and
# a restart, the curious validator's read-only node and the audit export rebuild the tip
# from the latest snapshot -- so they start after such a block instead of replaying it. A
# per-slot block writes a few hundred keys. Snapshots are local to a store (not part of any
# header), so this changes no root.
SNAPSHOT_WRITES = 2_000
# ... and only if it wrote at least 1/SNAPSHOT_STATE_SHARE of the state's keys: a snapshot
# stores the whole state, so snapshots after heavy blocks then cost at most that many times
# what those blocks wrote (linear in the chain). Without it a 1,000-member day, whose
# per-slot blocks write thousands of keys of a state of hundreds of thousands, stored a
# snapshot after almost every block (292 of 304, 11.5 GB a store). The default day's heavy
# blocks write 0.35-1.5x the state's keys.
SNAPSHOT_STATE_SHARE = 8


def restore_app(store: BlockStore, genesis: Genesis,
                modules: Sequence[Module] | None = None,
                upto: int | None = None) -> tuple[Application, int]:
    """Rebuild the application from a store: latest snapshot, then replay later blocks.

    Returns the application at the store's tip (or after block ``upto``: the latest
    snapshot at or below it, then the blocks up to it) and the log position after that
    block. Raises ``StateRootMismatch`` if a snapshot or a replayed block does not give its
    header's root.
    """
    if upto is None:
        snap = store.latest_snapshot()
    else:
        below = [h for h in store.snapshot_heights() if h <= upto]
        raw = store.snapshot_bytes(below[-1]) if below else None
        snap = None if raw is None else (below[-1], decode_snapshot(raw))
    log_end = 0
    if snap is not None:
        height, data = snap
        stored = store.block(height)
        if stored is None:
            raise BlockError(f"snapshot at height {height} has no block")
        header = Header.decode(stored.header)
        state = State(data)
        if state.root() != header.state_root:
            raise StateRootMismatch(f"snapshot at height {height} does not match its header")
        app = Application(genesis, modules, state=state, height=height, last_hash=header.hash,
                          slot_time=header.slot_time)
        log_end = stored.log_end
    else:
        app = Application(genesis, modules)
    for blk in store.blocks(app.height + 1):
        if upto is not None and blk.height > upto:
            break
        header = Header.decode(blk.header)
        got, _ = app.finalize_block(blk.tx_list(), header.slot_time, set_aside=False)
        if got.hash != header.hash:
            app.discard()
            raise StateRootMismatch(f"replaying block {blk.height} gives a different header")
        app.commit()
        log_end = blk.log_end
    app.history = StoreHistory(store)
    return app, log_end


class Validator:
    """One validator of the embedded network (or of a validator process)."""

    def __init__(self, index: int, key: SigningKey, genesis: Genesis, store_path: str | Path,
                 modules: Sequence[Module] | None = None, fault: str | None = None,
                 snapshot_every: int = 50, readonly: bool = False, durable: bool = True) -> None:
        """``readonly``: open the store read-only (SQLite ``mode=ro``) and rebuild the tip in
        memory from it, to serve reads; such a validator never writes the file (a copy of a
        store to read it would cost a store's size on disk: at 1,000 members it filled
        /tmp, issue 17), and cannot store blocks. ``durable``: ``BlockStore``'s."""
        unknown = set(fault.split(",")) - set(FAULTS) if fault is not None else set()
        if unknown:
            raise ValueError(f"unknown fault {sorted(unknown)}; choose from {FAULTS}")
        self.index = index
        self.key = key
        self.fault = fault
        self.snapshot_every = snapshot_every
        self.store = BlockStore(store_path, readonly=readonly, durable=durable)
        if not readonly:
            self.store.init_genesis(genesis)
            self.store.set_meta("validator_index", str(index).encode())
        self.app, self.log_end = restore_app(self.store, genesis, modules)
        self._pending: tuple[Header, BlockResult, CutBlock] | None = None
        self.last_result = BlockResult([])  # of the last block this validator stored
        self.diverged = False

    @property
    def height(self) -> int:
        return self.app.height

    def execute(self, blk: CutBlock, sig_check: SigCheck = default_sig_check) -> Header:
        header, result = self.app.finalize_block(blk.txs, blk.slot_time, sig_check)
        self._pending = (header, result, blk)
        return header

    def vote_index(self) -> int | None:
        """This validator's index in the set certifying the pending (or next) block."""
        return self.app.vote_index(self.key.alg, self.key.public_key.raw)

    def votes(self, header: Header) -> list[Vote]:
        """What this validator broadcasts for ``header`` (faults change it); nothing when
        it is not in the set that certifies ``header``."""
        idx = self.vote_index()
        faults = self.faults
        if idx is None or "silent" in faults:
            return []
        honest = sign_vote(self.key, header, idx)
        forged = replace(header, state_root=bytes(32))
        if "wrong-root" in faults:
            votes = [sign_vote(self.key, forged, idx)]
        elif "equivocate" in faults:
            votes = [honest, sign_vote(self.key, forged, idx)]
        elif "garbage" in faults:
            votes = [Vote(header.chain_id, header.height, header.hash, idx, os.urandom(3309))]
        else:
            votes = [honest]
        if "relabel" in faults:
            votes += self._relabelled(header)
        if "far-future" in faults:
            ahead = replace(header, height=header.height + FAR_AHEAD)
            votes += [sign_vote(self.key, ahead, idx), replace(honest, height=header.height + FAR_AHEAD)]
        return votes

    @property
    def faults(self) -> frozenset[str]:
        """The faults in force (``fault`` may name several, comma-separated)."""
        return frozenset(self.fault.split(",")) if self.fault else frozenset()

    def _relabelled(self, header: Header) -> list[Vote]:
        """The parent's certificate votes (real signatures of the others) relabelled as
        votes at ``header.height``: for the parent's header, and for this one."""
        parent = self.store.block(header.height - 1)
        if parent is None:
            return []
        cert = Certificate.decode(parent.cert)
        return [Vote(header.chain_id, header.height, h, i, sig)
                for i, sig in cert.votes for h in (cert.header_hash, header.hash)]

    def ticks(self, time_ms: int) -> list[Tick]:
        """The ticks this validator puts in the log at its clock's ``time_ms`` (faults
        change them); none when it is not in the current validator set."""
        if self.vote_index() is None or "silent" in self.faults:
            return []
        chain = self.app.chain_id
        if "forge-tick" not in self.faults:
            return [sign_tick(self.key, chain, time_ms)]
        ahead = sign_tick(self.key, chain, time_ms + CENTURY_MS)
        others = [address_of(a, pk) for a, pk in self.app.validator_keys()
                  if address_of(a, pk) != self.key.address]
        # in another validator's name (its own signature, so it verifies under nothing)
        impersonated = [replace(ahead, signer=others[0])] if others else []
        return [ahead, *impersonated, sign_tick(self.key, "another-chain", time_ms + CENTURY_MS)]

    def finalize(self, cert: Certificate) -> bool:
        """Store the pending block under ``cert`` if it certifies our header.

        Returns False (and drops the block) when the certified header is not ours: this
        validator diverged and must catch up from a peer's certified blocks.
        """
        if self._pending is None:
            raise BlockError("no pending block")
        header, result, blk = self._pending
        self._pending = None
        if cert.header_hash != header.hash:
            self.app.discard()
            self.diverged = True
            return False
        self.app.commit()
        self.last_result = result
        snapshot = self.snapshot_after(header.height)
        self.store.append_block(header.height, header.encode(), blk.txs,
                                result.encode_receipts(), cert.encode(), blk.log_end, snapshot,
                                result.index_entries())
        self.log_end = blk.log_end
        return True

    def snapshot_after(self, height: int) -> bytes | None:
        """The encoded state to store with the block just committed at ``height``, or None:
        every ``snapshot_every``-th block and every block that wrote ``SNAPSHOT_WRITES`` keys
        or more and at least 1/``SNAPSHOT_STATE_SHARE`` of the state's keys (never when
        ``snapshot_every`` is 0)."""
        writes = self.app.last_writes
        heavy = (writes >= SNAPSHOT_WRITES
                 and writes * SNAPSHOT_STATE_SHARE >= len(self.app.state))
        if not self.snapshot_every or (height % self.snapshot_every and not heavy):
            return None
        return encode_snapshot(self.app.state.snapshot_items())

    @property
    def store_path(self) -> Path:
        """This validator's store file."""
        return self.store.path

    @property
    def last_hash(self) -> bytes:
        """The hash of the last block this validator committed."""
        return self.app.last_hash

    def state_root(self) -> bytes:
        return self.app.state.root()

    def add_evidence(self, height: int, kind: str, body: dict[str, Any]) -> None:
        """Record evidence (equivocation, faults) in this validator's store."""
        self.store.add_evidence(height, kind, body)

    def abandon(self) -> None:
        """Drop the pending block (no certificate formed: the chain halts here)."""
        self._pending = None
        self.app.discard()

    def close(self) -> None:
        self.store.close()
