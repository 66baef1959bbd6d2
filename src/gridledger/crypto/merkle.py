"""Binary Merkle trees over SHA3-256 with inclusion proofs (RFC 6962 §2.1 shape).

Leaves and interior nodes use distinct prefixes (0x00 / 0x01) so a leaf can never be
presented as an interior node (second-preimage attack on unbalanced trees).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

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
    the last call's (the same root, byte for byte). A state's 1,024 bucket leaves change in
    a few dozen places per block, so this is ~10 hashes per changed bucket, not 1,023."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = []

    def root(self, leaf_hashes: Sequence[bytes], changed: Iterable[int] | None = None) -> bytes:
        """The root over ``leaf_hashes``. ``changed``: the only positions that may differ
        from the last call's list (None: every position is compared — the state's top tree
        passes the buckets it rehashed, instead of comparing 1,024 leaves per block)."""
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
            for p in changed:
                j = 2 * p  # an odd last node is promoted unchanged, as in root_of_hashes
                level[p] = hash_node(below[j], below[j + 1]) if j + 1 < len(below) else below[j]
        return self._levels[-1][0]

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


class SortedLeaves:
    """``root_of_hashes`` of a map's leaf hashes in key order, kept up to date in place.

    ``root(entries, changed)`` takes the map as it is now and the keys written since the
    last call: a changed value rehashes its path (~log2 n hashes), an insertion or deletion
    rehashes each level from its position on (the leaves after it shift), so a write costs
    less than the full rebuild (n - 1 hashes and a sort) that ``root_of_hashes`` needs.
    The root is the same byte for byte."""

    def __init__(self) -> None:
        self._keys: list[bytes] = []
        self._levels: list[list[bytes]] = []
        self.root_hash: bytes = EMPTY_ROOT

    def copy(self) -> SortedLeaves:
        """An independent copy: the same keys, levels and root (nothing rehashed)."""
        new = SortedLeaves()
        new._keys = list(self._keys)
        new._levels = [list(level) for level in self._levels]
        new.root_hash = self.root_hash
        return new

    def root(self, entries: Mapping[bytes, bytes], changed: Iterable[bytes]) -> bytes:
        """The root over ``entries``' values in key order; ``changed`` must hold every key
        whose presence or value differs from the previous call's ``entries``."""
        if not self._levels:
            self._keys = sorted(entries)
            if not self._keys:
                return EMPTY_ROOT
            self._levels = [[entries[k] for k in self._keys]]
            first, paths = 0, set[int]()
        else:
            size = len(self._keys)
            first, paths = self._apply(entries, changed)
            # no insertion or deletion (each sets ``first`` at or below its position, and a
            # deletion of the last leaf leaves ``first`` at the new length): no leaf moved
            if first == size == len(self._keys) and size and len(self._levels[-1]) == 1:
                return self._rehash_paths(paths)
        levels = self._levels
        if not levels[0]:
            self._keys, self._levels, self.root_hash = [], [], EMPTY_ROOT
            return EMPTY_ROOT
        lvl = 0
        while len(levels[lvl]) > 1:
            below = levels[lvl]
            if lvl + 1 == len(levels):
                levels.append([])
            above = levels[lvl + 1]
            # parents left of first // 2 have both children left of ``first``: unchanged
            # unless on a changed value's path
            up = first // 2
            del above[up:]
            n = len(below)
            # hash_node inlined over the pairs (the bulk of a state root: an insertion
            # rehashes its bucket from its position on); an odd last node is promoted
            above.extend([_sha3(b"\x01" + left + right).digest() for left, right
                          in zip(below[2 * up:n - 1:2], below[2 * up + 1:n:2], strict=True)])
            if n % 2:
                above.append(below[n - 1])
            paths = {i >> 1 for i in paths if i >> 1 < up}
            for p in paths:
                above[p] = hash_node(below[2 * p], below[2 * p + 1])
            first, lvl = up, lvl + 1
        del levels[lvl + 1:]
        self.root_hash = levels[lvl][0]
        return self.root_hash

    def _rehash_paths(self, paths: Iterable[int]) -> bytes:
        """Rehash the paths from leaves ``paths`` up to the root, the tree's shape unchanged
        (a balance or a nonce rewritten: most of a block's writes to existing keys) —
        one hash per level, without the level-by-level pass an insertion needs."""
        levels = self._levels
        for i in paths:
            for below, above in pairwise(levels):
                left = i & ~1
                # an odd last node is promoted unchanged, as in root_of_hashes
                above[i >> 1] = (_sha3(b"\x01" + below[left] + below[left + 1]).digest()
                                 if left + 1 < len(below) else below[left])
                i >>= 1
        self.root_hash = levels[-1][0]
        return self.root_hash

    def _apply(self, entries: Mapping[bytes, bytes], changed: Iterable[bytes]
               ) -> tuple[int, set[int]]:
        """Bring the leaf level up to ``entries``; returns (the first position whose
        structure changed, the positions left of it whose value changed)."""
        keys, leaves = self._keys, self._levels[0]
        first, paths = len(keys), set[int]()
        for k in sorted(changed):   # ascending: a later insertion never shifts an earlier one
            i = bisect.bisect_left(keys, k)
            here = i < len(keys) and keys[i] == k
            h = entries.get(k)
            if h is None:
                if here:
                    del keys[i], leaves[i]
                    first = min(first, i)
            elif here:
                if leaves[i] != h:
                    leaves[i] = h
                    paths.add(i)
            else:
                keys.insert(i, k)
                leaves.insert(i, h)
                first = min(first, i)
        return first, {i for i in paths if i < first}
