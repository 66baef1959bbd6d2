"""A validator's dry run of a proposed module upgrade, before it votes (issue 13.2).

Outside execution: each validator runs it on its own store, and votes yes only if it
approves. Given a store (``BlockSource``: certified blocks and state snapshots), the node's
catalog (the versions it can build) and the proposal, ``review_upgrade``:

1. refuses a version the node cannot build, or whose declaration (``Module.declares``: what
   its migration writes, what it changes, whether receipts may differ) does not hash to
   the proposal's digest — voters vote for exactly what was declared;
2. takes the latest snapshot at least ``window`` blocks below the tip (genesis if none),
   runs the migration on a copy and checks that it wrote only the declared keys and that
   every invariant holds;
3. replays every later committed block with the new version, every invariant checked after
   each, and compares each block's receipts with the committed ones (unless the
   declaration says they may differ);
4. compares the resulting state with the committed state at the tip: every key that
   differs must be one the migration writes or the declaration says the new version
   changes. The committed state is replayed with the running versions (each block checked
   against its header's state root) from the latest snapshot at or below the tip that
   matches its header — a later one than the window's start if the store has one, so a
   heavy block inside the window (a privacy epoch's registration: ~1.8 s) is executed
   once, by the new version, not twice (issue 19).

5. checks that the replay *ran* what the new version replaces (``Verdict.replaced``): the
   handler or parser of every message kind the running version also has whose code
   differs, and every method of an installed release's keeper that replaces this build's
   keeper function of that name (what the modules depending on it call: a bank release's
   ``pay_from_locked`` is called by the market's settlement). A window that did not run one
   of them is widened to the whole chain (replayed from genesis); if no committed block
   ever ran it, the review refuses — nothing on the chain exercises the replaced code, so
   a dry run cannot vouch for it. Why: the window is a policy an attacker can time around
   (a release whose faulty path runs only at an epoch's pay-out or in a dispute, proposed
   where the window holds none, passes a day's review as the faulty bank passed an
   8-slot one at night — c05f82e). Coverage is by function, not by input: the night
   window of that case did call the faulty ``pay_from_locked``, on pay-outs too small for
   its slip to show, so the window stays a day as well (``sim.features.governance``).

Any finding refuses, naming the first one (``Verdict.reason``, which goes into the
validator's no vote). A dry run never touches the node's own state.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gridledger.errors import InvariantViolation
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.block import Header
from gridledger.ledger.context import BlockContext
from gridledger.ledger.execute import (
    MACHINE_FAULTS,
    BlockResult,
    SigCheck,
    apply_block,
    default_sig_check,
    run_invariants,
)
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.catalog import Catalog, VersionUnavailable, builtin_keeper
from gridledger.ledger.state import State
from gridledger.ledger.upgrades import (
    SCHEDULE_KEY,
    VERSIONS_KEY,
    Activation,
    activate,
    active_versions,
    genesis_versions,
    scheduled,
)

DEFAULT_WINDOW = 48
"""Blocks a dry run replays at least (about half a day of 15-minute slots in the demo)."""
MAX_REASON = 200


class StoredBlockLike(Protocol):
    @property
    def header(self) -> bytes: ...
    @property
    def receipts(self) -> bytes: ...
    def tx_list(self) -> list[bytes]: ...


class BlockSource(Protocol):
    """What a dry run reads from a node's store (``node.store.BlockStore``)."""

    def tip(self) -> int: ...
    def block(self, height: int) -> StoredBlockLike | None: ...
    def snapshot_heights(self) -> list[int]: ...
    def snapshot_bytes(self, height: int) -> bytes | None: ...


@dataclass(frozen=True)
class Proposed:
    """The upgrade under review (from the ``upgrade_proposed`` event or the motion)."""

    proposal: int
    module: str
    version: int
    digest: bytes


@dataclass(frozen=True)
class Verdict:
    """A dry run's outcome: approve, or the first finding (``reason``)."""

    approve: bool
    reason: str
    from_height: int
    to_height: int
    blocks: int
    keys_changed: int = 0
    replaced: tuple[str, ...] = ()
    """What the new version replaces (``_Coverage``), each run by the replay at least once
    when the verdict approves (e.g. ``"bank keeper pay_from_locked"``,
    ``"bank/transfer handler"``)."""
    widened: bool = False
    """The window did not run everything replaced, so the chain was replayed from genesis."""

    def vote_body(self, proposal: int) -> dict[str, object]:
        """The ``governance/vote`` body this verdict casts."""
        return {"proposal": proposal, "approve": self.approve, "reason": self.reason}


