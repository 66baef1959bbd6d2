"""The run as features and attacks see it: ``SimContext``.

One ``SimContext`` per run holds the scenario, the grid, the community, the embedded
network and the run's blackboard (``RunData``), and offers what every plug-in needs to act
as a client: ``tx`` (sign with the next nonce), ``submit`` (admission), ``defer`` (submit
at the next block A), ``tick`` (close a block, absorb it, tell every plug-in). Ledger state
is read through ``ledger`` (``LedgerView``) only; which key a member trades and meters with
is ``identities`` (the pseudonym seam). The engine (``sim.engine``) builds it, attaches the
registered features and attacks, and drives the step's phases.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from gridledger.crypto.sig import SigningKey
from gridledger.errors import RejectedTx
from gridledger.grid import GridLimits, GridModel
from gridledger.ledger.modules.governance.types import Params, parse_params
from gridledger.ledger.tx import (
    TX_CONTEXT,
    Tx,
    TxSigner,
    decode_tx,
    sign_tx,
    signed_tx_bytes,
    signing_bytes,
    tx_id,
)
from gridledger.node.admission import QuotaPolicy
from gridledger.node.embedded import EmbeddedNetwork, FinalizedBlock
from gridledger.node.sigpool import SigPool
from gridledger.sim.clock import SLOT_S, RunClock
from gridledger.sim.community import Community, Member, build_community
from gridledger.sim.hooks import AttackHooks, FeatureHooks
from gridledger.sim.identity import Identities, OwnKeys
from gridledger.sim.ledger_view import LedgerView
from gridledger.sim.records import ByteMap, Delivered, RunData, TxInfo
from gridledger.sim.scenario import Scenario
from gridledger.sim.secagg import Round

MEMBER_QUOTA = 10  # transactions per sender per slot (token bucket refill and burst)
DSO_QUOTA_SCALE_PER_SLOT_TX = 500  # reputation-equivalent per extra quota of the DSO
SIG_POOL_MIN_BATCH = 16  # signatures checked inline below this (``SigPool.min_batch``)
SIG_POOL_MIN_SIGN_BATCH = 1
"""Client signatures made inline below this (``SigPool.min_sign_batch``): none. A phase's
batch (``txs_ahead``) is read only after the phase's later features ran, so even one
signature on the pool overlaps the main core's work (issue 17, fifteenth session: the
aggregators' partials, certificates' claims and sub-meter reports, firmware approvals and
patches were 1-15 a batch, signed inline below the pool's default 16)."""
MAX_BLOCK_TXS = 2000
"""Transactions a block holds; a step's batch beyond it is cut into several blocks, each
stamped with the step's time (``EmbeddedNetwork.tick_stamped``)."""
HOLD_MARGIN_BLOCKS = 1
"""Blocks of slack a held ``defer_later`` entry keeps before its ``last_height``."""


