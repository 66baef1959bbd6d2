"""The state store and its commitment.

State is a map from byte keys to canonical-CBOR byte values. Keys are namespaced by module
(``bank/bal/<addr>``). Writes are journalled so a transaction applies inside a snapshot:
``begin()`` … ``commit()`` or ``rollback()`` (execution-specs style).

Commitment: keys fall into 4,096 buckets by ``SHA3(key)``; a bucket's root is one hash over
its entries' leaf hashes in key order (``bucket_hash``: ``SHA3(0x02 ‖ leaf_0 ‖ … ‖
leaf_{n-1})``); the top tree's leaf for bucket ``b`` commits to the bucket's size and root,
``hash_leaf(size:4 ‖ bucket root)``, and the state root is the top tree's (binary Merkle)
root. Only buckets touched by a block are rehashed.

Proofs a light client or auditor checks with nothing but the state root:

* ``MembershipProof`` (``verify_membership``): ``key -> value`` at ``index`` of its bucket,
  with the bucket's leaf hashes (``bucket_leaves``) and the top tree's path;
* ``AbsenceProof`` (``verify_absence``): ``key`` is not set — its bucket is empty, or the
  proof shows the two adjacent entries around it (or the first / last entry) of its bucket,
  with the bucket's leaf hashes.

The bucket's size is committed in the top leaf (and is the number of leaves a proof must
carry), so "first", "last" and "adjacent" are facts about the real bucket, not claims of
the prover (issue 21.7). Buckets were binary trees of their entries until the eleventh
session of issue 17: rehashing them was ~30 % of a block's execution; a flat bucket is one
hash per touched bucket, at the cost of proofs that carry a bucket's leaves (~3 at 30
members, ~100 at 1,000: 3 KB, beside the ~13 KB certificate a proof is served with).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cbor2
from sortedcontainers import SortedList

from gridledger.crypto.merkle import (
    EMPTY_ROOT,
    FlatBucket,
    IncrementalRoot,
    bucket_hash,
    hash_leaf,
    verify_inclusion,
)
from gridledger.ledger import codec
from gridledger.memo import Memo

N_BUCKETS = 4096


BUCKETS_KNOWN = 65_536
"""Keys whose bucket ``bucket_of`` remembers (a ``Memo``: aged by block time as well)."""
_BUCKET_OF: Memo[bytes, int] = Memo(BUCKETS_KNOWN)


def bucket_of(key: bytes) -> int:
    """The key's bucket: the first two bytes of ``SHA3(key)`` mod ``N_BUCKETS``.

    Remembered per key: a block computes a written key's bucket when it hashes the key's
    entry and again when the block is detached for its vote, and balances, nonces and slot
    records are written block after block — a SHA3 call from Python costs ~10 lookups
    (issue 17, thirteenth session). A pure function of the key (and ``N_BUCKETS``, which
    tests lower: the memo's value carries the count it was computed under)."""
    got = _BUCKET_OF.get(key)
    if got is not None and got >> 16 == N_BUCKETS:
        return got & 0xFFFF
    d = hashlib.sha3_256(key).digest()
    b = ((d[0] << 8) | d[1]) % N_BUCKETS
    _BUCKET_OF.put(key, N_BUCKETS << 16 | b)
    return b


def prefix_end(prefix: bytes) -> bytes | None:
    """The least byte string above every string that starts with ``prefix`` (None: no such
    string — ``prefix`` is empty or all 0xff): its last byte below 0xff, plus one, with
    what follows dropped."""
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else None


_SHA3 = hashlib.sha3_256


def entry_hash(key: bytes, value: bytes) -> bytes:
    return hash_leaf(len(key).to_bytes(4, "big") + key + value)


def bucket_leaf(size: int, bucket_root: bytes) -> bytes:
    """The top tree's leaf for a bucket: its entry count and its Merkle root."""
    return hash_leaf(size.to_bytes(4, "big") + bucket_root)


_EMPTY_LEAF = bucket_leaf(0, EMPTY_ROOT)
_EMPTY_TOPS: dict[int, IncrementalRoot] = {}


def _empty_top() -> IncrementalRoot:
    """The top tree of a state with every bucket empty (built once per process; by
    bucket count, which tests lower to fill buckets)."""
    top = _EMPTY_TOPS.get(N_BUCKETS)
    if top is None:
        top = _EMPTY_TOPS[N_BUCKETS] = IncrementalRoot()
        top.root([_EMPTY_LEAF] * N_BUCKETS)
    return top.copy()


@dataclass(frozen=True)
class MembershipProof:
    """Proof that ``key`` maps to ``value`` in the state with a given root: the entry is
    leaf ``index`` of its bucket's ``bucket_size`` leaves (``bucket_leaves``, key order),
    and ``top_path`` leads from the bucket's top leaf to the root."""

    key: bytes
    value: bytes
    bucket: int
    index: int
    bucket_size: int
    bucket_leaves: list[bytes]
    top_path: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "value": self.value.hex(), "bucket": self.bucket,
                "index": self.index, "bucket_size": self.bucket_size,
                "bucket_leaves": [h.hex() for h in self.bucket_leaves],
                "top_path": [h.hex() for h in self.top_path]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MembershipProof:
        return cls(bytes.fromhex(d["key"]), bytes.fromhex(d["value"]), int(d["bucket"]),
                   int(d["index"]), int(d["bucket_size"]),
                   [bytes.fromhex(h) for h in d["bucket_leaves"]],
                   [bytes.fromhex(h) for h in d["top_path"]])


def _bucket_root(size: int, leaves: list[bytes]) -> bytes | None:
    """The root of a bucket of ``size`` entries from a proof's ``leaves`` (None: they are
    not ``size`` 32-byte hashes)."""
    if len(leaves) != size or any(not isinstance(h, bytes) or len(h) != 32 for h in leaves):
        return None
    return bucket_hash(leaves)


def verify_membership(state_root: bytes, proof: MembershipProof) -> bool:
    """Light-client check: does ``proof.key -> proof.value`` belong to ``state_root``, at
    entry ``proof.index`` of a bucket of ``proof.bucket_size`` entries?"""
    if proof.bucket != bucket_of(proof.key) or not 0 <= proof.bucket < N_BUCKETS:
        return False
    n = proof.bucket_size
    if not 0 <= proof.index < n < 2**32:
        return False
    bucket_root = _bucket_root(n, proof.bucket_leaves)
    if bucket_root is None or proof.bucket_leaves[proof.index] != entry_hash(proof.key,
                                                                           proof.value):
        return False
    return verify_inclusion(state_root, bucket_leaf(n, bucket_root),
                            proof.bucket, N_BUCKETS, proof.top_path)


@dataclass(frozen=True)
class Neighbour:
    """An entry next to an absent key in its bucket: its key, value and position."""

    key: bytes
    value: bytes
    index: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "value": self.value.hex(), "index": self.index}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Neighbour:
        return cls(bytes.fromhex(d["key"]), bytes.fromhex(d["value"]), int(d["index"]))


