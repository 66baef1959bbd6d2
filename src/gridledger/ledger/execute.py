"""Block execution: ``apply_block(state, ctx, txs, modules) -> BlockResult``.

Pure and deterministic: integers only, explicit context, sorted iteration. Per transaction::

    decode ─ envelope (chain, algorithm, sender, signature, nonce) ─ kind ─┐   nothing changes
    ┌──────────────────────────────────────────────────────────────────────┘   if these fail
    nonce consumed ─ snapshot ─ role ─ parse_<kind>(body) ─ handler ─ commit
                                    └─ rule broken: roll back, on_rejected hooks, receipt
                                    └─ any other exception: roll back, receipt internal-error

A body failure keeps the nonce consumed, so a transaction that failed can never be replayed
later, when it might succeed against the sender's wishes. ``check_tx`` (admission) runs the
same envelope checks and the same stateless ``parse_<kind>``: what admission accepts,
execution cannot refuse for a reason admission could have seen. After the block, every
module invariant runs; a violation or a failing block hook aborts the block (the validator
does not sign it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gridledger.crypto.hashing import sha3_256
from gridledger.crypto.merkle import merkle_root
from gridledger.crypto.sig import check_alg, verify_signature
from gridledger.errors import (
    BadSignature,
    BlockAborted,
    GridLedgerError,
    InternalError,
    NonceGap,
    RejectedTx,
    ReplayedNonce,
    Unauthorized,
    UnknownKind,
    UnknownSender,
    WrongChain,
)
from gridledger.ledger import codec
from gridledger.ledger.committee import COMMITTEE_ALG, parse_committee, verify_committee
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.module import Accounts, Module, MsgKind, Scoped, Signer
from gridledger.ledger.state import State
from gridledger.ledger.tx import TX_CONTEXT, Tx, decode_tx
from gridledger.ledger.upgrades import Activation, activate

NONCE = b"auth/nonce/"
SigCheck = Callable[[Tx, str, bytes], bool]
MACHINE_FAULTS = (MemoryError, RecursionError)
"""Exceptions that depend on the machine, not on the transaction: they abort the block
(the validator does not sign) instead of becoming a receipt another validator might not
write."""


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


_RECEIPTS_HEAD = b"\xa2" + codec.encode("txs")   # the 2-entry map's head and first key
_BLOCK_KEY = codec.encode("block")   # "txs" sorts before "block" (shorter keys first)


def _array_head(n: int) -> bytes:
    """The canonical CBOR head of an array of ``n`` items (major type 4, the argument in
    its shortest form: RFC 8949 §3 and §4.2.1)."""
    if n < 24:
        return bytes([0x80 + n])
    size = 1 if n < 2**8 else 2 if n < 2**16 else 4 if n < 2**32 else 8
    return bytes([0x98 + size.bit_length() - 1]) + n.to_bytes(size, "big")


@dataclass
class BlockResult:
    """A block's receipts (one per transaction, in order) and its block-level events.

    Each receipt is encoded once (``leaves``): the stored receipts (``encode_receipts``)
    and the header's ``receipts_root`` are made of the same bytes — encoding every receipt
    twice was ~2 % of a replayed block's CPU (issue 17)."""

    receipts: list[Receipt]
    block_events: list[dict[str, Any]] = field(default_factory=list)
    _leaves: tuple[int, list[bytes]] | None = field(default=None, init=False, repr=False,
                                                    compare=False)

    def leaves(self) -> list[bytes]:
        """Canonical CBOR of each receipt's ``to_obj()``, then of ``block_events``."""
        n = len(self.receipts)
        if self._leaves is None or self._leaves[0] != n:
            self._leaves = (n, [codec.encode(r.to_obj()) for r in self.receipts])
        return [*self._leaves[1], codec.encode(self.block_events)]

    def encode_receipts(self) -> bytes:
        """``codec.encode({"txs": [r.to_obj() …], "block": block_events})``, byte for byte:
        a canonical map's bytes are its head, then each key's and value's bytes in key
        order, and an array's are its head and its items' bytes."""
        *txs, block = self.leaves()
        return b"".join((_RECEIPTS_HEAD, _array_head(len(txs)), *txs, _BLOCK_KEY, block))

    def index_entries(self) -> list[tuple[bytes, bool]]:
        """(transaction id, ok) of each receipt, in order: ``node.store.index_entries`` of
        ``encode_receipts()``, without decoding it."""
        return [(r.tx_hash, r.ok) for r in self.receipts]

    @property
    def receipts_root(self) -> bytes:
        return merkle_root(self.leaves())


