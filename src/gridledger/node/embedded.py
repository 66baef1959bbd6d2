"""The embedded network: n validators in one process over the in-process orderer.

This is the default mode (one machine, SQLite per validator). Blocks are cut from the
ordered log, every validator executes and votes, the collector forms a quorum certificate,
and each validator stores the certified block. Signature checks for validators other than
the entry node run in a process pool, so the embedded network uses every core.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gridledger.crypto.sig import SigningKey, verify_signature
from gridledger.errors import BlockError, RejectedTx
from gridledger.ledger.block import Certificate, Equivocation, Header, quorum
from gridledger.ledger.committee import COMMITTEE_ALG
from gridledger.ledger.execute import BlockResult, SigCheck, default_sig_check
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules import Module
from gridledger.ledger.tx import TX_CONTEXT, Tx, decode_tx
from gridledger.node.admission import Mempool, QuotaPolicy
from gridledger.node.orderer import BlockCutter, CutBlock, Entry, LocalOrderer, Orderer
from gridledger.node.sigpool import SigPool
from gridledger.node.store import BlockStore
from gridledger.node.sync import catch_up
from gridledger.node.ticks import Tick
from gridledger.node.validator import Validator
from gridledger.node.validator_host import HostedValidator, ValidatorHost
from gridledger.node.votes import VoteTally

RECENT_BLOCKS = 16
"""Finalized blocks (with receipts and events) kept for inspection; ``tick`` returns every
new one to its caller. 256 held ~50 slots of a 1,000-member run's receipts (issue 17)."""

MAX_TICK_AHEAD_MS = 60_000  # in process a tick's true time is known; a minute of slack


class ChainHalted(BlockError):
    """No header gathered a quorum of votes: the chain stops rather than fork."""


@dataclass
class FinalizedBlock:
    header: Header
    result: BlockResult
    cert: Certificate
    offenders: dict[int, str] = field(default_factory=dict)


def block_sig_items(txs: Sequence[Tx], validator: Validator) -> list[tuple[str, bytes, bytes, bytes, bytes]]:
    """What to verify for ``txs`` under the keys ``validator``'s committed state names
    (unknown senders are left out: execution rejects them)."""
    items = []
    for tx in txs:
        try:
            alg, pk = validator.app.signer_key(tx.sender)
        except RejectedTx:
            continue
        if alg == COMMITTEE_ALG:  # a k-of-n committee's members are checked by execution
            continue
        items.append((alg, pk, tx.signing_bytes, tx.sig, TX_CONTEXT))
    return items


def checks_from(items: Sequence[tuple[str, bytes, bytes, bytes, bytes]], oks: Sequence[bool]) -> SigCheck:
    """A ``SigCheck`` backed by a precomputed batch, verifying anything not in it."""
    table = {(m, s, a, pk): ok for (a, pk, m, s, _c), ok in zip(items, oks, strict=True)}

    def check(tx: Tx, alg: str, pk: bytes) -> bool:
        hit = table.get((tx.signing_bytes, tx.sig, alg, pk))
        return default_sig_check(tx, alg, pk) if hit is None else hit

    return check


