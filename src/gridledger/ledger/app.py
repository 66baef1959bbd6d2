"""The ABCI-shaped application: ``check_tx`` / ``finalize_block`` / ``commit`` / ``query``.

This is the one boundary between the replicated state machine and whatever orders
transactions (the embedded orderer, NATS JetStream, or later CometBFT). It holds state and
the chain tip; everything else (networking, storage, clocks) lives in ``gridledger.node``.

Between ``finalize_block`` and ``commit`` the executed block is kept aside (``State.detach``):
``state``, ``query`` and ``check_tx`` see the last committed (certified) state only, as
ABCI's Query does, never a block that has not gathered its certificate (replaying certified
blocks, where nothing reads in between, skips that: ``finalize_block(set_aside=False)``).
The block is set aside when the committed state is first read (``Application.state``), not
at ``finalize_block``: a validator that votes and commits without reading it in between
never undoes and redoes the block's writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from gridledger import memo
from gridledger.errors import BlockAborted, BlockError, GridLedgerError, RejectedTx
from gridledger.ledger import codec, upgrades
from gridledger.ledger.block import Header, tx_root
from gridledger.ledger.context import BlockContext
from gridledger.ledger.execute import (
    MACHINE_FAULTS,
    BlockResult,
    SigCheck,
    accounts_of,
    apply_block,
    authenticate,
    check_envelope,
    check_nonce,
    check_stateless_envelope,
    default_sig_check,
    internal_error,
    next_nonce,
    parse_body,
    require_signer,
    route,
    run_invariants,
)
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.module import History, HistoryView, Module, Signer, View
from gridledger.ledger.modules.catalog import DEFAULT as DEFAULT_CATALOG
from gridledger.ledger.modules.catalog import Catalog, Release, VersionUnavailable
from gridledger.ledger.rules import Rule, chain_rules
from gridledger.ledger.state import Detached, State
from gridledger.ledger.tx import Tx, decode_tx
from gridledger.ledger.upgrades import active_versions, genesis_versions
from gridledger.ledger.valset import keys_hash

CommitListener = Callable[[Header, Sequence[bytes]], None]
"""Called after a block is committed, with its header and raw transactions (in order)."""


class Application:
    """One validator's replicated state machine."""

    def __init__(self, genesis: Genesis, modules: Sequence[Module] | None = None,
                 state: State | None = None, height: int = 0, last_hash: bytes | None = None,
                 slot_time: int = 0, catalog: Catalog | None = None) -> None:
        """``modules``: a fixed module list (tests); by default the catalog builds the
        versions the state names (``ledger.upgrades``), and rebuilds them at every
        upgrade's activation height. ``catalog``: the module versions this node can run."""
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.catalog = catalog if catalog is not None else DEFAULT_CATALOG
        self._fixed = modules is not None
        self.genesis_versions = genesis_versions(genesis.doc, self.catalog.genesis_defaults())
        if modules is None:
            current = (self.genesis_versions if state is None
                       else active_versions(state, self.genesis_versions))
            modules = self.catalog.build(current)
        self._install(modules)
        if state is None:
            state = State()
            for m in self.modules:
                if m.init_genesis is not None:
                    m.init_genesis(state, genesis.doc)
            run_invariants(state, self.modules)
        self._state = state
        self.height = height
        self.last_hash = last_hash if last_hash is not None else genesis.hash
        self.slot_time = slot_time
        # (header, result, txs, the block's writes set aside — None: still in ``state``)
        self._pending: tuple[Header, BlockResult, tuple[bytes, ...], Detached | None] | None = None
        # the pending block is to be set aside, and still is in ``_state``'s open
        # transaction: it is detached at the first read of ``state`` (``_set_aside``). A
        # node's API threads admit transactions while its block awaits votes, so setting
        # aside, commit and discard take ``_aside_lock``.
        self._aside_due = False
        self._aside_lock = threading.Lock()
        self._pending_keys: list[tuple[str, bytes]] | None = None
        self._pending_modules: list[Module] | None = None
        self._listeners: list[CommitListener] = []
        # how many state keys the last committed block wrote (set or deleted): a node
        # snapshots after a block that wrote many (``node.validator.SNAPSHOT_WRITES``)
        self.last_writes = 0
        self.history: History | None = None
        """The node's stored block events (``node.store.StoreHistory``), for views of records
        a rule moved out of state (the certificates archive); None: only state is read."""

    @property
    def state(self) -> State:
        """The committed state (never a pending block's writes).

        A block finalized with ``set_aside=True`` stays in the state's open transaction
        until this is first read; it is detached then (``State.detach``), exactly as
        ``finalize_block`` would have done (nothing writes the state in between: every
        write goes through this attribute). A validator whose block is committed without a
        read in between never undoes and redoes the block's writes — ~10 % of a block's
        execution, paid by every validator (issue 17, fourteenth session). Read it through
        the attribute each time; a reference kept across ``finalize_block`` sees the block."""
        if self._aside_due:
            self._set_aside()
        return self._state

    def _set_aside(self) -> None:
        """Take the pending block's writes out of the state (``State.detach``), if they are
        still due to be."""
        with self._aside_lock:
            if not self._aside_due:
                return   # another thread set it aside, or it was committed meanwhile
            assert self._pending is not None
            header, result, raw_txs, _ = self._pending
            self._pending = (header, result, raw_txs, self._state.detach())
            self._aside_due = False

    def _install(self, modules: Sequence[Module]) -> None:
        self.modules = list(modules)
        self.accounts = accounts_of(self.modules)
        self._table = route(self.modules)
        self._views: dict[str, View] = {f"{m.name}/{name}": v for m in self.modules
                                        for name, v in m.views.items()}
        for m in self.modules:
            for name, hv in m.history_views.items():
                self._views[f"{m.name}/{name}"] = self._with_history(hv)

    def _with_history(self, view: HistoryView) -> View:
        return lambda state, arg: view(state, self.history, arg)

    def versions(self) -> dict[str, int]:
        """``{module: version}`` of the modules executing the next block's transactions."""
        return {m.name: m.version for m in self.modules}

    def install_release(self, release: Release) -> None:
        """Make a module version outside this build available (what a node operator does
        before reviewing and voting on an upgrade to it)."""
        self.catalog = self.catalog.with_release(release)

    # -- ABCI ----------------------------------------------------------------
    def check_tx(self, raw: bytes, sig_check: SigCheck = default_sig_check,
                 expected_nonce: int | None = None) -> Tx:
        """Admission's checks, exactly execution's: decoding, the envelope (chain,
        algorithm, sender, signature, nonce) against committed state, the kind, and the
        kind's stateless ``parse_<kind>``. ``expected_nonce`` replaces the committed
        state's next nonce (a mempool counts what it already holds). Raises ``RejectedTx``.
        """
        tx = decode_tx(raw)
        if expected_nonce is None:
            check_envelope(self.state, self.chain_id, tx, sig_check, self.accounts)
        else:
            check_stateless_envelope(self.chain_id, tx)
            self.check_signed(tx, sig_check)
            check_nonce(tx.nonce, expected_nonce)
        self._parse(tx)
        return tx

    def _parse(self, tx: Tx) -> None:
        try:
            parse_body(self._table, tx)
        except (RejectedTx, *MACHINE_FAULTS):
            raise
        except Exception as exc:  # a parser defect: refused as execution would fail it
            raise internal_error(exc, tx.kind) from exc

    def check_stateless(self, tx: Tx) -> None:
        """The checks that need no state: chain id, algorithm name, kind and the kind's
        body parse. Raises the ``RejectedTx`` naming the rule."""
        check_stateless_envelope(self.chain_id, tx)
        self._parse(tx)

    def signer(self, sender: bytes) -> Signer:
        """The sender's record in committed state (the key its transactions must be signed
        with now, its roles); raises ``UnknownSender``."""
        return require_signer(self.state, self.accounts, sender)

    def signer_key(self, sender: bytes) -> tuple[str, bytes]:
        """(alg, public key) the sender's transactions must be signed with now; raises
        ``UnknownSender``."""
        signer = self.signer(sender)
        return signer.alg, signer.pk

    def check_signed(self, tx: Tx, sig_check: SigCheck = default_sig_check) -> None:
        """Sender registered and signature valid under its current key (no nonce check)."""
        authenticate(tx, require_signer(self.state, self.accounts, tx.sender), sig_check)

    def next_nonce(self, sender: bytes) -> int:
        """The nonce the sender's next transaction must carry, in committed state."""
        return next_nonce(self.state, sender)

    def validator_keys(self) -> list[tuple[str, bytes]]:
        """(alg, pk) of the validators that certify the next block to commit, in vote-index
        order: the set in the committed state, or, while a block is pending, the set its
        header names (the state before the block; changes the block makes to the set
        certify later blocks only)."""
        if self._pending_keys is not None:
            return list(self._pending_keys)
        return self.accounts.validator_keys(self.state)

    def vote_index(self, alg: str, pk: bytes) -> int | None:
        """The index of key ``(alg, pk)`` in ``validator_keys()`` (None: not a validator)."""
        try:
            return self.validator_keys().index((alg, pk))
        except ValueError:
            return None

    def finalize_block(self, raw_txs: Sequence[bytes], slot_time: int,
                       sig_check: SigCheck = default_sig_check, *,
                       set_aside: bool = True) -> tuple[Header, BlockResult]:
        """Execute the next block; the result stays pending — set aside: ``state`` is still
        the committed state — until ``commit`` or ``discard``.

        ``set_aside=False`` is for replaying certified blocks (restart, verify-chain, the
        store follower, catch-up), where nothing reads the state between this call and
        ``commit`` / ``discard``: the block's writes stay in ``state`` (its open
        transaction) instead of being taken out and put back — undoing and redoing every
        write was ~5 % of a per-slot block's CPU and ~15 % of a privacy registration
        block's (issue 19). The header, result, and the state after ``commit`` or
        ``discard`` are the same either way.

        Raises (with the state rolled back to the last commit, so the validator signs
        nothing): ``BlockAborted`` when a block hook failed, ``InvariantViolation`` when an
        invariant did; ``BlockError`` when called out of turn.
        """
        if self._pending is not None:
            raise BlockError("a block is already pending")
        if slot_time < self.slot_time:
            raise BlockError(f"slot_time {slot_time} goes backwards from {self.slot_time}")
        keys = self.accounts.validator_keys(self._state)
        valset = keys_hash(keys)
        ctx = BlockContext(self.chain_id, self.height + 1, slot_time)
        activations = upgrades.due(self._state, ctx.height)
        modules = self.modules
        if activations:
            modules = self._upgraded(ctx.height, activations)
        self._state.begin()
        try:
            result = apply_block(self._state, ctx, raw_txs, modules, sig_check,
                                 activations=activations, versions_before=self.versions())
        except (GridLedgerError, *MACHINE_FAULTS):
            self._state.rollback()
            raise
        except Exception as exc:  # outside any transaction: an invariant's own defect
            self._state.rollback()
            raise BlockAborted(f"block {ctx.height}: {type(exc).__name__} outside a "
                               f"transaction") from exc
        header = Header(self.chain_id, self.height + 1, self.last_hash, slot_time,
                        tx_root(raw_txs), self._state.root(), result.receipts_root, valset)
        # set aside at the first read of ``state`` (``_set_aside``), if any before commit
        with self._aside_lock:
            self._pending = (header, result, tuple(raw_txs), None)
            self._aside_due = set_aside
        self._pending_keys = keys
        self._pending_modules = list(modules) if activations else None
        return header, result

    def _upgraded(self, height: int, activations: Sequence[upgrades.Activation]) -> list[Module]:
        """The module list with ``activations`` applied; ``BlockAborted`` (every validator
        without the new code stops here alike) when this node cannot build it."""
        if self._fixed:
            raise BlockAborted(f"block {height}: an upgrade activates but this application "
                               f"runs a fixed module list")
        versions = {**self.versions(), **{a.module: a.version for a in activations}}
        try:
            return self.catalog.build(versions)
        except VersionUnavailable as exc:
            raise BlockAborted(f"block {height}: {exc}") from exc

    def commit(self) -> Header:
        """Make the pending block part of this validator's state."""
        if self._pending is None:
            raise BlockError("nothing to commit")
        with self._aside_lock:
            header, _, raw_txs, writes = self._pending
            self._aside_due = False
            if writes is None:  # not set aside: close the block's transaction
                self.last_writes = len(self._state.block_writes() or ())
                self._state.commit()
            else:
                self._state.attach(writes)
                self.last_writes = len(writes.values)
        self.height, self.last_hash, self.slot_time = header.height, header.hash, header.slot_time
        self._pending = None
        self._pending_keys = None
        if self._pending_modules is not None:
            self._install(self._pending_modules)  # the upgraded versions from this block on
            self._pending_modules = None
        memo.advance(header.slot_time)  # the process's decode memos age by block time
        for listener in list(self._listeners):
            listener(header, raw_txs)
        return header

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener(header, raw_txs)`` after every commit (e.g. the mempool forgets
        what the block carried)."""
        self._listeners.append(listener)

    def discard(self) -> None:
        """Drop the pending block (it did not gather a certificate for our header)."""
        with self._aside_lock:
            if self._pending is None:
                return
            self._aside_due = False
            if self._pending[3] is None:  # not set aside: undo the block's writes
                self._state.rollback()
            self._pending = None
            self._pending_keys = None
            self._pending_modules = None

    def query(self, path: str) -> Any:
        """Read-only queries over committed state (plain data: ints, bytes, text, lists,
        maps). Raises ``KeyError`` for an unknown path.

        Core: ``height``, ``state_root``, ``nonce/<addr hex>``, ``proof/<key hex>``
        (``MembershipProof``; ``KeyError`` when the key is not set), ``absence/<key hex>``
        (``AbsenceProof``; ``KeyError`` when it is set), ``raw/<key hex>``.
        Every module view: ``<module>/<view>[/<arg>]`` (``views()`` lists them). Aliases
        kept for existing clients: ``balance/<addr>`` = ``bank/account/<addr>``,
        ``participant/<addr>`` = ``registry/participant/<addr>``, ``validators`` =
        ``governance/validators``.
        """
        head, _, arg = path.partition("/")
        if head == "height":
            return self.height
        if head == "state_root":
            return self.state.root()
        if head == "nonce":
            return next_nonce(self.state, bytes.fromhex(arg))
        if head == "proof":
            return self.state.prove(bytes.fromhex(arg))
        if head == "absence":
            return self.state.prove_absence(bytes.fromhex(arg))
        if head == "raw":
            raw = self.state.get(bytes.fromhex(arg))
            return None if raw is None else codec.decode(raw)
        alias = _ALIASES.get(head)
        if alias is not None:
            return self.query(f"{alias}/{arg}" if arg else alias)
        name, _, rest = arg.partition("/")
        view = self._views.get(f"{head}/{name}")
        if view is None:
            raise KeyError(f"unknown query {path[:80]!r}")
        return view(self.state, rest)

    def rules(self) -> list[Rule]:
        """Every rule this chain's transactions can break, with its class and category
        (``ledger.rules.chain_rules``): what the API maps to HTTP statuses."""
        return chain_rules(self.modules)

    def views(self) -> list[str]:
        """Every published module view, ``<module>/<view>``, sorted."""
        return sorted(self._views)


_ALIASES = {"balance": "bank/account", "participant": "registry/participant",
            "validators": "governance/validators"}