def next_nonce(state: State, addr: bytes) -> int:
    """The nonce ``addr``'s next transaction must carry (0 for a new identity)."""
    return state.get_int(NONCE + addr)


def forget_nonce(state: State, addr: bytes) -> None:
    """Drop ``addr``'s nonce: only for an identity that can never sign again (a retired
    pseudonym or its reading key, whose address the ledger refuses to register again)."""
    state.delete(NONCE + addr)


def default_sig_check(tx: Tx, alg: str, pk: bytes) -> bool:
    """Whether ``tx.sig`` verifies under the single ML-DSA key ``(alg, pk)`` (False for a
    committee descriptor, which ``authenticate`` checks member by member)."""
    if alg == COMMITTEE_ALG:
        return False
    return verify_signature(alg, pk, tx.signing_bytes, tx.sig, TX_CONTEXT)


def accounts_of(modules: Sequence[Module]) -> Accounts:
    """The ``Accounts`` the chain's modules provide (exactly one module provides it)."""
    found = [m.accounts for m in modules if m.accounts is not None]
    if len(found) != 1:
        raise ValueError(f"exactly one module must provide accounts, found {len(found)}")
    return found[0]


def single_key(signer: Signer) -> bool:
    """Whether ``signer`` signs with one ML-DSA key (so ``SigCheck`` and signature pools
    apply); False for a k-of-n committee, whose member signatures ``authenticate`` checks."""
    return signer.alg != COMMITTEE_ALG


def authenticate(tx: Tx, signer: Signer, sig_check: SigCheck) -> None:
    """The sender's signature check, the one place it happens (admission runs it too).

    A single-key sender: ``sig_check`` under its registered key. A committee sender
    (``ledger.committee``: k of n member keys, e.g. a DSO run by several nodes): k or more
    distinct members' valid signatures; rules ``committee-signature``, ``unknown-member``,
    ``duplicate-signer``, ``bad-signature``, ``committee-threshold``.
    """
    if tx.alg != signer.alg:
        raise BadSignature(f"the envelope's algorithm is not the one registered for "
                           f"{tx.sender.hex()[:16]}…")
    if not single_key(signer):
        verify_committee(parse_committee(signer.pk), tx.signing_bytes, tx.sig, TX_CONTEXT)
        return
    if not sig_check(tx, signer.alg, signer.pk):
        raise BadSignature(f"signature does not verify under the key registered for "
                           f"{tx.sender.hex()[:16]}…")


def check_envelope(state: State, chain_id: str, tx: Tx, sig_check: SigCheck,
                   accounts: Accounts) -> Signer:
    """The ante checks shared by admission and execution, in the documented order.

    Returns the sender's record. Raises the ``RejectedTx`` naming the rule: wrong-chain,
    classical-key / unknown-algorithm, unknown-sender, bad-signature, replayed-nonce /
    nonce-gap.
    """
    check_stateless_envelope(chain_id, tx)
    signer = require_signer(state, accounts, tx.sender)
    authenticate(tx, signer, sig_check)
    check_nonce(tx.nonce, next_nonce(state, tx.sender))
    return signer


def require_signer(state: State, accounts: Accounts, sender: bytes) -> Signer:
    """The sender's record; ``unknown-sender`` if it is not registered."""
    signer = accounts.signer(state, sender)
    if signer is None:
        raise UnknownSender(f"{sender.hex()[:16]}… is not a registered participant")
    return signer


