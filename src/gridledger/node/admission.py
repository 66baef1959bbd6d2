"""Admission control and the mempool (docs/threat-model.md row 2: denial of service).

One admission path (issue 18.3): admission runs exactly the checks execution runs before a
body touches state — the envelope (chain id, algorithm, sender, signature, nonce), the kind
and the kind's stateless ``parse_<kind>`` — through ``Application`` (``check_stateless``,
``signer_key``), plus the node's own resource rules (duplicates, quota, mempool size).
Order, cheapest first: size -> encoding -> chain/algorithm/kind/body parse -> sender ->
signature -> nonce -> quota. A flood therefore costs the attacker a valid signature per
message before it costs us a quota lookup, and a garbage flood costs us only a length
check, a CBOR parse and a body parse.

The nonce a sender's next transaction needs is the chain's next nonce plus what this
mempool holds for it: queued transactions, and transactions taken for the log but not yet
seen in a committed block ("in flight"). Every commit (``Application.on_commit``) drops
what the block carried, whatever its outcome, and queued transactions whose nonce the
chain has used; an in-flight transaction never seen in a block is forgotten after
``INFLIGHT_COMMITS`` commits. So the mempool's view falls back to the chain's whenever an
admitted transaction fails before consuming its nonce, and can never drift from it for good.

Quotas are token buckets per sender (rate and burst scaled by reputation). The mempool is
bounded; when full, the sender holding the most pending transactions loses its newest one
(fair eviction), and blocks are filled round-robin across senders so one identity cannot
crowd out the others.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gridledger.crypto.sig import address_of
from gridledger.errors import (
    MempoolFull,
    QuotaExceeded,
    RejectedTx,
    ReplayedNonce,
)
from gridledger.ledger.app import Application
from gridledger.ledger.block import Header
from gridledger.ledger.execute import (
    MACHINE_FAULTS,
    SigCheck,
    authenticate,
    check_nonce,
    default_sig_check,
    internal_error,
    single_key,
)
from gridledger.ledger.module import Signer
from gridledger.ledger.tx import TX_CONTEXT, Tx, decode_tx
from gridledger.memo import Memo
from gridledger.node.sigpool import SigPool, _verify_chunk

INFLIGHT_COMMITS = 64
"""Commits after which a transaction taken for the log but never seen in a block (a failed
publish, a lost log entry) stops counting towards its sender's next nonce."""


BUCKET_SWEEP_COMMITS = 16
"""Commits between sweeps of the senders' rate buckets (``Mempool._forget_full_buckets``)."""


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float
    last_s: float

    def take(self, now_s: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_per_s)
        self.last_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full_at(self, now_s: float) -> bool:
        """Whether it has refilled to its burst by ``now_s``: then it is a fresh bucket."""
        return self.tokens + (now_s - self.last_s) * self.rate_per_s >= self.burst


@dataclass
class QuotaPolicy:
    rate_per_s: float = 20.0
    burst: float = 200.0
    # reputation score (0..1000, 500 neutral) -> multiplier; sanctions lower it
    reputation_of: Callable[[bytes], int] = field(default=lambda _a: 500)

    def scale(self, addr: bytes) -> float:
        return max(0.1, self.reputation_of(addr) / 500.0)


