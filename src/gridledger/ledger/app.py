"""The ABCI-shaped application: ``check_tx`` / ``finalize_block`` / ``commit`` / ``query``.

This is the one boundary between the replicated state machine and whatever orders
transactions (the embedded orderer, NATS JetStream, or later CometBFT). It holds state and
the chain tip; everything else (networking, storage, clocks) lives in ``gridledger.node``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridledger.errors import BlockError, GridLedgerError
from gridledger.ledger import codec
from gridledger.ledger.block import Header, tx_root
from gridledger.ledger.context import BlockContext
from gridledger.ledger.execute import (
    BlockResult,
    SigCheck,
    apply_block,
    check_envelope,
    default_sig_check,
    run_invariants,
)
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules import Module
from gridledger.ledger.modules.registry.keeper import keys_hash, validator_keys
from gridledger.ledger.state import State
from gridledger.ledger.tx import Tx, decode_tx


def default_modules() -> list[Module]:
    """Every module of the current chain version, in execution order."""
    from gridledger.ledger.modules import catalog

    return catalog.modules()


class Application:
    """One validator's replicated state machine."""

    def __init__(self, genesis: Genesis, modules: Sequence[Module] | None = None,
                 state: State | None = None, height: int = 0, last_hash: bytes | None = None,
                 slot_time: int = 0) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.modules = list(modules) if modules is not None else default_modules()
        if state is None:
            state = State()
            for m in self.modules:
                if m.init_genesis is not None:
                    m.init_genesis(state, genesis.doc)
            run_invariants(state, self.modules)
        self.state = state
        self.height = height
        self.last_hash = last_hash if last_hash is not None else genesis.hash
        self.slot_time = slot_time
        self._pending: tuple[Header, BlockResult] | None = None
        self._pending_keys: list[tuple[str, bytes]] | None = None

    # -- ABCI ----------------------------------------------------------------
    def check_tx(self, raw: bytes, sig_check: SigCheck = default_sig_check) -> Tx:
        """Stateless and stateful checks against committed state; raises ``RejectedTx``."""
        tx = decode_tx(raw)
        check_envelope(self.state, self.chain_id, tx, sig_check)
        return tx

    def validator_keys(self) -> list[tuple[str, bytes]]:
        """(alg, pk) of the validators that certify the next block to commit, in vote-index
        order: the set in the committed state, or, while a block is pending, the set its
        header names (the state before the block; changes the block makes to the set
        certify later blocks only)."""
        if self._pending_keys is not None:
            return list(self._pending_keys)
        return validator_keys(self.state)

    def vote_index(self, alg: str, pk: bytes) -> int | None:
        """The index of key ``(alg, pk)`` in ``validator_keys()`` (None: not a validator)."""
        try:
            return self.validator_keys().index((alg, pk))
        except ValueError:
            return None

    def finalize_block(self, raw_txs: Sequence[bytes], slot_time: int,
                       sig_check: SigCheck = default_sig_check) -> tuple[Header, BlockResult]:
        """Execute the next block; the result stays pending until ``commit`` or ``discard``."""
        if self._pending is not None:
            raise BlockError("a block is already pending")
        if slot_time < self.slot_time:
            raise BlockError(f"slot_time {slot_time} goes backwards from {self.slot_time}")
        keys = validator_keys(self.state)
        valset = keys_hash(keys)
        ctx = BlockContext(self.chain_id, self.height + 1, slot_time)
        self.state.begin()
        try:
            result = apply_block(self.state, ctx, raw_txs, self.modules, sig_check)
        except GridLedgerError:
            self.state.rollback()
            raise
        header = Header(self.chain_id, self.height + 1, self.last_hash, slot_time,
                        tx_root(raw_txs), self.state.root(), result.receipts_root, valset)
        self._pending = (header, result)
        self._pending_keys = keys
        return header, result

    def commit(self) -> Header:
        """Make the pending block part of this validator's state."""
        if self._pending is None:
            raise BlockError("nothing to commit")
        header, _ = self._pending
        self.state.commit()
        self.height, self.last_hash, self.slot_time = header.height, header.hash, header.slot_time
        self._pending = None
        self._pending_keys = None
        return header

    def discard(self) -> None:
        """Drop the pending block (it did not gather a certificate for our header)."""
        if self._pending is not None:
            self.state.rollback()
            self._pending = None
            self._pending_keys = None

    def query(self, path: str) -> Any:
        """Read-only queries: ``balance/<addr>``, ``nonce/<addr>``, ``participant/<addr>``,
        ``proof/<key hex>``, ``state_root``, ``height``, ``validators`` (active set and
        open validator-set proposals)."""
        from gridledger.ledger.modules.bank import keeper as bank
        from gridledger.ledger.execute import next_nonce
        from gridledger.ledger.modules.registry.keeper import get_participant

        head, _, arg = path.partition("/")
        if head == "height":
            return self.height
        if head == "validators":
            from gridledger.ledger.modules.governance.keeper import valset_view

            return valset_view(self.state)
        if head == "state_root":
            return self.state.root()
        if head == "proof":
            return self.state.prove(bytes.fromhex(arg))
        if head == "raw":
            raw = self.state.get(bytes.fromhex(arg))
            return None if raw is None else codec.decode(raw)
        addr = bytes.fromhex(arg)
        if head == "balance":
            return {"balance_micro": bank.balance(self.state, addr),
                    "locked_micro": bank.locked(self.state, addr)}
        if head == "nonce":
            return next_nonce(self.state, addr)
        if head == "participant":
            return get_participant(self.state, addr)
        raise KeyError(f"unknown query {head!r}")