def check_stateless_envelope(chain_id: str, tx: Tx) -> None:
    """The envelope checks that need no state: chain id, then the algorithm name
    (``classical-key`` / ``unknown-algorithm`` before anything touches the signature)."""
    if tx.chain_id != chain_id:
        raise WrongChain(f"transaction is for chain {tx.chain_id[:64]!r}, this is {chain_id!r}")
    if tx.alg != COMMITTEE_ALG:
        check_alg(tx.alg)


def check_nonce(nonce: int, expected: int) -> None:
    """Replay protection: each sender's nonces are used once, in order."""
    if nonce < expected:
        raise ReplayedNonce(f"nonce {nonce} already used (next is {expected})")
    if nonce > expected:
        raise NonceGap(f"nonce {nonce} skips ahead (next is {expected})")


def route(modules: Sequence[Module]) -> dict[str, MsgKind[Any]]:
    """Kind -> its ``MsgKind``; a kind registered twice is a wiring defect."""
    table: dict[str, MsgKind[Any]] = {}
    for m in modules:
        for spec in m.kinds():
            if spec.kind in table:
                raise ValueError(f"kind {spec.kind} registered twice")
            table[spec.kind] = spec
    return table


def parse_body(table: Mapping[str, MsgKind[Any]], tx: Tx) -> tuple[MsgKind[Any], Any]:
    """The kind's spec and its parsed message; ``unknown-kind`` or the parse rule."""
    spec = table.get(tx.kind)
    if spec is None:
        raise UnknownKind(f"no module handles kind {tx.kind[:64]!r}")
    return spec, spec.parse(tx.body)


def internal_error(exc: Exception, kind: str) -> InternalError:
    """The ``internal-error`` rejection for an unexpected exception: it names the exception
    type and the kind only (a message could differ between machines or versions)."""
    return InternalError(f"{type(exc).__name__} in {kind[:64]}")


def apply_tx(state: State, ctx: BlockContext, raw: bytes, table: Mapping[str, MsgKind[Any]],
             sig_check: SigCheck, accounts: Accounts,
             reject_hooks: Sequence[Module] = ()) -> Receipt:
    """Apply one ordered transaction; never raises for a bad or faulty transaction."""
    try:
        tx = decode_tx(raw)
    except RejectedTx as exc:
        return Receipt(sha3_256(raw), False, exc.rule, exc.detail)
    try:
        signer = check_envelope(state, ctx.chain_id, tx, sig_check, accounts)
        spec = table.get(tx.kind)
        if spec is None:
            raise UnknownKind(f"no module handles kind {tx.kind[:64]!r}")
    except RejectedTx as exc:
        return Receipt(tx.id, False, exc.rule, exc.detail)
    except MACHINE_FAULTS:
        raise
    except Exception as exc:  # a defect before the body: nothing was written
        err = internal_error(exc, tx.kind)
        return Receipt(tx.id, False, err.rule, err.detail)
    tctx = TxContext(ctx, tx.sender, tx.id, tx.kind)  # ids from tx.id: deterministic
    state.set_int(NONCE + tx.sender, tx.nonce + 1)  # consumed whatever the body does
    state.begin()
    try:
        if spec.roles is not None and not spec.roles.intersection(signer.roles):
            raise Unauthorized(f"kind {tx.kind} needs one of the roles {sorted(spec.roles)}")
        spec.handle(state, tctx, spec.parse(tx.body))
    except RejectedTx as exc:
        state.rollback()
        _run_reject_hooks(state, tctx, exc.rule, reject_hooks)
        return Receipt(tx.id, False, exc.rule, exc.detail)
    except MACHINE_FAULTS:
        state.rollback()
        raise
    except Exception as exc:  # a defect in a handler: contained to this transaction
        state.rollback()
        err = internal_error(exc, tx.kind)
        return Receipt(tx.id, False, err.rule, err.detail)
    state.commit()
    return Receipt(tx.id, True, events=tuple(tctx.events))