def _refuse(reason: str, start: int, tip: int, blocks: int = 0) -> Verdict:
    return Verdict(False, reason[:MAX_REASON], start, tip, blocks)


def _matching_snapshot(source: BlockSource, above: int, below: int) -> tuple[int, State] | None:
    """The latest snapshot above height ``above`` and at or below ``below`` whose state
    matches its block's header, or None."""
    for h in reversed([h for h in source.snapshot_heights() if above < h <= below]):
        raw, blk = source.snapshot_bytes(h), source.block(h)
        if raw is None or blk is None:
            continue
        state = State({bytes(k): bytes(v) for k, v in codec.decode(raw)})
        if state.root() == Header.decode(blk.header).state_root:
            return h, state
    return None


def _snapshot_state(source: BlockSource, genesis: Genesis, catalog: Catalog,
                    below: int) -> tuple[int, State]:
    """The latest snapshot at or below height ``below`` whose state matches its block's
    header (or the genesis state)."""
    found = _matching_snapshot(source, -1, below)
    # the genesis state as every node builds it
    return found or (0, Application(genesis, catalog=catalog).state)


def _code(f: Any) -> Any:
    """A callable's code object (a bound method's function's), or the callable itself."""
    f = getattr(f, "__func__", f)
    return getattr(f, "__code__", f)


class _Coverage:
    """What a new version replaces, wired to count its calls during the replay.

    Replaced: a message kind's ``handle`` or ``parse`` whose code differs from the running
    version's handler of the same kind (a kind the running version lacks is new, not
    replaced: no committed block can carry it), and a release keeper's public method whose
    code differs from this build's keeper function of that name. Hooks and invariants run in
    every block, so they need no count."""

    def __init__(self, old: Module | None, module: str) -> None:
        self.module_name = module
        self.old_kinds = {k.kind: k for k in old.kinds()} if old is not None else {}
        self.calls: Counter[str] = Counter()
        self.replaced: list[str] = []

    def _counted(self, label: str, f: Callable[..., Any]) -> Callable[..., Any]:
        self.replaced.append(label)
        calls = self.calls

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[label] += 1
            return f(*args, **kwargs)
        return counted

    def keeper(self, module: str, keeper: Any) -> Any:
        """``Catalog.build``'s ``wrap_keeper``: a release keeper whose replacing methods count."""
        base = builtin_keeper(module)
        if base is None or module != self.module_name:   # an earlier release: not under review
            return keeper
        names = sorted(n for n in dir(base) if not n.startswith("_")
                       and callable(getattr(base, n)) and hasattr(keeper, n)
                       and _code(getattr(keeper, n)) is not _code(getattr(base, n)))
        if not names:
            return keeper
        wrapped = {n: self._counted(f"{module} keeper {n}", getattr(keeper, n)) for n in names}
        return _CountingKeeper(keeper, wrapped)

    def wire(self, m: Module) -> Module:
        """The upgraded module with its replacing handlers and parsers counted."""
        if m.name != self.module_name:
            return m
        messages = []
        for spec in m.messages:
            old = self.old_kinds.get(spec.kind)
            if old is not None and (_code(old.handle) is not _code(spec.handle)
                                    or _code(old.parse) is not _code(spec.parse)):
                spec = MsgKind(spec.kind, spec.parse,
                               self._counted(f"{spec.kind} handler", spec.handle), spec.roles)
            messages.append(spec)
        handlers = {}
        for kind, h in m.handlers.items():
            old = self.old_kinds.get(kind)
            handlers[kind] = (self._counted(f"{kind} handler", h)
                              if old is not None and _code(old.handle) is not _code(h) else h)
        return replace(m, messages=tuple(messages), handlers=handlers)

    def unrun(self) -> list[str]:
        return [label for label in self.replaced if not self.calls[label]]


class _CountingKeeper:
    """A keeper seen through ``wrapped`` (counting) methods; everything else as it is."""

    def __init__(self, inner: Any, wrapped: dict[str, Callable[..., Any]]) -> None:
        self._inner, self._wrapped = inner, wrapped

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        return wrapped if wrapped is not None else getattr(self._inner, name)


