"""Client side of the ledger's privacy module: build the transaction bodies that members,
trustees and relays send (``ledger/modules/privacy``). Pure except for the injected RNG.

The batch order matters for privacy: entries are sorted by leaf hash before the root is
built, so neither the tree nor the relay's registration order groups one member's
pseudonyms together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.crypto.merkle import inclusion_proof
from gridledger.crypto.shamir import RandomBytes
from gridledger.crypto.sig import SigningKey
from gridledger.privacy.pseudonyms import (
    BatchEntry,
    IdentityEscrow,
    TrusteeKeys,
    TrusteeSet,
    _open_own_share,
    _position,
    create_pseudonym,
    endorse_batch,
    entry_leaf,
)

MAX_LEAVES_PER_TX = 6


@dataclass(frozen=True)
class OwnPseudonym:
    """What a member keeps about one of its pseudonyms (never sent anywhere linked)."""

    key: SigningKey
    entry: BatchEntry

    @property
    def address(self) -> bytes:
        return self.key.address

    @property
    def escrow(self) -> IdentityEscrow:
        return self.entry.request.escrow


def make_pseudonyms(identity_key: SigningKey, trustees: TrusteeSet, epoch: int,
                    slot_ranges: Sequence[tuple[int, int]], feeder: str, *,
                    alg: str = "ml-dsa-44",
                    random_bytes: RandomBytes = os.urandom) -> list[OwnPseudonym]:
    """One pseudonym per slot range (per-slot rotation: ``[(s, s) for s in slots]``)."""
    out = []
    for first, last in slot_ranges:
        key, request = create_pseudonym(identity_key, trustees, epoch, "trade",
                                        pseudonym_alg=alg, random_bytes=random_bytes)
        out.append(OwnPseudonym(key, BatchEntry(request, first, last, feeder)))
    return out


@dataclass(frozen=True)
class Batch:
    """A certified epoch batch: entries in tree order, and the ``privacy/certify`` body."""

    epoch: int
    entries: tuple[BatchEntry, ...]
    certify_body: dict[str, Any]

    @property
    def root(self) -> bytes:
        root: bytes = self.certify_body["root"]
        return root


def certify_batch(trustee_keys: Sequence[TrusteeKeys], trustees: TrusteeSet,
                  entries: Sequence[BatchEntry], epoch: int, epoch_slots: int) -> Batch:
    """Each trustee checks every request and signs the root (run by the trustees)."""
    ordered = tuple(sorted(entries, key=lambda e: entry_leaf(trustees.community, e)))
    ends = []
    root, count = b"", 0
    for tk in trustee_keys:
        root, count, e = endorse_batch(tk, trustees, ordered, epoch, epoch_slots)
        ends.append([e.trustee_index, e.signature])
    body = {"epoch": epoch, "root": root, "count": count, "endorsements": ends}
    return Batch(epoch, ordered, body)


def register_bodies(trustees: TrusteeSet, batch: Batch) -> list[dict[str, Any]]:
    """``privacy/register`` bodies (a relay sends them), ``MAX_LEAVES_PER_TX`` leaves each."""
    hashes = [entry_leaf(trustees.community, e) for e in batch.entries]
    leaves = []
    for i, e in enumerate(batch.entries):
        pk = e.request.escrow.pseudonym_key
        leaves.append({"alg": pk.alg, "pk": pk.raw, "escrow_digest": e.request.escrow.digest(),
                       "first_slot": e.first_slot, "last_slot": e.last_slot, "feeder": e.feeder,
                       "index": i, "path": inclusion_proof(hashes, i)})
    return [{"root": batch.root, "leaves": leaves[i:i + MAX_LEAVES_PER_TX]}
            for i in range(0, len(leaves), MAX_LEAVES_PER_TX)]


def escrow_body(dispute: bytes, escrow: IdentityEscrow) -> dict[str, Any]:
    """``privacy/escrow``: post a disputed pseudonym's escrow (trustees keep every escrow)."""
    return {"dispute": dispute, "pseudonym": escrow.pseudonym_key.address,
            "record": escrow.record_ciphertext, "shares": list(escrow.sealed_shares)}


def release_body(trustee: TrusteeKeys, trustees: TrusteeSet, dispute: bytes,
                 escrows: Sequence[IdentityEscrow]) -> dict[str, Any]:
    """``privacy/release``: this trustee's escrow shares for pseudonyms a dispute names."""
    j = _position(trustees, trustee.trustee_id)
    return {"dispute": dispute,
            "shares": [[e.pseudonym_key.address, _open_own_share(trustee, j, e)]
                       for e in escrows]}


def claim_amount(tickets: int, allowance_micro: int, finals: Sequence[int]) -> int:
    """What a member claims back: deposit - allowances drawn + its pseudonyms' finals."""
    return tickets * allowance_micro - len(finals) * allowance_micro + sum(finals)