def dso_quota_scale(members: int) -> int:
    """The DSO's admission-quota scale: it posts an envelope and up to two flags per
    member a slot, plus the roaming charges it books, so its bucket is that many member
    quotas (reputation 500 = one quota)."""
    return DSO_QUOTA_SCALE_PER_SLOT_TX * (-(-(2 * members + 16) // MEMBER_QUOTA))


def sign_txs(pool: SigPool, chain_id: str, nonces: dict[bytes, int],
             items: Sequence[tuple[TxSigner, str, dict[str, Any]]]) -> list[bytes]:
    """Transactions ``(key, kind, body)`` signed with each sender's next nonce from
    ``nonces`` (advanced), in order — as ``sign_tx`` one by one would make them — with the
    ML-DSA keys' signatures made by ``pool.sign_many`` (on its processes once the batch is
    large enough; a committee signer signs here): the main process carried every client's
    signing (issues 17/19: ~a quarter of a privacy day's main-core time)."""
    return list(PendingTxs(pool, chain_id, nonces, items))


class _LazyTxs(Sequence[bytes]):
    """Signed transactions whose bytes are made when first read (``_bytes``): the
    ``Sequence`` both ``PendingTxs`` and ``LaterTxs`` are."""

    @abstractmethod
    def _bytes(self) -> list[bytes]:
        """The signed transactions, in order (made on first read)."""

    def __len__(self) -> int:
        return len(self._bytes())

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...

    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        return self._bytes()[i]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._bytes())


class PendingTxs(_LazyTxs):
    """``sign_txs(pool, chain_id, nonces, items)`` started: the nonces are taken from
    ``nonces`` now (so the batch keeps its place in each sender's nonce order) and ``ids``
    (``Tx.id``: everything signed but the signature) are known at once, while the pool's
    processes make the ML-DSA signatures. Reading an item waits for the signatures (then
    the bytes are ``sign_txs``'s); a worker's failure is raised there, not swallowed
    (issue 17, twelfth session: a phase's next features run while its first batches are
    signed, instead of the main core waiting for each batch)."""

    def __init__(self, pool: SigPool, chain_id: str, nonces: dict[bytes, int],
                 items: Sequence[tuple[TxSigner, str, dict[str, Any]]]) -> None:
        self._msgs: list[tuple[TxSigner, int, str, dict[str, Any], bytes]] = []
        for key, kind, body in items:
            n = nonces.get(key.address, 0)
            nonces[key.address] = n + 1
            self._msgs.append((key, n, kind, body,
                               signing_bytes(chain_id, key.address, n, kind, body, key.alg)))
        self._chain_id = chain_id
        self.ids: list[bytes] = [tx_id(msg) for *_rest, msg in self._msgs]
        self._pooled = {i: key for i, (key, *_rest) in enumerate(self._msgs)
                        if isinstance(key, SigningKey)}
        self._futures = pool.sign_start([(key.alg, key.seed, self._msgs[i][4], TX_CONTEXT)
                                         for i, key in self._pooled.items()])
        # a committee signer signs here, now, as before
        self._own = {i: key.sign(msg, TX_CONTEXT) for i, (key, _n, _k, _b, msg)
                     in enumerate(self._msgs) if i not in self._pooled}
        self._raws: list[bytes] | None = None

    def raws(self) -> list[bytes]:
        """The signed transactions, in order (waits for the pool's signatures once)."""
        if self._raws is None:
            sigs = dict(zip(self._pooled, SigPool.gather_signatures(self._futures),
                            strict=True)) | self._own
            self._raws = [signed_tx_bytes(key.alg, key.address, self._chain_id, n, kind, body,
                                          sigs[i])
                          for i, (key, n, kind, body, _msg) in enumerate(self._msgs)]
            self._msgs, self._own = [], {}
        return self._raws

    _bytes = raws

    def __len__(self) -> int:
        return len(self.ids)  # known without waiting for the signatures


class LaterTxs(_LazyTxs):
    """Transactions a ``SimContext.later`` finish signs (``SimContext.txs_later``): reading
    them settles their signer's finishes first (those before it, then this one), so they are
    the bytes, nonces and deferred order of signing them when they were asked for."""

    def __init__(self, ctx: SimContext, signer: bytes) -> None:
        self._ctx = ctx
        self._signer = signer
        self.raws: list[bytes] | None = None

    def _bytes(self) -> list[bytes]:
        if self.raws is None:
            self._ctx.settle(self._signer)
        if self.raws is None:
            raise RuntimeError("transactions asked for later were never made (the run's "
                               "finishes were dropped)")
        return self.raws


def hosted_validators(n: int) -> tuple[int, ...]:
    """The validators that run in a process of their own (``node.validator_host``): the
    upper half, so that this process and the host each execute about half of every block's
    executions (issue 17: the second core). None of a single-validator network."""
    return tuple(range(n - n // 2, n)) if n > 1 else ()


@dataclass(eq=False)
class DeferredLater:
    """A place among the deferred transactions, filled by ``make`` when it is taken
    (``SimContext.defer_later``)."""

    make: Callable[[], list[bytes]]
    signers: frozenset[bytes]
    raws: list[bytes] | None = None
    last_height: int | None = None
    """Held (``defer_later(..., last_height=...)``): the last height its transactions may
    land in; None: made at the next block A."""


@dataclass
class AdmissionMeter:
    """Wall time spent in admission while it is active (``SimContext.attack_admission``)."""

    seconds: float = 0.0


@dataclass(frozen=True)
class FinalState:
    """The ledger as the run left it (read before the stores close)."""

    roots: list[str]                  # every validator's state root, hex
    height: int
    supply: int
    money: dict[bytes, int]
    reputation: dict[bytes, int]      # members' scores


class SimContext:
    """One run's shared state and client actions (see the module docstring)."""

    def __init__(self, sc: Scenario, model: GridModel, out: Path) -> None:
        self.sc = sc
        self.model = model
        self.clock = RunClock(sc.first_slot, sc.slots)
        self.community: Community = build_community(model, sc)
        self.members: list[Member] = self.community.members
        self.by_cp: dict[str, Member] = self.community.by_cp()
        self.params: Params = parse_params(self.community.genesis.params)
        self.data = RunData()
        self.identities: Identities = OwnKeys(self.members)
        self.features: Sequence[FeatureHooks] = ()
        self.attacks: Sequence[AttackHooks] = ()
        self.left_out: dict[str, str] = {}
        """Scenarios asked for but left out: nothing to act on in this community (name ->
        why; ``errors.NotApplicable``)."""
        self.timings: dict[str, float] = {"grid_s": 0.0, "ledger_s": 0.0, "agents_s": 0.0}
        self.step_latency_s: list[tuple[int, float]] = []
        """(slot, seconds from submitting the slot's honest orders to block A's finality)."""
        self.limits = GridLimits()
        """The grid's operating limits (voltage band, line loading) for physics and report."""
        self._nonces: dict[bytes, int] = {}
        self._old_nonces = ByteMap()  # signers done for now (``forget_nonces``): on the side file
        self.ledger_lock = threading.RLock()
        """Held while the ledger admits or executes (``submit``, ``tick``): a dashboard
        serving the run (``features.dashboard``) reads between blocks."""
        self._deferred: list[bytes | DeferredLater] = []
        self._later: list[tuple[bytes | None, Callable[[], None]]] = []
        self._pending: list[DeferredLater] = []   # ``defer_later`` entries not made yet
        self._held: list[DeferredLater] = []      # ... of them, those held to a late tick
        self._made: list[bytes] = []              # held ones made: first in the next submit
        self._settling = False
        self._admission_meter: AdmissionMeter | None = None
        # quotas in ledger time: a member needs ~2 transactions a slot
        quota = QuotaPolicy(rate_per_s=MEMBER_QUOTA / SLOT_S, burst=float(MEMBER_QUOTA))
        # validators 1..n-1 check every signature themselves, and admission checks each
        # batch: in a pool on the other core while this one executes (issue 17); the pool
        # also signs for the clients (``txs``). A demo's batches are small (a block's
        # readings, a slot's orders: 30-100) and the other core is idle between blocks, so
        # from 16 signatures on they go to the pool (the default 64 kept them here)
        self.sig_pool = SigPool(workers=2, min_batch=SIG_POOL_MIN_BATCH,
                                min_sign_batch=SIG_POOL_MIN_SIGN_BATCH)
        self.net = EmbeddedNetwork(self.community.genesis, self.community.validators,
                                   out / "ledger", quota=quota, max_block_txs=MAX_BLOCK_TXS,
                                   mempool_capacity=20_000, snapshot_every=96,
                                   sig_pool=self.sig_pool, hosted=hosted_validators(sc.validators),
                                   # a run's stores: a killed process keeps every block, only
                                   # a power loss may not; no fsync a block (issue 17)
                                   durable=False)
        self.ledger = LedgerView(self.net.entry.app)
        self._quota_scales = {self.community.dso.address: dso_quota_scale(len(self.members))}
        quota.reputation_of = lambda a: self._quota_scales.get(a) or self.ledger.reputation(a)
        self.supply0 = self.ledger.supply()
        self.money0 = self.ledger.money()
        self.final: FinalState | None = None

    def close(self) -> FinalState:
        """Read the final state (every validator's root, money, scores) and close the stores."""
        if self.final is None:
            self._later = []  # a run that failed leaves them; a whole run settled them
            self._pending = []
            self._held = []
            self.final = FinalState(
                roots=[r.hex() for r in self.net.state_roots()], height=self.net.height,
                supply=self.ledger.supply(), money=self.ledger.money(),
                reputation={m.address: self.ledger.reputation(m.address) for m in self.members})
            self.net.close()
            self.sig_pool.close()
        return self.final

    def grant_quota(self, addr: bytes, reputation_equivalent: int) -> None:
        """Admit ``addr``'s transactions at the quota of that reputation score (500 = one
        member's), as the DSO's: for infrastructure that sends in bulk (pseudonym relays)."""
        self._quota_scales[addr] = reputation_equivalent

    def use_identities(self, identities: Identities) -> None:
        """Install another identity scheme (before the first step)."""
        self.identities = identities

    # -- time ------------------------------------------------------------------------------
    @property
    def first(self) -> int:
        return self.clock.first

    def label(self, slot: int) -> str:
        return self.clock.label(slot)

    def in_window(self, slot: int, start: float, end: float) -> bool:
        return self.clock.in_window(slot, start, end)

    def trading_slots(self) -> range:
        return self.clock.trading_slots()

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Add the block's wall time to ``timings[key]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    # -- work finished later ---------------------------------------------------------------
    def later(self, finish: Callable[[], None], signer: bytes | None = None) -> None:
        """Call ``finish`` (which may sign as ``signer`` and ``defer``) at the latest point
        where its transactions still come out as if it had run now: before the next
        signature by ``signer``, the next ``defer``, ``submit``, ``tick`` or the end of the
        run (``settle``). A plug-in starts pure work elsewhere (another process) and goes
        on; the same nonces, the same deferred order, the same blocks (issue 17: the DSO's
        state estimation runs beside the next slot's envelopes and orders)."""
        self._later.append((signer, finish))

    def txs_later(self, make: Callable[[], list[bytes]], signer: bytes) -> LaterTxs:
        """``make()`` — transactions signed as ``signer`` only — run as a ``later`` finish:
        the returned batch holds them once read (reading settles ``signer``). For a
        feature's phase batch whose signer has work still running elsewhere: the DSO's
        envelopes are signed after the previous slot's flags (its state estimation, in its
        worker), and the engine reads the batch after every feature of the phase made its
        own, so the estimation overlaps their work (issue 17, twelfth session)."""
        batch = LaterTxs(self, signer)

        def finish() -> None:
            batch.raws = make()

        self.later(finish, signer)
        return batch

    def settle(self, signer: bytes | None = None) -> None:
        """Call what ``later`` holds, in order (only up to the last one that signs as
        ``signer``, when given: later ones of other signers may wait on). What a ``finish``
        signs or defers itself settles nothing more: the ones after it come after it."""
        if self._settling or not self._later:
            return
        if signer is not None:
            last = max((k for k, (who, _f) in enumerate(self._later) if who == signer),
                       default=-1)
            if last < 0:
                return
            due, self._later = self._later[:last + 1], self._later[last + 1:]
        else:
            due, self._later = self._later, []
        self._settling = True
        try:
            for k, (_who, finish) in enumerate(due):
                try:
                    finish()
                except BaseException:
                    self._later = due[k + 1:] + self._later
                    raise
        finally:
            self._settling = False

    # -- transactions ------------------------------------------------------------------------
    def tx(self, key: TxSigner, kind: str, body: dict[str, Any]) -> bytes:
        """Sign ``kind``/``body`` as ``key`` with its next nonce."""
        self.settle(key.address)
        self._resolve_for(key.address)
        self._recall(key.address)
        n = self._nonces.get(key.address, 0)
        self._nonces[key.address] = n + 1
        raw = sign_tx(key, self.sc.chain_id, n, kind, body)
        self.data.tx_info[decode_tx(raw).id] = TxInfo(key.address, kind, body)
        return raw

    def txs(self, items: Sequence[tuple[TxSigner, str, dict[str, Any]]]) -> list[bytes]:
        """``[tx(key, kind, body) for key, kind, body in items]`` — the same nonces and
        fields — with the ML-DSA keys' signatures made on the signature pool's processes
        (``sign_txs``)."""
        return list(self.txs_ahead(items))

    def txs_ahead(self, items: Sequence[tuple[TxSigner, str, dict[str, Any]]]) -> PendingTxs:
        """``txs(items)`` without waiting for the signatures: the same nonces, fields and
        ids now, the bytes when read (``PendingTxs``). For a feature's phase batch: the
        engine reads it after every feature of the phase has made its own, so their work
        overlaps the pool's signing."""
        for addr in dict.fromkeys(key.address for key, _k, _b in items) if self._later else ():
            self.settle(addr)
        for addr in dict.fromkeys(key.address for key, _k, _b in items) if self._pending else ():
            self._resolve_for(addr)
        for addr in dict.fromkeys(key.address for key, _k, _b in items):
            self._recall(addr)
        pending = PendingTxs(self.sig_pool, self.sc.chain_id, self._nonces, items)
        for tid, (key, kind, body) in zip(pending.ids, items, strict=True):
            self.data.tx_info[tid] = TxInfo(key.address, kind, body)
        return pending

    def forget_nonces(self, signers: Iterable[bytes]) -> None:
        """Keep the next nonces of ``signers`` on the side file, not in memory: signers the
        run is done with for now (an epoch's pseudonyms and reading keys once its pool has
        paid out: two new signers a member and slot, issue 17). A later signature by one of
        them still takes its next nonce (``_recall``)."""
        for addr in signers:
            n = self._nonces.pop(addr, None)
            if n is not None:
                self._old_nonces[addr] = n

    def _recall(self, signer: bytes) -> None:
        if signer not in self._nonces and (n := self._old_nonces.get(signer)) is not None:
            self._nonces[signer] = n

    def defer(self, raws: Sequence[bytes]) -> None:
        """Submit ``raws`` first thing at the next block A (signed now, so they precede the
        sender's later transactions in nonce order)."""
        self.settle()
        self._deferred += raws

    def defer_later(self, make: Callable[[], list[bytes]], signers: Sequence[bytes],
                    last_height: int | None = None) -> None:
        """``defer(make())`` with ``make`` called as late as its transactions still come out
        as if it had run now: at the next ``take_deferred`` (they keep their place among the
        deferred transactions), before the next signature by one of ``signers`` (their
        nonces), or at the end of the run (``resolve_deferred``) — not at every ``submit`` or
        ``tick`` as ``later``'s work. ``make`` may wait for pure work started elsewhere (a
        forked process: the validators' dry runs, issue 19) and signs only as ``signers``;
        it must not defer itself.

        ``last_height``: the transactions may land in any block up to that height (a
        proposal's last voting height), so they are *held* past block A — made and submitted
        at the last tick from which even the most blocks a tick can close
        (``EmbeddedNetwork.blocks_to_close``) would leave the next tick room to land them by
        then, minus ``HOLD_MARGIN_BLOCKS`` (``_release_held``); before their signers' next
        signature as above (then first in the next ``submit``); or at the run's last step
        (``release_held``). Which tick is a function of heights and the mempool, never of
        how fast ``make``'s work runs: the same transactions in the same blocks on any
        machine, and the work runs beside that many steps (issue 17: the dry runs). A
        signer's entries are all held or none (a held one made after a later entry of its
        signer would take the nonces out of order)."""
        self.settle()
        d = DeferredLater(make, frozenset(signers), last_height=last_height)
        if any((e.last_height is None) != (last_height is None) and e.signers & d.signers
               for e in self._pending):
            raise ValueError("a signer's defer_later entries are all held or none")
        if last_height is None:
            self._deferred.append(d)
        else:
            self._held.append(d)
        self._pending.append(d)

    def _resolve_for(self, signer: bytes) -> None:
        """Resolve the ``defer_later`` entries up to the last one that signs as ``signer``."""
        last = max((k for k, d in enumerate(self._pending) if signer in d.signers), default=-1)
        for d in self._pending[:last + 1]:
            self._resolve(d)

    def _resolve(self, d: DeferredLater) -> None:
        if d.raws is None:
            self._pending.remove(d)
            d.raws = []
            d.raws = d.make()
            if d.last_height is not None:  # held: submitted first thing next
                self._held.remove(d)
                self._made += d.raws

    def resolve_deferred(self) -> None:
        """Resolve every ``defer_later`` entry, in order (end of the run)."""
        for d in list(self._pending):
            self._resolve(d)

    def release_held(self) -> None:
        """Make every held ``defer_later`` entry now (the run's last step: its block A takes
        them)."""
        for d in list(self._held):
            self._resolve(d)

    def _release_held(self, now_s: int) -> None:
        """Before a tick: make and submit the held entries this tick is the last safe one
        for — those whose ``last_height`` the next tick might no longer reach: this tick
        closes at most ``blocks_to_close`` blocks, and a validator's transaction goes in
        the first block of its tick (the mempool's validators' lane)."""
        if self._held:
            reach = self.net.height + self.net.blocks_to_close() + 1 + HOLD_MARGIN_BLOCKS
            due = [k for k, d in enumerate(self._held)
                   if d.last_height is not None and reach > d.last_height]
            for d in self._held[:max(due) + 1] if due else ():
                self._resolve(d)
        if self._made:
            self.submit([], now_s)

    def take_deferred(self) -> list[bytes]:
        self.settle()
        for d in [d for d in self._pending if d.last_height is None]:
            self._resolve(d)  # held entries share no signer with these (``defer_later``)
        out: list[bytes] = self._made
        self._made = []
        for item in self._deferred:
            if isinstance(item, DeferredLater):
                out += item.raws or []
            else:
                out.append(item)
        self._deferred = []
        return out

    @contextmanager
    def attack_admission(self) -> Iterator[AdmissionMeter]:
        """Measure the admission time of what attacks submit inside the block (honest
        transactions submitted after it wait that long)."""
        meter = AdmissionMeter()
        self._admission_meter = meter
        try:
            yield meter
        finally:
            self._admission_meter = None

    def submit(self, raws: Sequence[bytes], now_s: int) -> list[Tx | RejectedTx]:
        """Admission at the entry validator; a rejected sender's nonce is resynced."""
        self.settle()
        if self._made:  # held transactions made early: ahead of their signers' next ones
            raws, self._made = self._made + list(raws), []
        if not raws:
            return []
        t0 = time.perf_counter()
        with self.ledger_lock:
            results: list[Tx | RejectedTx] = self.net.submit_many(list(raws), float(now_s))
        if self._admission_meter is not None:
            self._admission_meter.seconds += time.perf_counter() - t0
        resync: set[bytes] = set()
        rejected: list[str] = []
        for raw, r in zip(raws, results, strict=True):
            if isinstance(r, RejectedTx):
                rejected.append(r.rule)
                with suppress(RejectedTx):  # undecodable bytes name no sender
                    resync.add(decode_tx(raw).sender)
        self.data.record_admission(rejected, len(results) - len(rejected))
        for addr in sorted(resync):
            if addr in self._nonces:
                self._nonces[addr] = self.net.mempool.expected_nonce(addr)
        return results

    def tick(self, time_s: int) -> list[FinalizedBlock]:
        """Close a block at ``time_s``; absorb what is finalized and tell every plug-in."""
        self.settle()
        with self.timed("ledger_s"):
            for a in self.attacks:
                a.before_tick(time_s)
            self._release_held(time_s)
            with self.ledger_lock:
                # every block of the batch at ``time_s``: a block C with more than a block
                # holds (the next day's pseudonym registrations at 18:00) put the slot's
                # readings in a block at block B's time, refused ``reading-early``
                out = self.net.tick_stamped(time_s)
        for fb in out:
            evs = self.data.absorb(fb)
            for f in self.features:
                f.on_block(fb, evs)
            for a in self.attacks:
                a.on_block(fb, evs)
        return out

    # -- what attacks read -------------------------------------------------------------------
    @property
    def delivered(self) -> dict[int, Delivered]:
        return self.data.delivered

    @property
    def rounds(self) -> Mapping[int, Round]:
        return self.data.rounds

    def delivered_truth(self, slot: int, cp: str) -> int:
        """Net injection (Wh, > 0 export) cp really had in ``slot``."""
        return self.data.truth_of(slot, cp)

    def is_honest(self, addr: bytes) -> bool:
        """Whether ``addr`` is an honest member's (its own address or one of its pseudonyms)."""
        m = self.identities.owner(addr)
        return m is not None and m.honest

    def keeps_meter_rules(self, m: Member) -> bool:
        """Whether ``m``'s meter and client act as an honest one's around a quarantine (the
        client sends no orders while its meter is quarantined, the meter installs the
        approved fix): every member but those whose own scenario drives its meter through
        one (``drives_meter``: vulnerable-firmware, fake-patch). A member another scenario
        recruited lies only in the way its scenario measures, so one scenario's defence does
        not silence another's attacker (fdi-meter's attacker on an advised firmware version
        was quarantined for good in a two-day run, and its scenario measured nothing)."""
        if m.honest:
            return True
        return not any(getattr(a, "drives_meter", False) and getattr(a, "name", "") == m.attack
                       for a in self.attacks)

    def attacker_cps(self) -> set[str]:
        return {m.cp for m in self.members if not m.honest}

    def honest_excess(self, slots: Sequence[int], addrs: set[bytes] | None = None) -> int:
        """Micro-units honest members paid beyond their no-market bill in ``slots`` (under
        whichever identity they were billed)."""
        honest = {a for s in set(slots) for a in self.data.bills.get(s, {}) if self.is_honest(a)}
        return self.data.excess_paid(slots, honest if addrs is None else honest & addrs)

    def reputation(self, addr: bytes) -> int:
        if self.final is not None and addr in self.final.reputation:
            return self.final.reputation[addr]
        return self.ledger.reputation(addr)

    @property
    def validators_agree(self) -> bool:
        roots = self.final.roots if self.final is not None else self.net.state_roots()
        return len(set(roots)) == 1