@dataclass(frozen=True)
class AbsenceProof:
    """Proof that ``key`` is not set in the state with a given root.

    ``left`` / ``right`` are the entries of ``key``'s bucket just below / above it (keys in
    byte order); ``left`` is None when ``key`` sorts before the first entry, ``right`` when
    after the last, both when the bucket is empty. ``bucket_leaves``: the bucket's leaf
    hashes in key order.
    """

    key: bytes
    bucket: int
    bucket_size: int
    left: Neighbour | None
    right: Neighbour | None
    bucket_leaves: list[bytes]
    top_path: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "bucket": self.bucket, "bucket_size": self.bucket_size,
                "left": None if self.left is None else self.left.to_json(),
                "right": None if self.right is None else self.right.to_json(),
                "bucket_leaves": [h.hex() for h in self.bucket_leaves],
                "top_path": [h.hex() for h in self.top_path]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AbsenceProof:
        return cls(bytes.fromhex(d["key"]), int(d["bucket"]), int(d["bucket_size"]),
                   None if d.get("left") is None else Neighbour.from_json(d["left"]),
                   None if d.get("right") is None else Neighbour.from_json(d["right"]),
                   [bytes.fromhex(h) for h in d["bucket_leaves"]],
                   [bytes.fromhex(h) for h in d["top_path"]])


