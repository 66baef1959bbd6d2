"""One certificate per community and epoch instead of one per pseudonym.

The trustees sign the Merkle root over every pseudonym they issued for the epoch. That costs
k signatures a day instead of k per pseudonym (per-slot rotation would otherwise put ~100
trustee signatures per member per day on the ledger), and every pseudonym of the epoch shows
the same certificate, so the certificate itself links nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.merkle import root_of_hashes
from gridledger.privacy.errors import EndorsementRefused
from gridledger.privacy.pseudonyms.certificates import PseudonymRequest, check_request
from gridledger.privacy.pseudonyms.trustees import Endorsement, TrusteeKeys, TrusteeSet

CTX_BATCH = b"gl/pseudonym/batch/v1"


@dataclass(frozen=True)
class BatchEntry:
    """One pseudonym in a batch: its request, the slots it may trade in, its feeder.

    The feeder is public on purpose: the DSO's envelopes and the aggregate check need it,
    and it only says "one of the households on this feeder".
    """

    request: PseudonymRequest
    first_slot: int
    last_slot: int
    feeder: str


def leaf_hash(community: str, epoch: int, first_slot: int, last_slot: int, feeder: str,
              alg: str, pk: bytes, escrow_digest: bytes) -> bytes:
    """The Merkle leaf the batch certificate covers for one pseudonym."""
    return tagged_hash("gl/pseudonym/leaf", community.encode(), epoch.to_bytes(8, "big"),
                       first_slot.to_bytes(8, "big"), last_slot.to_bytes(8, "big"),
                       feeder.encode(), alg.encode(), pk, escrow_digest)


def entry_leaf(community: str, entry: BatchEntry) -> bytes:
    """``leaf_hash`` of a batch entry."""
    e = entry.request.escrow
    return leaf_hash(community, e.epoch, entry.first_slot, entry.last_slot, entry.feeder,
                     e.pseudonym_key.alg, e.pseudonym_key.raw, e.digest())


def batch_message(community: str, epoch: int, root: bytes, count: int) -> bytes:
    """What each trustee signs for a batch certificate."""
    return tagged_hash("gl/pseudonym/batch", community.encode(), epoch.to_bytes(8, "big"),
                       root, count.to_bytes(8, "big"))


def check_entries(trustee: TrusteeKeys, trustees: TrusteeSet, entries: Sequence[BatchEntry],
                  epoch: int, slots_per_epoch: int) -> list[bytes]:
    """A trustee's checks of batch entries (``endorse_batch`` without the signature): each
    request as for a single certificate (``check_request``), each entry's slots inside
    ``epoch``. Returns the entries' leaves in order; raises ``EndorsementRefused`` naming the
    first bad entry (its index in ``entries``). Entries are checked one by one, so a batch's
    entries may be checked in parts (e.g. each household's as it arrives) and the leaves
    put together."""
    first, last = epoch * slots_per_epoch, (epoch + 1) * slots_per_epoch - 1
    leaves = []
    for i, entry in enumerate(entries):
        if entry.request.escrow.scope != "trade":
            raise EndorsementRefused(f"entry {i}: batch certificates are for trading pseudonyms")
        if not first <= entry.first_slot <= entry.last_slot <= last:
            raise EndorsementRefused(f"entry {i}: slots must lie inside epoch {epoch}")
        if not entry.feeder or len(entry.feeder) > 64:
            raise EndorsementRefused(f"entry {i}: feeder must be 1..64 characters")
        check_request(trustee, trustees, entry.request, epoch)
        leaves.append(entry_leaf(trustees.community, entry))
    return leaves


def endorse_leaves(trustee: TrusteeKeys, trustees: TrusteeSet, epoch: int,
                   leaves: Sequence[bytes]) -> tuple[bytes, int, Endorsement]:
    """A trustee signs the Merkle root of ``leaves`` (batch order), every entry of which it
    checked (``check_entries``). Returns (root, count, endorsement)."""
    if not leaves:
        raise EndorsementRefused("empty batch")
    j = trustees.position(trustee.trustee_id)
    root = root_of_hashes(list(leaves))
    sig = trustee.signing_key.sign(batch_message(trustees.community, epoch, root, len(leaves)),
                                   CTX_BATCH)
    return root, len(leaves), Endorsement(j, sig)


def endorse_batch(trustee: TrusteeKeys, trustees: TrusteeSet, entries: Sequence[BatchEntry],
                  epoch: int, slots_per_epoch: int) -> tuple[bytes, int, Endorsement]:
    """A trustee checks every request of the batch and signs its Merkle root.

    Each request is checked as for a single certificate (``check_request``); each entry's
    slots must lie inside ``epoch``. Returns (root, count, endorsement); raises
    ``EndorsementRefused`` naming the first bad entry.
    """
    trustees.position(trustee.trustee_id)
    return endorse_leaves(trustee, trustees, epoch,
                          check_entries(trustee, trustees, entries, epoch, slots_per_epoch))