def review_upgrade(source: BlockSource, genesis: Genesis, catalog: Catalog, up: Proposed,
                   until: int | None = None, window: int = DEFAULT_WINDOW,
                   sig_check: SigCheck = default_sig_check, *,
                   require_coverage: bool = True) -> Verdict:
    """Dry-run ``up`` over at least the last ``window`` committed blocks up to ``until``
    (default: the store's tip; a reviewer passes the block before the proposal's, the
    state the proposal was made against).

    The running versions replay the same blocks alongside (checked against each stored
    header's state root: a store that does not replay refuses too) to give the state the
    new version's result is compared with. ``sig_check`` may reuse the node's signature
    cache. Never raises for what the new version does: every finding is a refusing
    ``Verdict``.
    """
    tip = source.tip() if until is None else min(until, source.tip())
    if not catalog.has(up.module, up.version):
        return _refuse(f"{up.module} v{up.version} is not installed on this node", tip, tip)
    start, state0 = _snapshot_state(source, genesis, catalog, max(0, tip - window))
    gv = genesis_versions(genesis.doc, catalog.genesis_defaults())
    before = active_versions(state0, gv)
    if before.get(up.module, 0) >= up.version:
        return _refuse(f"{up.module} already runs v{before.get(up.module)}", start, tip)
    try:
        old_modules = catalog.build(before)
        coverage = _Coverage(next((m for m in old_modules if m.name == up.module), None),
                             up.module)
        new_modules = [coverage.wire(m) for m in catalog.build(
            {**before, up.module: up.version}, wrap_keeper=coverage.keeper)]
    except VersionUnavailable as exc:
        return _refuse(str(exc), start, tip)
    new = next(m for m in new_modules if m.name == up.module)
    if new.declares.digest(up.module, up.version) != up.digest:
        return _refuse("the version's declaration does not match the proposal's digest",
                       start, tip)
    if scheduled(state0):
        return _refuse("another upgrade is scheduled within the window; review after it",
                       start, tip)
    trial = state0.copy()
    try:
        _migrate(trial, new_modules, new, up, before, start)
    except _Finding as f:
        return _refuse(str(f), start, tip)
    # the committed state, replayed with the running versions from the latest matching
    # snapshot (no upgrade is scheduled in the window: ``old_modules`` hold throughout)
    base_start, base = _matching_snapshot(source, start, tip) or (start, state0)
    n = 0
    for h in range(start + 1, tip + 1):
        blk = source.block(h)
        if blk is None:
            return _refuse(f"block {h} is missing from the store", start, tip, n)
        header = Header.decode(blk.header)
        ctx = BlockContext(header.chain_id, h, header.slot_time)
        txs = blk.tx_list()
        if h > base_start:
            # as the validators executed it: inside a transaction, so scoped invariants
            # check what the block wrote (the trial's stay unscoped: its own and its
            # dependants' scoping is what is under review)
            base.begin()
            apply_block(base, ctx, txs, old_modules, sig_check)
            base.commit()
            if base.root() != header.state_root:
                return _refuse(f"block {h} does not replay to its header's state root (the "
                               f"store or this node's running version is at fault)",
                               start, tip, n)
        try:
            result = apply_block(trial, ctx, txs, new_modules, sig_check)
        except MACHINE_FAULTS:
            raise
        except Exception as exc:  # an abort, an invariant, a defect: all refuse
            return _refuse(f"block {h}: {_name(exc)}", start, tip, n)
        if not new.declares.receipts and _receipts(result) != blk.receipts:
            return _refuse(f"block {h}: receipts differ from the committed ones "
                           f"({_first_difference(result, blk.receipts)})", start, tip, n)
        n += 1
    differing = trial.diff(base)
    allowed = (VERSIONS_KEY, SCHEDULE_KEY)
    undeclared = [k for k in differing if k not in allowed and not new.declares.may_differ(k)]
    if undeclared:
        return _refuse(f"{len(undeclared)} state key(s) differ beyond the declaration, e.g. "
                       f"{_show_key(undeclared[0])}", start, tip, n)
    unrun = coverage.unrun() if require_coverage else []
    if unrun and start > 0:   # the whole chain: replayed from genesis
        return replace(review_upgrade(source, genesis, catalog, up, until=tip, window=tip,
                                      sig_check=sig_check), widened=True)
    if unrun:
        return _refuse(f"no committed block runs {unrun[0]}, which this version replaces "
                       f"({len(unrun)} such): nothing to review it against", start, tip, n)
    return Verdict(True, "", start, tip, n, len(differing),
                   tuple(coverage.replaced) if require_coverage else ())