def verify_absence(state_root: bytes, proof: AbsenceProof) -> bool:
    """Light-client check: is ``proof.key`` absent from the state with ``state_root``?

    The bucket size is committed in the top tree, so "first", "last" and "adjacent" are
    facts about the real bucket, not claims of the prover.
    """
    n, b = proof.bucket_size, proof.bucket
    if b != bucket_of(proof.key) or not 0 <= b < N_BUCKETS or not 0 <= n < 2**32:
        return False
    root = _bucket_root(n, proof.bucket_leaves)
    if root is None:
        return False
    left, right = proof.left, proof.right
    if n == 0:
        if left is not None or right is not None:
            return False
    else:
        if left is None and right is None:
            return False
        if left is not None and not (left.key < proof.key and (
                right is not None or left.index == n - 1)):
            return False
        if right is not None and not (proof.key < right.key and (
                left is not None or right.index == 0)):
            return False
        if left is not None and right is not None and right.index != left.index + 1:
            return False
        for x in (left, right):
            if x is not None and not (0 <= x.index < n and proof.bucket_leaves[x.index]
                                      == entry_hash(x.key, x.value)):
                return False
    return verify_inclusion(state_root, bucket_leaf(n, root), b, N_BUCKETS, proof.top_path)


@dataclass(frozen=True)
class Detached:
    """The writes of a detached transaction: final values with their entry hashes (None =
    deleted) and the roots of the buckets they touch, as they were when it was detached."""

    values: dict[bytes, tuple[bytes, bytes] | None]
    roots: dict[int, tuple[bytes, bytes]]
    writes_at: int
    buckets: dict[bytes, int] = field(default_factory=dict)  # each key's bucket_of, if known


SHARED_MIN = 512
"""Values this long or longer are shared between the states of one process (``share``)."""


class _SharedValues:
    """Equal large values written to any state of this process are kept as one object.

    Each validator holds its own state; where several run in one process (the demo's
    embedded network executes two, their stores' follower and dry runs more), each had its
    own copy of every value — bytes each validator's execution encoded alike. A privacy
    pseudonym's registry record (two public keys) is ~2.7 KB: at 1,000 members ~260 MB an
    epoch per in-process validator (issue 17). Bytes are immutable, so sharing them
    changes nothing a state reads, hashes or stores. Entries no state holds any more are
    dropped when the table has doubled since its last sweep (by reference count, measured
    against a probe entry's in the same pattern, so the count's baseline is this
    interpreter's own)."""

    def __init__(self) -> None:
        self._values: dict[bytes, bytes] = {}
        self._limit = 4096

    def share(self, value: bytes) -> bytes:
        got = self._values.setdefault(value, value)
        if len(self._values) > self._limit:
            self._sweep()
        return got

    def _sweep(self) -> None:
        values = self._values
        probe = os.urandom(24)
        values[probe] = probe
        base = 0
        for v in [probe]:
            base = sys.getrefcount(v) - 1   # as a value no one else holds (less ``probe``)
        del values[probe]
        for v in list(values):
            if sys.getrefcount(v) <= base:
                values.pop(v, None)
        self._limit = max(4096, 2 * len(values))

    def __len__(self) -> int:
        return len(self._values)


_SHARED = _SharedValues()