class EmbeddedNetwork:
    """n in-process validators, one ordered log, SQLite per validator."""

    def __init__(self, genesis: Genesis, keys: Sequence[SigningKey], data_dir: str | Path, *,
                 modules: Sequence[Module] | None = None, max_block_txs: int = 500,
                 faults: Mapping[int, str] | None = None, sig_pool: SigPool | None = None,
                 snapshot_every: int = 50, quota: QuotaPolicy | None = None,
                 mempool_capacity: int = 20_000, orderer: Orderer | None = None,
                 hosted: Sequence[int] = (), durable: bool = True) -> None:
        """``hosted``: indices of validators (not 0, the entry) that run in a worker process
        of their own (``node.validator_host``), with the fixed module list's catalog
        versions (``modules`` must be None then): they execute, check signatures, vote and
        store there, while this process executes the others (issue 17: a second core).
        ``durable``: the validators' stores' (``BlockStore``: False for a simulation's)."""
        if 0 in hosted or (hosted and modules is not None):
            raise ValueError("hosted validators: not the entry (0), and only with modules=None")
        self.genesis = genesis
        self.data_dir = Path(data_dir)
        self.durable = durable
        # the caller's fixed module list, or None: each application builds the versions its
        # state records from the catalog (so a validator added after an upgrade runs them)
        self.modules = modules
        self.down: set[int] = set()  # crashed validators (their stores stay on disk)
        faults = dict(faults or {})
        self.hosted = frozenset(hosted)
        fresh = not any(self._store_path(i).exists() for i in range(len(keys)))
        self.host = ValidatorHost() if hosted else None
        # hosted ones first: the host starts up and opens them (its replies read with the
        # first one wanted) while this process opens its own
        made = {i: self._validator(i, keys[i], faults.get(i), snapshot_every)
                for i in sorted(range(len(keys)), key=lambda i: i not in self.hosted)}
        self.validators: list[Validator | HostedValidator] = [made[i] for i in range(len(keys))]
        if not fresh:
            # a crash can leave validators at different heights: laggards catch up from the
            # highest peer's certified blocks (verified, re-executed) before anything else
            leader = max(self.validators, key=lambda v: v.height)
            for v in self.validators:
                if v is not leader:
                    _catch_up(v, leader.store)
            tips = {v.last_hash for v in self.validators}
            if len(tips) != 1:
                raise BlockError("validator stores disagree on the chain tip after catch-up")
        # else every store is new, made here from ``genesis``: each validator is at it, and
        # the network goes on without waiting for the host to start up (~0.5-0.8 s: its
        # imports and its validators' opening, beside the caller's next work; issue 17). A
        # hosted validator the host failed to open raises ``BlockError`` at the network's
        # first request there (a tick).
        self.orderer: Orderer = orderer or LocalOrderer(sole_reader=True)
        entry = self.entry
        self.cutter = BlockCutter(genesis.chain_id, max_block_txs, 0, entry.app.slot_time)
        self._tick_offenders: dict[int, str] = {}  # named at the next block
        self.sig_pool = sig_pool
        self.mempool = Mempool(entry.app, mempool_capacity, quota or reputation_quota(entry), sig_pool)
        self.halted: ChainHalted | None = None
        self.evidence: list[Equivocation] = []
        self.offenders: dict[int, set[str]] = {}
        self.finalized: deque[FinalizedBlock] = deque(maxlen=RECENT_BLOCKS)
        """The last ``RECENT_BLOCKS`` finalized blocks (the stores hold every one: a long run's
        memory stays flat)."""
        self.finalized_count = 0
        self.cert_votes = 0
        """Votes in the certificates of every block finalized here."""

    def _store_path(self, i: int) -> Path:
        return self.data_dir / f"validator-{i}.sqlite"

    def _validator(self, i: int, key: SigningKey, fault: str | None,
                   snapshot_every: int) -> Validator | HostedValidator:
        path = self._store_path(i)
        if i in self.hosted and self.host is not None:
            return HostedValidator(self.host, i, key, self.genesis, path, fault, snapshot_every,
                                   durable=self.durable)
        return Validator(i, key, self.genesis, path, self.modules, fault, snapshot_every,
                         durable=self.durable)

    @property
    def entry(self) -> Validator:
        """The validator whose mempool admits client transactions."""
        v = self.validators[0]
        if not isinstance(v, Validator):
            raise BlockError("the entry validator runs in this process")
        return v

    @property
    def height(self) -> int:
        return self.entry.height

    def submit(self, raw: bytes, now_s: float = 0.0) -> Tx:
        """Admit a signed transaction (raises ``RejectedTx`` naming the rule)."""
        return self.mempool.admit(raw, now_s)

    def submit_many(self, raws: Sequence[bytes], now_s: float = 0.0) -> list[Tx | RejectedTx]:
        return self.mempool.admit_many(raws, now_s)

    def tick(self, time_s: int, max_txs: int | None = None) -> list[FinalizedBlock]:
        """Order pending transactions, let every validator tick at ``time_s`` (seconds since
        genesis, signed ticks), and finalize what the log now closes."""
        txs = self.mempool.take(max_txs if max_txs is not None else len(self.mempool))
        entries = [Entry("tx", tx=tx.raw) for tx in txs]
        keys = self.entry.app.validator_keys()
        for h in self.live:
            if isinstance(h, HostedValidator):  # signed there while the others sign here
                h.start_ticks(time_s * 1000)
        for v in self.live:
            ticks = v.ticks(time_s * 1000)
            src = v.vote_index()
            for t in ticks:  # in process we know who sent each tick, and the true time
                why = self._bad_tick(v, t, time_s * 1000, keys)
                if why is not None and src is not None:
                    self._tick_offenders.setdefault(src, why)
            entries += [Entry("tick", tick=t) for t in ticks]
        positions = self.orderer.append_many(entries)
        if positions:  # a remote log: wait until our entries have come back to us
            self.orderer.wait_for(max(positions) + 1)
        return self.process()

    def tick_stamped(self, time_s: int) -> list[FinalizedBlock]:
        """``tick`` for a batch of any size: every block it closes carries ``time_s``.

        ``tick`` orders every waiting transaction ahead of the validators' ticks, and the
        cutter closes a block that reaches ``max_block_txs`` at once, at the time of the
        block before it (the protocol's rule: only ticks set a block's time). A batch larger
        than a block thus put its first blocks at the previous tick's time: readings sent
        after their slot ended executed as if before it (``reading-early``; at 100 members
        the next day's pseudonym registrations, ~4,800 transactions at 18:00, took every
        reading of 17:45 with them). Here the validators tick after each block's worth
        instead, as a running node's do every ``tick_s``, so those blocks close at
        ``time_s``. A batch that fits in a block is one ``tick``, as before."""
        out: list[FinalizedBlock] = []
        while True:
            room = self.cutter.max_txs - 1 - self.cutter.open_txs - self._unscanned_txs()
            if room <= 0 or len(self.mempool) <= room:
                break
            out += self.tick(time_s, room)
        return out + self.tick(time_s)

    def blocks_to_close(self) -> int:
        """At most how many blocks ``tick_stamped`` would close now: the tick's block, which
        holds up to a block's worth (``max_txs - 1``) of what waits in the mempool and the
        open block, one more for each further block's worth, and one for each batch put in
        the log straight (a batch is never split: it may start a block of its own). A bound,
        not a count: a caller holding work until the last tick that still lands it below a
        height (``SimContext.defer_later``'s ``last_height``) holds it while even this many
        blocks would leave room."""
        per_block = max(1, self.cutter.max_txs - 1)
        waiting = len(self.mempool) + self.cutter.open_txs
        return max(1, -(-waiting // per_block)) + self._unscanned_batches()

    def _unscanned_batches(self) -> int:
        """Transaction batches in the log the cutter has not read yet."""
        start = self.cutter.scanned
        n = self.orderer.length() - start
        return sum(1 for e in self.orderer.read(start, n) if e.kind != "tick") if n else 0

    def _unscanned_txs(self) -> int:
        """Transactions in the log the cutter has not read yet (put there straight, not
        through the mempool: a relay's copies in the replay scenario)."""
        start = self.cutter.scanned
        n = self.orderer.length() - start
        return sum(len(e.txs()) for e in self.orderer.read(start, n) if e.kind != "tick") if n else 0

    def _bad_tick(self, v: Validator | HostedValidator, tick: Tick, time_ms: int,
                  keys: Sequence[tuple[str, bytes]]) -> str | None:
        """Why a tick ``v`` produced is faulty (the log's rule ignores it, or outvotes a
        clock far ahead): another validator's name, another chain, a bad signature, or a
        time ahead of the network's by more than ``MAX_TICK_AHEAD_MS``."""
        if tick.signer != v.key.address:
            return "tick in another validator's name"
        if not self.cutter.clock.valid(tick, keys, 0):
            return "invalid tick (signature or chain)"
        if tick.time_ms > time_ms + MAX_TICK_AHEAD_MS:
            return "tick ahead of the network's time"
        return None

    def process(self) -> list[FinalizedBlock]:
        out: list[FinalizedBlock] = []
        while True:
            if self.halted is not None:
                raise self.halted
            blk = self.cutter.next_block(self.orderer, self.entry.app.validator_keys())
            if blk is None:
                # the cutter holds the open block's transactions itself: what lies below
                # its position is in blocks (the stores), not needed from the log again
                self.orderer.forget_before(self.cutter.pos)
                return out
            out.append(self._run_block(blk))

    def _run_block(self, blk: CutBlock) -> FinalizedBlock:
        txs: list[Tx] = []
        for raw in blk.txs:
            with contextlib.suppress(RejectedTx):  # execution records it in the receipt
                txs.append(decode_tx(raw))
        # validators 1..n-1 check every signature themselves, in the pool, while the entry
        # validator executes with the signatures its admission already verified. One batch
        # for all of them (each validator's items are its own checks: a signature is still
        # verified once per validator), so that a small block goes to the pool as well
        # instead of being verified here, ahead of the entry's execution (issue 17)
        # Hosted validators start first: they check, execute and vote in their own process
        # meanwhile.
        hosted = [v for v in self.live if isinstance(v, HostedValidator)]
        for h in hosted:
            h.start_execute(blk)
        pending = [(v, block_sig_items(txs, v)) for v in self.live[1:]
                   if isinstance(v, Validator)]
        flat = [item for _, items in pending for item in items]
        futs = self.sig_pool.submit(flat) if self.sig_pool else None
        headers = {0: self.entry.execute(blk, self.mempool.cache.check)}
        oks = SigPool.gather(futs) if futs is not None else [
            verify_signature(a, pk, m, sig, ctx) for a, pk, m, sig, ctx in flat]
        at = 0
        for local, items in pending:
            # items skip unknown senders, so they are checked from their own bytes
            headers[local.index] = local.execute(blk, checks_from(items, oks[at:at + len(items)]))
            at += len(items)
        for h in hosted:
            headers[h.index] = h.end_execute()
        keys = self.entry.app.validator_keys()
        tally = VoteTally(len(keys), self.genesis.chain_id, headers[0].height)
        bad_ticks, self._tick_offenders = self._tick_offenders, {}
        for v in self.live:
            src = v.vote_index()  # in-process: we know which node a vote came from
            for vote in v.votes(headers[v.index]):
                tally.add(vote, keys, source=src)
        for i, why in bad_ticks.items():  # named for this block too, after its votes' faults
            tally.offenders.setdefault(i, why)
        cert = tally.certificate()
        self.evidence.extend(tally.evidence)
        if cert is None:
            for v in self.live:
                v.abandon()
            self.halted = ChainHalted(
                f"no header at height {blk_height(headers)} reached a quorum of "
                f"{quorum(len(keys))}/{len(keys)} votes; offenders: {dict(tally.offenders)}")
            self._record(tally, bad_ticks)
            raise self.halted
        for i, vote in tally.voted.items():
            if vote.header_hash != cert.header_hash and i not in tally.offenders:
                tally.offenders[i] = "voted for a header the quorum did not certify"
        # hosted validators first: their stores are written in the host (no reply awaited)
        # while this process writes its own, instead of after them — the host's next
        # request (the next block's ticks) waited for those writes (issue 17)
        for v in sorted(self.live, key=lambda v: not isinstance(v, HostedValidator)):
            v.finalize(cert)
        self._record(tally, bad_ticks)
        fb = FinalizedBlock(headers[0], self.entry.last_result, cert, dict(tally.offenders))
        self.finalized.append(fb)
        self.finalized_count += 1
        self.cert_votes += len(cert.votes)
        return fb

    def _record(self, tally: VoteTally, bad_ticks: Mapping[int, str]) -> None:
        reasons = [*tally.offenders.items(), *bad_ticks.items()]
        for i, reason in reasons:
            self.offenders.setdefault(i, set()).add(reason)
        for v in self.live:
            if v.fault is None:
                for ev in tally.evidence:
                    v.add_evidence(ev.height, "equivocation", ev.to_obj())
                for i, reason in sorted(set(reasons)):
                    if reason != "equivocation":
                        v.add_evidence(v.height, "fault", {"validator": i, "reason": reason})

    def add_validator(self, key: SigningKey, fault: str | None = None,
                      modules: Sequence[Module] | None = None) -> Validator:
        """Attach a new validator node (its own SQLite store) holding ``key``.

        It catches up from the entry validator's certified blocks (each verified and
        re-executed) and then follows every block. It votes from the height at which
        governance activates its key (``governance/propose_add_validator``); before that,
        and after it is voted out, it is a full node that does not vote. Attaching it early
        is harmless: add it before the activation height so that its first vote counts.
        """
        if self.halted is not None:
            raise self.halted
        i = len(self.validators)
        v = Validator(i, key, self.genesis, self.data_dir / f"validator-{i}.sqlite",
                      modules if modules is not None else self.modules, fault,
                      self.entry.snapshot_every, durable=self.durable)
        catch_up(v, self.entry.store)
        if v.last_hash != self.entry.last_hash:
            v.close()
            raise BlockError("the new validator's store disagrees with the chain tip")
        self.validators.append(v)
        return v

    @property
    def live(self) -> list[Validator | HostedValidator]:
        """The validators that are running (every one but the crashed)."""
        return [v for v in self.validators if v.index not in self.down]

    def crash(self, i: int) -> None:
        """Kill validator ``i`` as a process crash would: whatever it held in memory is
        gone, its SQLite store stays. The others go on as long as a quorum of them is up.
        The entry validator (which admits client transactions) is not crashed here:
        clients would fail over to another node's API, which the embedded network does
        not model."""
        if not 0 < i < len(self.validators):
            raise ValueError(f"validator {i} cannot be crashed (1..{len(self.validators) - 1})")
        if i not in self.down:
            self.validators[i].close()
            self.down.add(i)

    def restart(self, i: int) -> Validator | HostedValidator:
        """Start crashed validator ``i`` again from its own store (replayed from its last
        snapshot), then catch up from the entry validator's certified blocks (each verified
        and re-executed); from the next block it votes again. Raises ``BlockError`` if its
        store disagrees with the chain tip afterwards."""
        if i not in self.down:
            raise ValueError(f"validator {i} is not down")
        old = self.validators[i]
        v = self._validator(i, old.key, old.fault, old.snapshot_every)
        _catch_up(v, self.entry.store)
        if v.last_hash != self.entry.last_hash:
            v.close()
            raise BlockError(f"restarted validator {i} disagrees with the chain tip")
        self.validators[i] = v
        self.down.discard(i)
        return v

    def state_roots(self) -> list[bytes]:
        return [v.state_root() for v in self.live]

    def close(self) -> None:
        for v in self.live:
            v.close()
        if self.host is not None:
            self.host.close()
            self.host = None


def _catch_up(v: Validator | HostedValidator, peer: BlockStore) -> None:
    """``node.sync.catch_up`` of ``v`` from ``peer`` (in the host for a hosted one)."""
    if isinstance(v, HostedValidator):
        v.catch_up(peer.path)
    else:
        catch_up(v, peer)


def reputation_quota(v: Validator) -> QuotaPolicy:
    """Admission quotas scaled by the ledger's reputation score (docs/threat-model.md row 2 + row 6)."""
    def score(addr: bytes) -> int:
        return int(v.app.query(f"reputation/score/{addr.hex()}")["score"])

    return QuotaPolicy(reputation_of=score)


def blk_height(headers: Mapping[int, Header]) -> int:
    return next(iter(headers.values())).height