def _run_reject_hooks(state: State, tctx: TxContext, rule: str, hooks: Sequence[Module]) -> None:
    """Run ``on_rejected`` hooks (e.g. reputation: failed transactions cost score). A hook
    that fails is rolled back on its own: the receipt stands, the block goes on."""
    for m in hooks:
        if m.on_rejected is None:
            continue
        state.begin()
        try:
            m.on_rejected(state, tctx, rule)
        except MACHINE_FAULTS:
            state.rollback()
            raise
        except Exception:
            state.rollback()
        else:
            state.commit()


def apply_block(state: State, ctx: BlockContext, raw_txs: Sequence[bytes],
                modules: Sequence[Module], sig_check: SigCheck = default_sig_check,
                check_invariants: bool = True, activations: Sequence[Activation] = (),
                versions_before: Mapping[str, int] | None = None) -> BlockResult:
    """Execute an ordered block against ``state`` (mutated in place).

    ``sig_check`` lets a validator reuse signatures it already verified (admission or a
    parallel batch); it must be a pure function of (tx, alg, pk). ``activations``: module
    upgrades that activate in this block (``modules`` are already the new versions); their
    migrations run first, then everything else (``ledger.upgrades.activate``).

    Raises:
        BlockAborted: a begin/end-block hook raised; ``InvariantViolation``: an invariant
            failed. Either way the caller rolls the block back and does not sign it.
    """
    table = route(modules)
    accounts = accounts_of(modules)
    block_events: list[dict[str, Any]] = []
    if activations:
        _run_migrations(state, ctx, activations, versions_before or {}, modules, block_events)
    for m in modules:
        if m.begin_block is not None:
            _run_block_hook(m.name, "begin_block", m.begin_block, state, ctx, block_events)
    hooks = [m for m in modules if m.on_rejected is not None]
    receipts = [apply_tx(state, ctx, raw, table, sig_check, accounts, hooks) for raw in raw_txs]
    for m in modules:
        if m.end_block is not None:
            _run_block_hook(m.name, "end_block", m.end_block, state, ctx, block_events)
    if check_invariants:
        run_invariants(state, modules, scoped=not activations)
    return BlockResult(receipts, block_events)


def _run_migrations(state: State, ctx: BlockContext, activations: Sequence[Activation],
                    versions_before: Mapping[str, int], modules: Sequence[Module],
                    events: list[dict[str, Any]]) -> None:
    try:
        activate(state, ctx, activations, versions_before, modules, events)
    except MACHINE_FAULTS:
        raise
    except Exception as exc:
        names = ", ".join(f"{a.module} v{a.version}" for a in activations)
        raise BlockAborted(f"migration to {names} at height {ctx.height}: "
                           f"{type(exc).__name__}") from exc


def _run_block_hook(module: str, which: str,
                    hook: Callable[[State, BlockContext, list[dict[str, Any]]], None],
                    state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
    try:
        hook(state, ctx, events)
    except MACHINE_FAULTS:
        raise
    except GridLedgerError as exc:
        if isinstance(exc, BlockAborted):
            raise
        raise BlockAborted(f"{module}.{which} at height {ctx.height}: {type(exc).__name__}: "
                           f"{exc}") from exc
    except Exception as exc:
        raise BlockAborted(f"{module}.{which} at height {ctx.height}: "
                           f"{type(exc).__name__}") from exc


def run_invariants(state: State, modules: Sequence[Module], *, scoped: bool = True) -> None:
    """Run every module invariant; raises ``InvariantViolation`` naming the first broken one.

    Inside a block (``State.block_writes``), a ``Scoped`` invariant runs only if the block
    wrote a key under one of its prefixes (``scoped=False``: every invariant runs — a block
    that activates an upgrade may bring invariants its prior state was never checked
    against)."""
    # inside a block: ``wrote_under`` answers (None: no transaction open, check everything)
    inside = scoped and state.wrote_under(()) is not None
    for m in modules:
        for inv in m.invariants:
            if inside and isinstance(inv, Scoped) and not state.wrote_under(inv.reads):
                continue
            inv(state)