class State:
    """Key-value state with a journal for atomic transactions and a bucketed commitment."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self._data: dict[bytes, bytes] = dict(data or {})
        # sorted key index: prefix scans cost O(log n + hits), not a pass over every key.
        # It is brought up to date at the next scan: keys added since wait in
        # ``_unindexed``, keys deleted since in ``_stale`` (a registration block adds ~29k
        # keys, which detach takes out and attach puts back, and scans few prefixes: an
        # insort and a removal per key were a tenth of its CPU); a scan's result is the
        # same sorted list either way.
        self._keys: SortedList = SortedList(self._data)
        self._unindexed: set[bytes] = set()
        self._stale: set[bytes] = set()
        # ``block_writes`` of the journal as it was (its mark, its length): the invariants
        # of a block ask for it in turn while nothing writes
        self._writes_at: tuple[tuple[int, int, int], dict[bytes, bytes | None]] | None = None
        # the same journal's written keys sorted, and each key's place in ``block_writes``
        # order (``block_writes_under``): built at most once per journal state
        self._writes_sorted: tuple[tuple[int, int, int], list[bytes], dict[bytes, int]] | None = None
        self._journal: list[tuple[bytes, bytes | None]] = []
        self._marks: list[int] = []
        self._buckets: list[dict[bytes, bytes]] = [{} for _ in range(N_BUCKETS)]
        self._bucket_roots: list[bytes] = [EMPTY_ROOT] * N_BUCKETS
        self._top_leaves: list[bytes] = [_EMPTY_LEAF] * N_BUCKETS  # bucket_leaf(size, root)
        self._top = _empty_top()  # the tree over _top_leaves, rehashed where they change
        self._top_changed: set[int] = set()  # buckets whose top leaf changed since its root
        # each bucket's sorted keys, and the keys written since its root was last
        # computed: root() updates the key order where it changed and hashes each touched
        # bucket once
        self._trees: list[FlatBucket] = [FlatBucket() for _ in range(N_BUCKETS)]
        self._dirty: dict[int, set[bytes]] = {}
        # keys set, deleted or rolled back since the last root(), whose bucket entries are
        # not brought up to date yet: a key's bucket and entry hash are computed once per
        # root, not at each write (a block writes many keys more than once, e.g. balances
        # and nonces, and a rolled-back transaction's keys twice; issue 17)
        self._pending: set[bytes] = set()
        self._writes = 0  # counts set/delete calls (``attach`` checks nothing wrote meanwhile)
        for k, v in self._data.items():
            self._buckets[bucket_of(k)][k] = entry_hash(k, v)
        # the empty buckets' roots and top leaves are already right (the empty top tree is
        # copied, not rehashed: 4,095 hashes per state otherwise); the others sort and hash
        # at the first root
        self._dirty = {b: set() for b, bucket in enumerate(self._buckets) if bucket}

    # -- reads ---------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    # State values were encoded by ``set_obj`` (canonical already), so reads skip the
    # canonical re-encoding check that untrusted input gets.
    def get_obj(self, key: bytes, default: Any = None) -> Any:
        raw = self._data.get(key)
        return default if raw is None else cbor2.loads(raw)

    def get_int(self, key: bytes) -> int:
        raw = self._data.get(key)
        return 0 if raw is None else int(cbor2.loads(raw))

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Keys under ``prefix`` in sorted order (never dict order: determinism).

        The keys starting with ``prefix`` are exactly those from ``prefix`` up to (not
        including) ``prefix_end(prefix)``: the index returns that range whole, instead of
        a ``startswith`` test per key in Python (scans were ~2 % of a replay; issue 17)."""
        self._sync_index()
        return list(self._keys.irange(prefix, prefix_end(prefix), inclusive=(True, False)))

    def items_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        for k in self.keys_with_prefix(prefix):
            yield k, cbor2.loads(self._data[k])

    def __len__(self) -> int:
        return len(self._data)

    def block_writes(self) -> dict[bytes, bytes | None] | None:
        """Keys written inside the outermost open transaction (a block being executed), each
        with its value before it (None: absent then); None when no transaction is open
        (genesis, a restored or hand-built state).

        For invariants that hold before a block: only what the block wrote can break them,
        so they check those keys instead of scanning the state (marked: pmode, issue 19 —
        a day of per-slot pseudonyms registers ~5,800 identities)."""
        out = self._block_writes()
        return None if out is None else dict(out)

    def block_version(self) -> tuple[int, int, int] | None:
        """A stamp of the open block's journal (None: no transaction open): two calls give
        equal stamps only if nothing was set, deleted or rolled back in between (every write
        counts up ``_writes``; a rollback shortens the journal below any length seen since
        the last write) — what ``block_writes`` keys its own cache on. For derivations that
        several invariants of one block need alike (``registry`` pseudonyms)."""
        if not self._marks:
            return None
        return (self._marks[0], len(self._journal), self._writes)

    def write_stamp(self) -> tuple[int, int, int]:
        """A stamp of this state's contents, inside a block or not: two calls give equal
        stamps only if nothing was set, deleted, attached or rolled back in between (the
        same argument as ``block_version``; -1 for no open block). For derivations that
        several unscoped invariants need alike (a dry run's trial checks every invariant
        outside a transaction)."""
        return (self._marks[0] if self._marks else -1, len(self._journal), self._writes)

    def _block_writes(self) -> dict[bytes, bytes | None] | None:
        """``block_writes`` as kept (not a copy: callers must not change it)."""
        if not self._marks:
            return None
        # any change to the journal since (an append, or a rollback and new appends) moved
        # its length or the write count
        at = (self._marks[0], len(self._journal), self._writes)
        if self._writes_at is not None and self._writes_at[0] == at:
            return self._writes_at[1]   # each invariant reads it: built once per journal
        out: dict[bytes, bytes | None] = {}
        for key, old in self._journal[self._marks[0]:]:
            out.setdefault(key, old)
        self._writes_at = (at, out)
        return out

    def _written_ranges(self, prefixes: tuple[bytes, ...]) -> tuple[
            dict[bytes, bytes | None], list[bytes], dict[bytes, int], list[tuple[int, int]]] | None:
        """The block's writes, their keys sorted, each key's place in the writes' order, and
        per prefix the slice of the sorted keys that start with it (None: no block open)."""
        out = self._block_writes()
        if out is None:
            return None
        assert self._writes_at is not None
        at = self._writes_at[0]
        if self._writes_sorted is None or self._writes_sorted[0] != at:
            self._writes_sorted = (at, sorted(out), {k: i for i, k in enumerate(out)})
        _, keys, place = self._writes_sorted
        ranges = []
        for p in prefixes:
            end = prefix_end(p)
            lo = bisect.bisect_left(keys, p)
            hi = len(keys) if end is None else bisect.bisect_left(keys, end, lo)
            ranges.append((lo, hi))
        return out, keys, place, ranges

    def block_writes_under(self, prefixes: tuple[bytes, ...]) -> dict[bytes, bytes | None] | None:
        """``block_writes()`` restricted to the keys that start with one of ``prefixes``, in
        the same order (the order the block first wrote them): equal to ``{k: v for k, v in
        block_writes().items() if k.startswith(prefixes)}``, found by bisection in the
        written keys sorted once per block instead of a ``startswith`` per written key for
        each invariant (a registration block writes ~37k keys and ten invariants scanned
        them in turn; issue 17, fifteenth session). None when no transaction is open."""
        got = self._written_ranges(prefixes)
        if got is None:
            return None
        out, keys, place, ranges = got
        hit: set[bytes] = set()
        for lo, hi in ranges:
            hit.update(keys[lo:hi])
        return {k: out[k] for k in sorted(hit, key=place.__getitem__)}

    def wrote_under(self, prefixes: tuple[bytes, ...]) -> bool | None:
        """Whether the open block wrote a key starting with one of ``prefixes`` (``any(k.
        startswith(prefixes) for k in block_writes())``); None when no transaction is open."""
        got = self._written_ranges(prefixes)
        if got is None:
            return None
        return any(lo < hi for lo, hi in got[3])

    def snapshot_items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value) in key order (read along the sorted key index: half the
        cost of sorting the items afresh)."""
        self._sync_index()
        data = self._data
        return [(k, data[k]) for k in self._keys]

    # -- writes --------------------------------------------------------------
    def set(self, key: bytes, value: bytes) -> None:
        self._writes += 1
        if self._marks:
            self._journal.append((key, self._data.get(key)))
        if key not in self._data:
            self._index(key)
        self._data[key] = _SHARED.share(value) if len(value) >= SHARED_MIN else value
        self._pending.add(key)

    def set_obj(self, key: bytes, obj: Any) -> None:
        self.set(key, codec.encode(obj))

    def set_int(self, key: bytes, value: int) -> None:
        if value == 0:
            self.delete(key)
        else:
            self.set(key, codec.encode(value))

    def delete(self, key: bytes) -> None:
        if key not in self._data:
            return
        self._writes += 1
        if self._marks:
            self._journal.append((key, self._data[key]))
        del self._data[key]
        self._unindex(key)
        self._pending.add(key)

    def _index(self, key: bytes) -> None:
        """A key was added to ``_data``: the key index takes it at the next scan."""
        if key in self._stale:
            self._stale.discard(key)   # deleted and added back: still in the index
        else:
            self._unindexed.add(key)

    def _unindex(self, key: bytes) -> None:
        """A key was deleted from ``_data``: the key index drops it at the next scan."""
        if key in self._unindexed:
            self._unindexed.discard(key)
        else:
            self._stale.add(key)

    def _sync_index(self) -> None:
        if self._stale:
            if 4 * len(self._stale) > len(self._keys):
                self._keys = SortedList(self._data)   # most of it went: sort afresh
                self._unindexed.clear()
            else:
                for key in self._stale:
                    self._keys.remove(key)
            self._stale.clear()
        if self._unindexed:
            self._keys.update(self._unindexed)
            self._unindexed.clear()

    def _mark_dirty(self, b: int, key: bytes) -> None:
        keys = self._dirty.get(b)
        if keys is None:
            self._dirty[b] = {key}
        else:
            keys.add(key)

    # -- atomicity -----------------------------------------------------------
    def begin(self) -> None:
        self._marks.append(len(self._journal))

    def commit(self) -> None:
        mark = self._marks.pop()
        if not self._marks:
            del self._journal[mark:]

    def rollback(self) -> None:
        mark = self._marks.pop()
        while len(self._journal) > mark:
            key, old = self._journal.pop()
            if old is None:
                if self._data.pop(key, None) is not None:
                    self._unindex(key)
            else:
                if key not in self._data:
                    self._index(key)
                self._data[key] = old
            self._pending.add(key)

    def detach(self) -> Detached:
        """Undo the one open (outermost) transaction and return what it wrote, so that
        ``attach`` can make it part of the state later.

        A node executes a block, detaches it while the validators vote, and attaches it
        once certified: in between, the state is the last certified one (what queries must
        see, as ABCI's Query does), not the pending block's. The entry hashes and bucket
        roots computed for the pending header travel along, so ``attach`` hashes nothing.
        """
        if len(self._marks) != 1:
            raise ValueError("detach needs exactly one open transaction")
        self.root()
        mark = self._marks.pop()
        originals: dict[bytes, bytes | None] = {}
        for key, old in self._journal[mark:]:
            originals.setdefault(key, old)  # the value before the transaction
        del self._journal[mark:]
        # each key's bucket once (a registration block writes ~37k keys: hashing each key
        # four times over between detach and attach was a tenth of the block's CPU)
        where = {key: bucket_of(key) for key in originals}
        values: dict[bytes, tuple[bytes, bytes] | None] = {}
        for key, b in where.items():
            value = self._data.get(key)
            values[key] = None if value is None else (value, self._buckets[b][key])
        roots = {b: (self._bucket_roots[b], self._top_leaves[b]) for b in set(where.values())}
        for key, old in originals.items():
            self._put(key, None if old is None else (old, entry_hash(key, old)), where[key])
        return Detached(values, roots, self._writes, where)

    def attach(self, detached: Detached) -> None:
        """Apply the writes of a ``detach``-ed transaction (outside any transaction)."""
        if self._marks:
            raise ValueError("attach inside an open transaction")
        unchanged = self._writes == detached.writes_at
        self._writes += 1
        where = detached.buckets
        for key, entry in detached.values.items():
            b = where.get(key)
            self._put(key, entry, bucket_of(key) if b is None else b)
        if unchanged:  # nothing wrote since the detach: the pending roots are exact
            for b, (root, leaf) in detached.roots.items():
                self._bucket_roots[b] = root
                self._top_leaves[b] = leaf
                self._top_changed.add(b)
                if self._trees[b].root_hash == root:   # its key order is the attached state's
                    self._dirty.pop(b, None)

    def _put(self, key: bytes, entry: tuple[bytes, bytes] | None, b: int) -> None:
        """Set ``key`` (in bucket ``b``) to ``(value, its entry hash)`` or delete it (None),
        unjournalled."""
        self._pending.discard(key)   # its bucket entry is set here, with its known hash
        if entry is None:
            if self._data.pop(key, None) is not None:
                self._unindex(key)
            self._buckets[b].pop(key, None)
        else:
            if key not in self._data:
                self._index(key)
            self._data[key] = entry[0]
            self._buckets[b][key] = entry[1]
        self._mark_dirty(b, key)

    # -- commitment ----------------------------------------------------------
    def _flush(self) -> None:
        """Bring the buckets' entry hashes up to the keys written since the last call.

        ``entry_hash`` and ``_mark_dirty`` written out in the loop (the same bytes hashed,
        the same sets): ~100k keys a replayed day, three Python calls each saved."""
        data, buckets, dirty, sha3 = self._data, self._buckets, self._dirty, _SHA3
        for key in self._pending:
            b = bucket_of(key)
            value = data.get(key)
            if value is None:
                buckets[b].pop(key, None)
            else:   # entry_hash(key, value) = hash_leaf(len(key):4 ‖ key ‖ value)
                buckets[b][key] = sha3(b"\x00" + len(key).to_bytes(4, "big") + key + value).digest()
            keys = dirty.get(b)
            if keys is None:
                dirty[b] = {key}
            else:
                keys.add(key)
        self._pending.clear()

    def root(self) -> bytes:
        """The state root; rehashes only the buckets written since the last call (each
        once, ``FlatBucket``) and their paths in the top tree."""
        self._flush()
        buckets, trees, roots, leaves, sha3 = (self._buckets, self._trees, self._bucket_roots,
                                               self._top_leaves, _SHA3)
        for b, keys in self._dirty.items():
            bucket = buckets[b]
            r = roots[b] = trees[b].root(bucket, keys)
            # bucket_leaf(len(bucket), r) = hash_leaf(size:4 ‖ r)
            leaves[b] = sha3(b"\x00" + len(bucket).to_bytes(4, "big") + r).digest()
        self._top_changed.update(self._dirty)
        self._dirty.clear()
        changed, self._top_changed = self._top_changed, set()
        return self._top.root(self._top_leaves, changed)

    def prove(self, key: bytes) -> MembershipProof:
        """Membership proof for ``key``; raises ``KeyError`` if absent."""
        value = self._data[key]
        self.root()
        b = bucket_of(key)
        bucket = self._buckets[b]
        keys = self._trees[b].keys(bucket)
        return MembershipProof(key, value, b, keys.index(key), len(keys),
                               [bucket[k] for k in keys], self._top.path(b))

    def prove_absence(self, key: bytes) -> AbsenceProof:
        """Absence proof for ``key``; raises ``KeyError`` if it is set."""
        if key in self._data:
            raise KeyError(key)
        self.root()
        b = bucket_of(key)
        bucket = self._buckets[b]
        keys = self._trees[b].keys(bucket)
        i = bisect.bisect_left(keys, key)  # keys[i - 1] < key < keys[i]

        def neighbour(j: int) -> Neighbour | None:
            if not 0 <= j < len(keys):
                return None
            return Neighbour(keys[j], self._data[keys[j]], j)

        return AbsenceProof(key, b, len(keys), neighbour(i - 1), neighbour(i),
                            [bucket[k] for k in keys], self._top.path(b))

    def copy(self) -> State:
        """An independent state with the same entries and no open transaction. What was
        hashed is copied, not hashed again (entry hashes, bucket trees, top tree, pending
        dirty keys): a governance dry run copies the state twice, ~30k keys under privacy
        mode, and building it afresh hashed every key twice over (pmode, issue 19)."""
        self._sync_index()
        self._flush()
        new = State.__new__(State)
        new._data = dict(self._data)
        new._keys = self._keys.copy()
        new._unindexed, new._stale = set(), set()
        new._writes_at, new._journal, new._marks = None, [], []
        new._writes_sorted = None
        new._buckets = [dict(b) for b in self._buckets]
        new._bucket_roots = list(self._bucket_roots)
        new._top_leaves = list(self._top_leaves)
        new._top = self._top.copy()
        new._top_changed = set(self._top_changed)
        new._trees = [t.copy() for t in self._trees]
        new._dirty = {b: set(keys) for b, keys in self._dirty.items()}
        new._pending = set()
        new._writes = 0
        return new

    def diff(self, other: State) -> list[bytes]:
        """Keys whose values differ between this state and ``other`` (set in one only, or
        set to different bytes), sorted."""
        a, b = self._data, other._data
        out = [k for k, v in a.items() if b.get(k) != v]
        out += [k for k in b if k not in a]
        return sorted(out)
