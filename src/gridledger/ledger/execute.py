"""Block execution: ``apply_block(state, ctx, txs, modules) -> BlockResult``.

Pure and deterministic: integers only, explicit context, sorted iteration. Each transaction
runs inside a state snapshot. Envelope failures (wrong chain, unknown sender, bad signature,
bad nonce, unknown kind) change nothing at all. A body failure (e.g. insufficient funds)
rolls the body back but consumes the nonce, so a transaction that failed can never be
replayed later, when it might succeed against the sender's wishes. After the block, every
module invariant runs; a violation aborts the block (the validator will not sign it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gridledger.crypto.merkle import merkle_root
from gridledger.crypto.sig import check_alg, verify_signature
from gridledger.errors import (
    BadSignature,
    NonceGap,
    RejectedTx,
    ReplayedNonce,
    Unauthorized,
    UnknownKind,
    WrongChain,
)
from gridledger.ledger import codec
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules import Handler, Module
from gridledger.ledger.modules.registry.keeper import require_participant
from gridledger.ledger.state import State
from gridledger.ledger.tx import TX_CONTEXT, Tx, decode_tx

NONCE = b"auth/nonce/"
SigCheck = Callable[[Tx, str, bytes], bool]


@dataclass(frozen=True)
class Receipt:
    tx_hash: bytes
    ok: bool
    rule: str = ""
    detail: str = ""
    events: tuple[dict[str, Any], ...] = ()

    def to_obj(self) -> dict[str, Any]:
        return {"tx": self.tx_hash, "ok": self.ok, "rule": self.rule, "detail": self.detail,
                "events": list(self.events)}


@dataclass
class BlockResult:
    receipts: list[Receipt]
    block_events: list[dict[str, Any]] = field(default_factory=list)

    def encode_receipts(self) -> bytes:
        return codec.encode({"txs": [r.to_obj() for r in self.receipts],
                             "block": self.block_events})

    @property
    def receipts_root(self) -> bytes:
        leaves = [codec.encode(r.to_obj()) for r in self.receipts]
        leaves.append(codec.encode(self.block_events))
        return merkle_root(leaves)


def next_nonce(state: State, addr: bytes) -> int:
    return state.get_int(NONCE + addr)


def default_sig_check(tx: Tx, alg: str, pk: bytes) -> bool:
    return verify_signature(alg, pk, tx.signing_bytes, tx.sig, TX_CONTEXT)


def check_envelope(state: State, chain_id: str, tx: Tx, sig_check: SigCheck) -> dict[str, Any]:
    """The ante checks shared by admission and execution, in the documented order.

    Returns the sender's registry record. Raises the ``RejectedTx`` naming the rule.
    """
    if tx.chain_id != chain_id:
        raise WrongChain(f"transaction is for chain {tx.chain_id!r}, this is {chain_id!r}")
    check_alg(tx.alg)  # ClassicalKey before anything touches the signature
    participant = require_participant(state, tx.sender)
    if participant.get("status", "active") == "removed":
        raise Unauthorized("participant was removed")
    if tx.alg != participant["alg"] or not sig_check(tx, participant["alg"], participant["pk"]):
        raise BadSignature(f"signature does not verify under the key registered for "
                           f"{tx.sender.hex()[:16]}…")
    check_nonce(tx.nonce, next_nonce(state, tx.sender))
    return participant


def check_nonce(nonce: int, expected: int) -> None:
    """Replay protection: each sender's nonces are used once, in order."""
    if nonce < expected:
        raise ReplayedNonce(f"nonce {nonce} already used (next is {expected})")
    if nonce > expected:
        raise NonceGap(f"nonce {nonce} skips ahead (next is {expected})")


def route(modules: Sequence[Module]) -> dict[str, tuple[Module, Handler]]:
    table: dict[str, tuple[Module, Handler]] = {}
    for m in modules:
        for kind, h in m.handlers.items():
            if kind in table:
                raise ValueError(f"kind {kind} registered twice")
            table[kind] = (m, h)
    return table


def apply_tx(state: State, ctx: BlockContext, raw: bytes, table: Mapping[str, tuple[Module, Handler]],
             sig_check: SigCheck, reject_hooks: Sequence[Module] = ()) -> Receipt:
    """Apply one ordered transaction; never raises for a bad transaction."""
    try:
        tx = decode_tx(raw)
    except RejectedTx as exc:
        from gridledger.crypto.hashing import sha3_256

        return Receipt(sha3_256(raw), False, exc.rule, exc.detail)
    try:
        participant = check_envelope(state, ctx.chain_id, tx, sig_check)
        if tx.kind not in table:
            raise UnknownKind(f"no module handles kind {tx.kind!r}")
    except RejectedTx as exc:
        return Receipt(tx.id, False, exc.rule, exc.detail)
    module, handler = table[tx.kind]
    tctx = TxContext(ctx, tx.sender, tx.id, tx.kind)  # ids from tx.id: deterministic
    state.set_int(NONCE + tx.sender, tx.nonce + 1)  # consumed whatever the body does
    state.begin()
    try:
        allowed = module.roles.get(tx.kind)
        if allowed is not None and not allowed.intersection(participant["roles"]):
            raise Unauthorized(f"kind {tx.kind} needs one of the roles {sorted(allowed)}")
        handler(state, tctx, tx.body)
    except RejectedTx as exc:
        state.rollback()
        for m in reject_hooks:  # e.g. reputation: rejected transactions cost score
            m.on_rejected(state, tctx, exc.rule)  # type: ignore[misc]
        return Receipt(tx.id, False, exc.rule, exc.detail)
    state.commit()
    return Receipt(tx.id, True, events=tuple(tctx.events))


def apply_block(state: State, ctx: BlockContext, raw_txs: Sequence[bytes],
                modules: Sequence[Module], sig_check: SigCheck = default_sig_check,
                check_invariants: bool = True) -> BlockResult:
    """Execute an ordered block against ``state`` (mutated in place).

    ``sig_check`` lets a validator reuse signatures it already verified (admission or a
    parallel batch); it must be a pure function of (tx, alg, pk).
    """
    table = route(modules)
    block_events: list[dict[str, Any]] = []
    for m in modules:
        if m.begin_block is not None:
            m.begin_block(state, ctx, block_events)
    hooks = [m for m in modules if m.on_rejected is not None]
    receipts = [apply_tx(state, ctx, raw, table, sig_check, hooks) for raw in raw_txs]
    for m in modules:
        if m.end_block is not None:
            m.end_block(state, ctx, block_events)
    if check_invariants:
        run_invariants(state, modules)
    return BlockResult(receipts, block_events)


def run_invariants(state: State, modules: Sequence[Module]) -> None:
    """Run every module invariant; raises ``InvariantViolation`` naming the first broken one."""
    for m in modules:
        for inv in m.invariants:
            inv(state)
