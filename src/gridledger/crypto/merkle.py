"""Binary Merkle trees over SHA3-256 with inclusion proofs (RFC 6962 §2.1 shape).

Leaves and interior nodes use distinct prefixes (0x00 / 0x01) so a leaf can never be
presented as an interior node (second-preimage attack on unbalanced trees).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence

EMPTY_ROOT = hashlib.sha3_256(b"").digest()
_sha3 = hashlib.sha3_256


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha3_256(b"\x00" + data).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha3_256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly less than n (RFC 6962)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_of_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle root of already-hashed leaves."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    # Bottom-up pairing gives the same root as RFC 6962's recursive split for every n:
    # an odd node is promoted unchanged, exactly like the recursive definition.
    while len(level) > 1:
        nxt = [hash_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Merkle root of raw leaves."""
    return root_of_hashes([hash_leaf(x) for x in leaves])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf ``index`` up to the root (bottom-up pairing)."""
    if not 0 <= index < len(leaf_hashes):
        raise IndexError("leaf index out of range")
    proof: list[bytes] = []
    level = list(leaf_hashes)
    i = index
    while len(level) > 1:
        sib = i ^ 1
        if sib < len(level):
            proof.append(level[sib])
        nxt = [hash_node(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        i //= 2
    return proof


def inclusion_proofs(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """``inclusion_proof`` of every leaf, building the tree once (n log n, not n²)."""
    proofs: list[list[bytes]] = [[] for _ in leaf_hashes]
    level = list(leaf_hashes)
    pos = list(range(len(leaf_hashes)))  # each leaf's node index on the current level
    while len(level) > 1:
        for leaf, i in enumerate(pos):
            if (i ^ 1) < len(level):
                proofs[leaf].append(level[i ^ 1])
        nxt = [hash_node(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        pos = [i // 2 for i in pos]
    return proofs


def fold_path(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root implied by ``leaf_hash`` at ``index`` of ``size`` leaves and its sibling path,
    or ``None`` if the path has the wrong length for that position."""
    if not 0 <= index < size:
        return None
    h, i, n, k = leaf_hash, index, size, 0
    while n > 1:
        if (i ^ 1) < n:
            if k >= len(proof):
                return None
            h = hash_node(proof[k], h) if i & 1 else hash_node(h, proof[k])
            k += 1
        i //= 2
        n = (n + 1) // 2
    return h if k == len(proof) else None


def verify_inclusion(root: bytes, leaf_hash: bytes, index: int, size: int,
                     proof: Sequence[bytes]) -> bool:
    """Check that ``leaf_hash`` sits at ``index`` of a tree of ``size`` leaves with ``root``."""
    return fold_path(leaf_hash, index, size, proof) == root


class IncrementalRoot:
    """``root_of_hashes`` of a list of leaf hashes that changes a few leaves at a time: the
    tree's levels are kept, and each call rehashes only the paths of leaves that differ from
    the last call's (the same root, byte for byte). A state's 4,096 bucket leaves change in
    a few hundred places per block: ~12 hashes per changed bucket at most, not 4,095."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = []

    def root(self, leaf_hashes: Sequence[bytes], changed: Iterable[int] | None = None) -> bytes:
        """The root over ``leaf_hashes``. ``changed``: the only positions that may differ
        from the last call's list (None: every position is compared — the state's top tree
        passes the buckets it rehashed, instead of comparing 4,096 leaves per block)."""
        n = len(leaf_hashes)
        if n == 0:
            self._levels = []
            return EMPTY_ROOT
        if not self._levels or len(self._levels[0]) != n:
            self._build(list(leaf_hashes))
            return self._levels[-1][0]
        base = self._levels[0]
        candidates = range(n) if changed is None else sorted(set(changed))
        changed = [i for i in candidates if leaf_hashes[i] != base[i]]
        for i in changed:
            base[i] = leaf_hashes[i]
        for below, level in zip(self._levels, self._levels[1:], strict=False):
            changed = sorted({i >> 1 for i in changed})
            last = len(below) - 1
            for p in changed:
                j = 2 * p  # an odd last node is promoted unchanged, as in root_of_hashes
                level[p] = (_sha3(b"\x01" + below[j] + below[j + 1]).digest() if j < last
                            else below[j])
        return self._levels[-1][0]

    def path(self, index: int) -> list[bytes]:
        """``inclusion_proof`` of leaf ``index`` of the last ``root`` call's leaves, read
        from the kept levels (no hashing)."""
        if not self._levels or not 0 <= index < len(self._levels[0]):
            raise IndexError("leaf index out of range")
        proof, i = [], index
        for level in self._levels[:-1]:
            if i ^ 1 < len(level):
                proof.append(level[i ^ 1])
            i >>= 1
        return proof

    def copy(self) -> IncrementalRoot:
        """An independent tree with the same levels (nothing rehashed)."""
        new = IncrementalRoot()
        new._levels = [list(level) for level in self._levels]
        return new

    def _build(self, level: list[bytes]) -> None:
        self._levels = [level]
        while len(level) > 1:
            nxt = [hash_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self._levels.append(nxt)
            level = nxt


def bucket_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The flat commitment to a state bucket's leaf hashes in key order:
    ``SHA3(0x02 ‖ leaf_0 ‖ … ‖ leaf_{n-1})``, ``EMPTY_ROOT`` for none. The 0x02 prefix keeps
    it apart from leaves (0x00) and interior nodes (0x01)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _sha3(b"\x02" + b"".join(leaf_hashes)).digest()


class FlatBucket:
    """``bucket_hash`` of a map's leaf hashes in key order, its sorted keys kept in place.

    ``root(entries, changed)`` takes the map as it is now and the keys written since the
    last call: each changed key is put in or taken out of the sorted key list (a bisection),
    then the bucket is hashed once over its leaves — one C call over ``32·n`` bytes. A
    binary tree per bucket (this class's predecessor) rehashed each level from an inserted
    leaf's position on, in Python: ~30 % of a block's execution (issue 17, eleventh
    session). A proof of a key in a flat bucket carries the bucket's leaves (``n`` hashes)
    instead of a path (``log2 n``); the state keeps buckets small by having 4,096 of them."""

    __slots__ = ("_keys", "root_hash")

    def __init__(self) -> None:
        self._keys: list[bytes] | None = None   # None: not built yet (the first root sorts)
        self.root_hash: bytes = EMPTY_ROOT

    def copy(self) -> FlatBucket:
        """An independent copy: the same keys and root (nothing rehashed)."""
        new = FlatBucket()
        new._keys = None if self._keys is None else list(self._keys)
        new.root_hash = self.root_hash
        return new

    def keys(self, entries: Mapping[bytes, bytes]) -> list[bytes]:
        """The keys in order, as of the last ``root`` call (``entries`` sorted if never)."""
        return sorted(entries) if self._keys is None else self._keys

    def root(self, entries: Mapping[bytes, bytes], changed: Iterable[bytes]) -> bytes:
        """The root over ``entries``' values in key order; ``changed`` must hold every key
        whose presence or value differs from the previous call's ``entries``."""
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted(entries)
        else:
            for k in changed:
                i = bisect.bisect_left(keys, k)
                here = i < len(keys) and keys[i] == k
                if k in entries:
                    if not here:
                        keys.insert(i, k)
                elif here:
                    del keys[i]
        self.root_hash = bucket_hash([entries[k] for k in keys])
        return self.root_hash