def review_inputs(source: BlockSource, catalog: Catalog, up: Proposed, until: int | None = None,
                  window: int = DEFAULT_WINDOW) -> tuple[bytes, int]:
    """``(digest, start)`` of everything ``review_upgrade`` reads for these arguments when it
    starts from the latest snapshot at or below ``tip - window`` (height ``start``; 0 =
    genesis): the proposal, the window, the catalog's releases (by object: the same release
    builds the same module), the snapshot heights it could start from, that snapshot's bytes
    and every block row after it up to the tip.

    The snapshots above ``start`` up to the tip (heights and bytes: the committed state's
    replay may start from one) are part of the digest too.

    ``review_upgrade`` is a pure function of these (block execution is, and it reads nothing
    else), so two stores with the same digest get the same verdict if that verdict starts
    at ``start`` — what lets reviewers on one machine (the simulator's validators, whose
    stores hold the same certified bytes) run one dry run instead of one each, as
    ``node.verify.Replayed`` does for verify-chain."""
    tip = source.tip() if until is None else min(until, source.tip())
    heights = [h for h in source.snapshot_heights() if h <= max(0, tip - window)]
    start = heights[-1] if heights else 0
    h = hashlib.sha256(codec.encode([up.proposal, up.module, up.version, up.digest, tip, window,
                                     heights]))
    for (module, version), release in sorted(catalog.releases.items()):
        h.update(codec.encode([module, version, id(release)]))
    h.update((source.snapshot_bytes(start) or b"") if start else b"")
    later = [x for x in source.snapshot_heights() if start < x <= tip]
    h.update(codec.encode(later))
    for x in later:
        h.update(source.snapshot_bytes(x) or b"")
    for height in range(start + 1, tip + 1):
        blk = source.block(height)
        h.update(codec.encode([height, b""] if blk is None
                              else [height, blk.header, blk.tx_list(), blk.receipts]))
    return h.digest(), start


class _Finding(Exception):
    pass


def _migrate(trial: State, modules: Sequence[Module], new: Module, up: Proposed,
             before: dict[str, int], start: int) -> None:
    """Run the migration on ``trial`` as activation would; raise ``_Finding``."""
    copy = trial.copy()
    events: list[dict[str, object]] = []
    ctx = BlockContext("dry-run", start + 1, 0)
    try:
        activate(trial, ctx, [Activation(start + 1, up.module, up.version, up.proposal,
                                          up.digest)], before, modules, events)
    except MACHINE_FAULTS:
        raise
    except Exception as exc:
        raise _Finding(f"the migration fails: {_name(exc)}") from exc
    written = [k for k in trial.diff(copy) if k != VERSIONS_KEY]
    stray = [k for k in written if not new.declares.may_write(k)]
    if stray:
        raise _Finding(f"the migration writes {len(stray)} undeclared key(s), e.g. "
                       f"{_show_key(stray[0])}")
    try:
        run_invariants(trial, modules)
    except InvariantViolation as exc:
        raise _Finding(f"after the migration: {exc}") from exc


def _receipts(result: BlockResult) -> bytes:
    return result.encode_receipts()


def _first_difference(result: BlockResult, stored: bytes) -> str:
    try:
        old = codec.decode(stored)["txs"]
    except Exception:
        return "stored receipts unreadable"
    new = [r.to_obj() for r in result.receipts]
    for i, (a, b) in enumerate(zip(new, old, strict=False)):
        if a != b:
            return f"tx {i}: {b.get('rule') or 'ok'} -> {a.get('rule') or 'ok'}"
    return "block events"


def _name(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _show_key(key: bytes) -> str:
    head = key.split(b"/")
    return "/".join(p.decode("ascii", "replace") if p.isascii() and p.isalnum() else "…"
                    for p in head[:3])
