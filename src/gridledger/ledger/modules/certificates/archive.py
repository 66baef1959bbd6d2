"""The granular-certificate archive: a closed hour's records folded into one commitment.

Once an hour is closed (its GCs cancelled or expired: final) and the market's dispute window
has passed after its close, no rule reads or writes its records any more: transfers,
cancellations and stores of its GCs are refused (``claim-window-closed``), storage readings
and issuance of its slots are long past, and the invariants check open hours only. Every
validator then removes the hour's records (slot records, issuances, bundles, storage
readings, matching rows and the closing record) from live state, in the end-of-block step,
and writes ``cert/arch/<hour>``: the Merkle root over the removed ``(key, value)`` pairs in
key order, their count, the block height and what they add up to. The pairs go into that
block's ``certificates_archived`` event, so every node's store keeps them (the header's
``receipts_root`` commits to them) and serves them from there (``History``).

An archived record stays provable in two levels: its leaf's path to the entry's ``root``,
and the entry's state membership proof against a certified header's state root. Leaves are
domain-separated (``DOMAIN``), and ``merkle.hash_leaf`` keeps leaves apart from nodes.

Why the block's events and not a table of the node's own: the records are the consensus
output of that block, byte for byte the same at every validator, certified with it and
checked by every replay (verify-chain, audit bundles); a node-local table would be one more
thing each node writes at commit that no header commits to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.crypto.merkle import hash_leaf, inclusion_proof, root_of_hashes, verify_inclusion
from gridledger.ledger.module import History
from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.state import State

DOMAIN = b"gl/cert-archive/v1\x00"
EVENT = "certificates_archived"


def leaf_hash(key: bytes, value: bytes) -> bytes:
    """The leaf of one archived record: ``DOMAIN ‖ len(key):2 ‖ key ‖ value`` (the key's length
    makes the split between key and value unambiguous)."""
    return hash_leaf(DOMAIN + len(key).to_bytes(2, "big") + key + value)


def archive_root(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The Merkle root over ``pairs`` (already in key order)."""
    return root_of_hashes([leaf_hash(k, v) for k, v in pairs])


@dataclass(frozen=True)
class RecordProof:
    """Level one of an archived record's proof: ``(key, value)`` is leaf ``index`` of the
    ``size`` leaves under the root of hour ``hour``'s archive entry."""

    hour: int
    key: bytes
    value: bytes
    index: int
    size: int
    path: tuple[bytes, ...]

    def verify(self, root: bytes) -> bool:
        """Whether the record is in the archive whose root is ``root``."""
        return verify_inclusion(root, leaf_hash(self.key, self.value), self.index, self.size,
                                self.path)

    def to_json(self) -> dict[str, Any]:
        return {"hour": self.hour, "key": self.key.hex(), "value": self.value.hex(),
                "index": self.index, "size": self.size, "path": [h.hex() for h in self.path]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecordProof:
        return cls(int(d["hour"]), bytes.fromhex(d["key"]), bytes.fromhex(d["value"]),
                   int(d["index"]), int(d["size"]), tuple(bytes.fromhex(h) for h in d["path"]))


def prove_record(hour: int, pairs: Sequence[tuple[bytes, bytes]], key: bytes) -> RecordProof | None:
    """Level one for ``key`` among an hour's archived ``pairs`` (None: not among them)."""
    for i, (k, v) in enumerate(pairs):
        if k == key:
            path = inclusion_proof([leaf_hash(a, b) for a, b in pairs], i)
            return RecordProof(hour, k, v, i, len(pairs), tuple(path))
    return None


def stored_records(state: State, history: History | None,
                   hour: int) -> list[tuple[bytes, bytes]] | None:
    """The records archived for ``hour``, read from the node's stored block events and
    checked against the entry's root and count (None: not archived, no history, or the store
    does not hold what the entry commits to)."""
    entry = keeper.archive(state, hour)
    if entry is None or history is None:
        return None
    for ev in history.block_events(entry.height) or ():
        if ev.get("type") == EVENT and ev.get("hour") == hour:
            pairs = [(bytes(k), bytes(v)) for k, v in ev.get("records", ())]
            if len(pairs) == entry.records and archive_root(pairs) == entry.root:
                return pairs
            return None
    return None
