"""The state store and its commitment.

State is a map from byte keys to canonical-CBOR byte values. Keys are namespaced by module
(``bank/bal/<addr>``). Writes are journalled so a transaction applies inside a snapshot:
``begin()`` … ``commit()`` or ``rollback()`` (execution-specs style).

Commitment: keys fall into 1,024 buckets by ``SHA3(key)``; each bucket is a Merkle tree over
its entries sorted by key, and the state root is the Merkle root of the bucket roots. Only
buckets touched by a block are rehashed, and a membership proof is two short Merkle paths that
a light client checks with ``verify_membership`` and nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cbor2
from sortedcontainers import SortedList

from gridledger.crypto.merkle import (
    fold_path,
    hash_leaf,
    inclusion_proof,
    root_of_hashes,
    verify_inclusion,
)
from gridledger.ledger import codec

N_BUCKETS = 1024


def bucket_of(key: bytes) -> int:
    d = hashlib.sha3_256(key).digest()
    return ((d[0] << 8) | d[1]) % N_BUCKETS


def entry_hash(key: bytes, value: bytes) -> bytes:
    return hash_leaf(len(key).to_bytes(4, "big") + key + value)


@dataclass(frozen=True)
class MembershipProof:
    """Proof that ``key`` maps to ``value`` in the state with a given root."""

    key: bytes
    value: bytes
    bucket: int
    index: int
    bucket_size: int
    bucket_path: list[bytes]
    top_path: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "value": self.value.hex(), "bucket": self.bucket,
                "index": self.index, "bucket_size": self.bucket_size,
                "bucket_path": [h.hex() for h in self.bucket_path],
                "top_path": [h.hex() for h in self.top_path]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MembershipProof:
        return cls(bytes.fromhex(d["key"]), bytes.fromhex(d["value"]), int(d["bucket"]),
                   int(d["index"]), int(d["bucket_size"]),
                   [bytes.fromhex(h) for h in d["bucket_path"]],
                   [bytes.fromhex(h) for h in d["top_path"]])


def verify_membership(state_root: bytes, proof: MembershipProof) -> bool:
    """Light-client check: does ``proof.key -> proof.value`` belong to ``state_root``?"""
    if proof.bucket != bucket_of(proof.key) or not 0 <= proof.bucket < N_BUCKETS:
        return False
    leaf = entry_hash(proof.key, proof.value)
    # Recompute the bucket root from the leaf, then the top root from the bucket root.
    bucket_root = fold_path(leaf, proof.index, proof.bucket_size, proof.bucket_path)
    if bucket_root is None:
        return False
    return verify_inclusion(state_root, hash_leaf(bucket_root), proof.bucket, N_BUCKETS,
                            proof.top_path)


class State:
    """Key-value state with a journal for atomic transactions and a bucketed commitment."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self._data: dict[bytes, bytes] = dict(data or {})
        # sorted key index: prefix scans cost O(log n + hits), not a pass over every key
        self._keys: SortedList = SortedList(self._data)
        self._journal: list[tuple[bytes, bytes | None]] = []
        self._marks: list[int] = []
        self._buckets: list[dict[bytes, bytes]] = [{} for _ in range(N_BUCKETS)]
        self._bucket_roots: list[bytes] = [b""] * N_BUCKETS
        self._top_leaves: list[bytes] = [b""] * N_BUCKETS  # hash_leaf(bucket root), cached
        self._dirty: set[int] = set(range(N_BUCKETS))
        for k, v in self._data.items():
            self._buckets[bucket_of(k)][k] = entry_hash(k, v)

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
        """Keys under ``prefix`` in sorted order (never dict order: determinism)."""
        out = []
        for k in self._keys.irange(minimum=prefix):
            if not k.startswith(prefix):
                break
            out.append(k)
        return out

    def items_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        for k in self.keys_with_prefix(prefix):
            yield k, cbor2.loads(self._data[k])

    def __len__(self) -> int:
        return len(self._data)

    def snapshot_items(self) -> list[tuple[bytes, bytes]]:
        return sorted(self._data.items())

    # -- writes --------------------------------------------------------------
    def set(self, key: bytes, value: bytes) -> None:
        if self._marks:
            self._journal.append((key, self._data.get(key)))
        if key not in self._data:
            self._keys.add(key)
        self._data[key] = value
        b = bucket_of(key)
        self._buckets[b][key] = entry_hash(key, value)
        self._dirty.add(b)

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
        if self._marks:
            self._journal.append((key, self._data[key]))
        del self._data[key]
        self._keys.remove(key)
        b = bucket_of(key)
        self._buckets[b].pop(key, None)
        self._dirty.add(b)

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
            b = bucket_of(key)
            if old is None:
                if self._data.pop(key, None) is not None:
                    self._keys.remove(key)
                self._buckets[b].pop(key, None)
            else:
                if key not in self._data:
                    self._keys.add(key)
                self._data[key] = old
                self._buckets[b][key] = entry_hash(key, old)
            self._dirty.add(b)

    # -- commitment ----------------------------------------------------------
    def _bucket_leaves(self, b: int) -> list[bytes]:
        bucket = self._buckets[b]
        return [bucket[k] for k in sorted(bucket)]

    def root(self) -> bytes:
        """The state root; rehashes only the buckets written since the last call."""
        for b in self._dirty:
            r = root_of_hashes(self._bucket_leaves(b))
            self._bucket_roots[b] = r
            self._top_leaves[b] = hash_leaf(r)
        self._dirty.clear()
        return root_of_hashes(self._top_leaves)

    def prove(self, key: bytes) -> MembershipProof:
        """Membership proof for ``key``; raises ``KeyError`` if absent."""
        value = self._data[key]
        self.root()
        b = bucket_of(key)
        keys = sorted(self._buckets[b])
        idx = keys.index(key)
        leaves = [self._buckets[b][k] for k in keys]
        top = list(self._top_leaves)
        return MembershipProof(key, value, b, idx, len(keys), inclusion_proof(leaves, idx),
                               inclusion_proof(top, b))

    def copy(self) -> State:
        return State(self._data)