class SigCache:
    """Signatures this node already checked, keyed by (tx hash, key address).

    ML-DSA verification is a pure function of (key, message, signature, context), so a
    result can be reused; failures are remembered too, so a bad signature that reaches the
    log costs one check however many times it is looked at.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        # aged by its count only, not by block time: the governance dry run (a forked child
        # with this cache as its signature check) replays up to three days of blocks, and
        # re-verified their signatures when the cache kept an hour or two (thirteenth
        # session, +6 % CPU at 30 members); ~190 bytes an entry
        self._ok: Memo[tuple[bytes, bytes], bool] = Memo(capacity, ages=False)
        self._bad: Memo[tuple[bytes, bytes], bool] = Memo(max(2, capacity // 10), ages=False)
        self._addr: dict[tuple[str, bytes], bytes] = {}  # key -> address, memoised

    def _address(self, alg: str, pk: bytes) -> bytes:
        a = self._addr.get((alg, pk))
        if a is None:
            if len(self._addr) >= 10_000:
                self._addr.clear()
            a = self._addr[(alg, pk)] = address_of(alg, pk)
        return a

    def add(self, tx_hash: bytes, alg: str, pk: bytes) -> None:
        self._ok.put((tx_hash, self._address(alg, pk)), True)

    def known(self, tx: Tx, alg: str, pk: bytes) -> bool:
        """Whether the signature of ``tx`` under ``(alg, pk)`` was already checked."""
        k = (tx.hash, self._address(alg, pk))
        return k in self._ok or k in self._bad

    def check(self, tx: Tx, alg: str, pk: bytes) -> bool:
        """A ``SigCheck`` that trusts the cache and verifies anything else."""
        k = (tx.hash, self._address(alg, pk))
        if self._ok.get(k):
            return True
        if self._bad.get(k):
            return False
        ok = default_sig_check(tx, alg, pk)
        (self._ok if ok else self._bad).put(k, True)
        return ok


def _known(ok: bool) -> SigCheck:
    """A ``SigCheck`` returning a result already computed (by the signature pool)."""

    def check(_tx: Tx, _alg: str, _pk: bytes) -> bool:
        return ok

    return check


class Mempool:
    """Admission checks plus a bounded, fair queue of admitted transactions."""

    def __init__(self, app: Application, capacity: int = 20_000,
                 quota: QuotaPolicy | None = None, sig_pool: SigPool | None = None,
                 max_tx_bytes: int = 16 * 1024) -> None:
        self.app = app
        self.capacity = capacity
        self.quota = quota or QuotaPolicy()
        self.sig_pool = sig_pool
        self.max_tx_bytes = max_tx_bytes
        self.cache = SigCache()
        self._queues: dict[bytes, deque[Tx]] = {}
        # sender -> nonce -> (tx hash, commit count when taken): ordered, not yet committed
        self._inflight: dict[bytes, dict[int, tuple[bytes, int]]] = {}
        self._commits = 0
        self._buckets: dict[bytes, TokenBucket] = {}
        self._now_s = 0.0  # the latest admission time (the buckets' clock)
        self._size = 0
        self._seen: set[bytes] = set()
        self.rejected: dict[str, int] = {}
        self._lock = threading.RLock()  # admission threads vs the producer's take()
        self._validators: tuple[int, frozenset[bytes]] = (-1, frozenset())
        app.on_commit(self._committed)

    def __len__(self) -> int:
        return self._size

    def expected_nonce(self, sender: bytes) -> int:
        """The nonce the sender's next transaction must carry here: the chain's next nonce,
        or one past the highest nonce this mempool queues or has in flight for it."""
        with self._lock:
            chain = self.app.next_nonce(sender)
            q = self._queues.get(sender)
            top = q[-1].nonce + 1 if q else 0
            flying = self._inflight.get(sender)
            if flying:
                top = max(top, max(flying) + 1)
            return max(chain, top)

    def _reject(self, exc: RejectedTx) -> RejectedTx:
        self.rejected[exc.rule] = self.rejected.get(exc.rule, 0) + 1
        return exc

    def admit(self, raw: bytes, now_s: float) -> Tx:
        """Admit one transaction or raise the ``RejectedTx`` naming the broken rule."""
        got = self.admit_many([raw], now_s)[0]
        if isinstance(got, RejectedTx):
            raise got
        return got

    def admit_many(self, raws: Sequence[bytes], now_s: float) -> list[Tx | RejectedTx]:
        """Admit a batch; signatures are checked in parallel when a pool is configured.

        Returns, per input, the admitted ``Tx`` or the ``RejectedTx``, whatever the batch's
        length (``admit`` raises it instead; a batch of one used to raise too, which the
        API's ``/v1/txs`` turned into a plain-text 500). Thread-safe: the mempool's own
        lock guards only the enqueueing, so a node can admit while it executes a block. The
        state reads (sender's key, nonce, reputation) are single lookups that need no lock;
        a key rotated between admission and execution misses the signature cache and is
        checked again under the new key.
        """
        out: list[Tx | RejectedTx | None] = [None] * len(raws)
        decoded: list[tuple[int, Tx, Signer]] = []
        for i, raw in enumerate(raws):
            try:
                tx = decode_tx(raw, self.max_tx_bytes)  # size, then encoding
                if tx.hash in self._seen:
                    raise ReplayedNonce("duplicate of a pending transaction")
                # what execution checks before the body touches state, minus the crypto:
                # chain id, algorithm name, kind, the kind's stateless body parse
                self.app.check_stateless(tx)
                decoded.append((i, tx, self.app.signer(tx.sender)))  # unknown-sender
            except RejectedTx as exc:
                out[i] = self._reject(exc)
            except MACHINE_FAULTS:
                raise
            except Exception as exc:  # a parser defect: refused as execution would fail it
                out[i] = self._reject(internal_error(exc, "admission"))
        # single-key signatures in the pool; a committee's members are checked by
        # authenticate itself (k signatures, memoised)
        singles = [(tx, s) for _, tx, s in decoded if single_key(s)]
        items = [(s.alg, s.pk, tx.signing_bytes, tx.sig, TX_CONTEXT) for tx, s in singles]
        oks = self.sig_pool.verify_many(items) if self.sig_pool else _verify_chunk(items)
        pooled = {id(tx): ok for (tx, _s), ok in zip(singles, oks, strict=True)}
        with self._lock:
            for i, tx, signer in decoded:
                try:
                    # execution's signature rule, with the result the pool computed
                    authenticate(tx, signer, _known(pooled.get(id(tx), False)))
                    if single_key(signer):
                        self.cache.add(tx.hash, signer.alg, signer.pk)
                    if tx.hash in self._seen:  # the same bytes admitted meanwhile
                        raise ReplayedNonce("duplicate of a pending transaction")
                    self._enqueue(tx, now_s)
                    out[i] = tx
                except RejectedTx as exc:
                    out[i] = self._reject(exc)
        return out  # type: ignore[return-value]

    def _enqueue(self, tx: Tx, now_s: float) -> None:
        expected = self.expected_nonce(tx.sender)
        chain = self.app.next_nonce(tx.sender)
        if chain <= tx.nonce < expected:
            # not "already used": the account (GET /v1/accounts) still shows this nonce as
            # next, and a second `tx transfer` while the first waits read it there
            raise ReplayedNonce(f"nonce {tx.nonce} is taken by a transaction of this sender "
                                f"waiting to be committed (the chain's next is {chain}, the "
                                f"next free here is {expected})")
        check_nonce(tx.nonce, expected)
        self._now_s = max(self._now_s, now_s)
        bucket = self._buckets.get(tx.sender)
        scale = self.quota.scale(tx.sender)
        if bucket is None:
            bucket = TokenBucket(self.quota.rate_per_s * scale, self.quota.burst * scale,
                                 self.quota.burst * scale, now_s)
            self._buckets[tx.sender] = bucket
        bucket.rate_per_s = self.quota.rate_per_s * scale
        bucket.burst = self.quota.burst * scale
        if not bucket.take(now_s):
            raise QuotaExceeded(f"sender over its quota of {bucket.rate_per_s:.1f} tx/s "
                                f"(burst {bucket.burst:.0f})")
        if self._size >= self.capacity:
            self._evict_for(tx.sender)
        q = self._queues.setdefault(tx.sender, deque())
        q.append(tx)
        self._size += 1
        self._seen.add(tx.hash)

    def validator_addresses(self) -> frozenset[bytes]:
        """Addresses of the validators that certify the next block (memoised per commit)."""
        memo_at, addrs = self._validators
        if memo_at != self._commits:
            addrs = frozenset(address_of(alg, pk) for alg, pk in self.app.validator_keys())
            self._validators = (self._commits, addrs)
        return addrs

    def _evict_for(self, sender: bytes) -> None:
        """Make room: the heaviest sender loses its newest transaction (fair eviction). A
        validator's transaction (a governance vote, a committee share) makes room while any
        other sender holds one: a flood of many senders with one transaction each must not
        keep the validators' votes out until their proposal expires."""
        validators = self.validator_addresses()
        if sender in validators:  # (a validator's own flood is still capped by its quota)
            others = [a for a, q in self._queues.items() if q and a not in validators]
            if not others:
                raise MempoolFull(f"mempool holds {self._size} transactions, all validators'")
            heaviest = max(others, key=lambda a: (len(self._queues[a]), a))
        else:
            heaviest = max(self._queues, key=lambda a: (len(self._queues[a]), a))
            mine = len(self._queues.get(sender, ()))
            if heaviest == sender or len(self._queues[heaviest]) <= mine + 1:
                raise MempoolFull(f"mempool holds {self._size} transactions and this sender "
                                  f"already has its fair share")
        victim = self._queues[heaviest].pop()
        self._size -= 1
        self._seen.discard(victim.hash)
        self.rejected["evicted"] = self.rejected.get("evicted", 0) + 1

    def take(self, max_n: int) -> list[Tx]:
        """Up to ``max_n`` transactions, round-robin across senders: the validators' first in
        each round, then the others sorted by address. Without the validators' lane, a
        validator whose address sorts after a block's worth of busy senders was put in a
        tick's last blocks, and a burst of many senders could push the validators' votes on
        an upgrade past the proposal's last voting height (found while holding votes by
        height, tenth session). They stay counted as in flight until a committed block
        carries them."""
        with self._lock:
            out = self._take(max_n)
            for tx in out:
                self._inflight.setdefault(tx.sender, {})[tx.nonce] = (tx.hash, self._commits)
            return out

    def _take(self, max_n: int) -> list[Tx]:
        out: list[Tx] = []
        validators = self.validator_addresses()
        while len(out) < max_n and self._size:
            for sender in sorted(self._queues, key=lambda a: (a not in validators, a)):
                q = self._queues[sender]
                if q:
                    out.append(q.popleft())
                    self._size -= 1
                    if len(out) == max_n:
                        break
            for s in [s for s, q in self._queues.items() if not q]:
                del self._queues[s]
        for tx in out:
            self._seen.discard(tx.hash)
        return out

    def _committed(self, _header: Header, raw_txs: Sequence[bytes]) -> None:
        """After a commit: forget in-flight transactions the block carried (whatever their
        outcome), in-flight ones too old to still come, and queued ones whose nonce the
        chain has used."""
        with self._lock:
            self._commits += 1
            touched: set[bytes] = set()
            for raw in raw_txs:
                try:
                    tx = decode_tx(raw)
                except RejectedTx:
                    continue
                flying = self._inflight.get(tx.sender)
                if flying is not None and flying.get(tx.nonce, (b"",))[0] == tx.hash:
                    del flying[tx.nonce]
                touched.add(tx.sender)
            for sender in list(self._inflight):
                flying = self._inflight[sender]
                for n in [n for n, (_h, at) in flying.items()
                          if self._commits - at > INFLIGHT_COMMITS]:
                    del flying[n]
                if not flying:
                    del self._inflight[sender]
            for sender in sorted(touched):
                self._drop_used(sender)
            if self._commits % BUCKET_SWEEP_COMMITS == 0:
                self._forget_full_buckets()

    def _forget_full_buckets(self) -> None:
        """Drop the buckets that refilled to their burst: a sender's next transaction makes
        an equal one afresh. Without it the mempool kept a bucket for every sender it ever
        saw — each pseudonym and reading key, members x 96 x 2 a day (issue 17)."""
        for sender in [a for a, b in self._buckets.items() if b.full_at(self._now_s)]:
            del self._buckets[sender]

    def _drop_used(self, sender: bytes) -> None:
        chain = self.app.next_nonce(sender)
        flying = self._inflight.get(sender)
        if flying:
            for n in [n for n in flying if n < chain]:
                del flying[n]
            if not flying:
                del self._inflight[sender]
        q = self._queues.get(sender)
        while q and q[0].nonce < chain:
            stale = q.popleft()
            self._size -= 1
            self._seen.discard(stale.hash)
        if q is not None and not q:
            del self._queues[sender]
