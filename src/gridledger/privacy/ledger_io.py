"""Client side of the ledger's privacy module: the transaction bodies that members, meters,
the DSO, trustees and relays send (``ledger/modules/privacy``). Pure except for the injected
RNG.

One epoch, in order: a member joins (``privacy/join``) and makes its pseudonyms
(``make_pseudonyms``); its meter makes one reading key per pseudonym and signs the bindings
(``privacy.meter_keys.issue_reading_keys``); the DSO attests every meter's bindings
(``attest_body``); the trustees certify the pseudonym batch (``certify_batch``); a relay
registers them (``register_bodies``).

The batch order matters for privacy: entries are sorted by leaf hash before the root is
built, so neither the tree nor the relay's registration order groups one member's
pseudonyms together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.crypto.merkle import inclusion_proofs
from gridledger.crypto.shamir import RandomBytes
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.ledger import codec
from gridledger.ledger.tx import MAX_TX_BYTES
from gridledger.privacy.meter_keys import Attestation, MeterStatement
from gridledger.privacy.pseudonyms import (
    BatchEntry,
    Endorsement,
    IdentityEscrow,
    TrusteeKeys,
    TrusteeSet,
    create_pseudonyms,
    endorse_batch,
    entry_leaf,
    open_own_share,
)
from gridledger.privacy.pseudonyms.batch import check_entries, endorse_leaves

MAX_LEAVES_PER_TX = 4
LEAF_BYTES_PER_TX = MAX_TX_BYTES - 5 * 1024
"""Leaf bytes a ``privacy/register`` carries: the rest of a transaction's 16 KiB is its
envelope, whose signature alone is up to 4.6 kB (ML-DSA-87); a leaf is ~2.9 kB plus two
Merkle paths that grow with the epoch's batch."""


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
                    address: bytes | None = None, alg: str = "ml-dsa-44",
                    random_bytes: RandomBytes = os.urandom) -> list[OwnPseudonym]:
    """One pseudonym per slot range (per-slot rotation: ``[(s, s) for s in slots]``).

    ``identity_key`` should be the key the member joined the epoch with; ``address`` its
    ledger address (default: that key's, which differs after a rotation)."""
    made = create_pseudonyms(identity_key, trustees, epoch, len(slot_ranges), "trade",
                             address=address, pseudonym_alg=alg, random_bytes=random_bytes)
    return [OwnPseudonym(key, BatchEntry(request, first, last, feeder))
            for (key, request), (first, last) in zip(made, slot_ranges, strict=True)]


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


EndorseJob = tuple[TrusteeKeys, TrusteeSet, tuple[BatchEntry, ...], int, int]
Endorsed = tuple[bytes, int, Endorsement]
Mapper = Callable[[Callable[[EndorseJob], Endorsed], list[EndorseJob]], list[Endorsed]]


def endorse_job(job: EndorseJob) -> Endorsed:
    """``endorse_batch(*job)``: one trustee's part of ``certify_batch``, as a picklable job."""
    return endorse_batch(*job)


def _in_turn(fn: Callable[[EndorseJob], Endorsed], jobs: list[EndorseJob]) -> list[Endorsed]:
    return [fn(j) for j in jobs]


def certify_batch(trustee_keys: Sequence[TrusteeKeys], trustees: TrusteeSet,
                  entries: Sequence[BatchEntry], epoch: int, epoch_slots: int,
                  mapper: Mapper = _in_turn) -> Batch:
    """Each trustee checks every request and signs the root (run by the trustees: each on
    its own machine — ``mapper``, e.g. a process pool's ``map``, runs them side by side)."""
    ordered = tuple(sorted(entries, key=lambda e: entry_leaf(trustees.community, e)))
    done = mapper(endorse_job, [(tk, trustees, ordered, epoch, epoch_slots)
                                for tk in trustee_keys])
    ends = [[e.trustee_index, e.signature] for _root, _count, e in done]
    root, count = (done[-1][0], done[-1][1]) if done else (b"", 0)
    body = {"epoch": epoch, "root": root, "count": count, "endorsements": ends}
    return Batch(epoch, ordered, body)


def check_part(trustee_keys: Sequence[TrusteeKeys], trustees: TrusteeSet,
               entries: Sequence[BatchEntry], epoch: int, epoch_slots: int) -> list[list[bytes]]:
    """Every trustee's ``check_entries`` of a part of the batch (one household's entries,
    checked as soon as they are made: ``certify_checked`` signs the whole batch from the
    parts). Raises ``EndorsementRefused`` naming the entry's index in the part."""
    return [check_entries(tk, trustees, entries, epoch, epoch_slots) for tk in trustee_keys]


def certify_checked(trustee_keys: Sequence[TrusteeKeys], trustees: TrusteeSet,
                    parts: Sequence[tuple[Sequence[BatchEntry], Sequence[Sequence[bytes]]]],
                    epoch: int) -> Batch:
    """``certify_batch`` of the batch made of ``parts`` — (entries, each trustee's leaves of
    them from ``check_part``) — whose entries the trustees already checked: each trustee
    signs the root of its own leaves, in the batch order (sorted by leaf). The same batch,
    root and body as ``certify_batch`` of all the entries (tested); the check of every
    request is the same, done part by part (issue 19: the three trustees' whole-batch
    checks ran as three jobs on a two-process pool after every household's issuance)."""
    entries = [e for part, _ in parts for e in part]
    ends = []
    root, count = b"", 0
    for t, tk in enumerate(trustee_keys):
        leaves = [leaf for part, checked in parts for leaf in checked[t]]
        if len(leaves) != len(entries):
            raise ValueError("a part's leaves do not match its entries")
        root, count, e = endorse_leaves(tk, trustees, epoch, sorted(leaves))
        ends.append([e.trustee_index, e.signature])
    ordered = tuple(sorted(entries, key=lambda e: entry_leaf(trustees.community, e)))
    body = {"epoch": epoch, "root": root, "count": count, "endorsements": ends}
    return Batch(epoch, ordered, body)


def attest_body(att: Attestation) -> dict[str, Any]:
    """``privacy/attest``: the DSO's attested root of meter reading keys."""
    return {"epoch": att.epoch, "root": att.root, "count": att.count}


def register_bodies(trustees: TrusteeSet, batch: Batch, att: Attestation,
                    reading_keys: Mapping[bytes, PublicKey],
                    firmware: Mapping[bytes, bytes] | None = None,
                    sealed: Collection[bytes] = ()) -> list[dict[str, Any]]:
    """``privacy/register`` bodies (a relay sends them), as many leaves each as fit in a
    transaction (at most ``MAX_LEAVES_PER_TX``, ``LEAF_BYTES_PER_TX`` bytes of leaves);
    ``reading_keys`` maps each pseudonym address to the reading key its meter holds,
    ``firmware`` to the image hash its meter attested (bound in the DSO's leaf) — for the
    pseudonyms in ``sealed``, the salted commitment to it (``MeterStatement.attested``)."""
    return list(iter_register_bodies(trustees, batch, att, reading_keys, firmware, sealed))


def iter_register_bodies(trustees: TrusteeSet, batch: Batch, att: Attestation,
                         reading_keys: Mapping[bytes, PublicKey],
                         firmware: Mapping[bytes, bytes] | None = None,
                         sealed: Collection[bytes] = ()) -> Iterator[dict[str, Any]]:
    """``register_bodies``, each body as soon as it is full (the two trees' paths first): a
    caller signs the first ones while the rest are made (issue 17)."""
    paths = inclusion_proofs([entry_leaf(trustees.community, e) for e in batch.entries])
    r_paths = att.proofs()
    body: dict[str, Any] | None = None
    size = 0
    for i, e in enumerate(batch.entries):
        pk = e.request.escrow.pseudonym_key
        rk = reading_keys[pk.address]
        fw = (firmware or {}).get(pk.address)
        seal = fw is not None and pk.address in sealed
        r_index, r_path = r_paths[att.index_of(pk.address, rk, fw, sealed=seal)]
        leaf = {"alg": pk.alg, "pk": pk.raw, "escrow_digest": e.request.escrow.digest(),
                "first_slot": e.first_slot, "last_slot": e.last_slot,
                "feeder": e.feeder, "index": i, "path": paths[i],
                "reading_alg": rk.alg, "reading_pk": rk.raw, "reading_root": att.root,
                "reading_index": r_index, "reading_path": r_path,
                **({"reading_firmware": fw} if fw is not None else {}),
                **({"reading_sealed": True} if seal else {})}
        n = len(codec.encode(leaf))
        if body is None or len(body["leaves"]) == MAX_LEAVES_PER_TX or size + n > LEAF_BYTES_PER_TX:
            if body is not None:
                yield body
            body = {"root": batch.root, "leaves": []}
            size = 0
        body["leaves"].append(leaf)
        size += n
    if body is not None:
        yield body


def escrow_body(dispute: bytes, escrow: IdentityEscrow) -> dict[str, Any]:
    """``privacy/escrow``: post a disputed pseudonym's escrow (trustees keep every escrow)."""
    return {"dispute": dispute, "pseudonym": escrow.pseudonym_key.address,
            "record": escrow.record_ciphertext, "shares": list(escrow.sealed_shares),
            "commitments": list(escrow.share_commitments)}


def release_body(trustee: TrusteeKeys, trustees: TrusteeSet, dispute: bytes,
                 escrows: Sequence[IdentityEscrow]) -> dict[str, Any]:
    """``privacy/release``: this trustee's committed shares for pseudonyms a dispute names."""
    j = trustees.position(trustee.trustee_id)
    items = []
    for e in escrows:
        share, blind = open_own_share(trustee, j, e)
        items.append([e.pseudonym_key.address, share, blind])
    return {"dispute": dispute, "shares": items}


def attribute_body(dispute: bytes, statement: MeterStatement, pseudonym: bytes) -> dict[str, Any]:
    """``privacy/attribute``: the meter evidence for a pseudonym whose escrow proved bogus."""
    return {"dispute": dispute, "pseudonym": pseudonym, **statement.evidence(pseudonym)}


def claim_amount(tickets: int, allowance_micro: int, finals: Sequence[int],
                 carried_micro: int = 0) -> int:
    """What a member claims back: deposit - allowances drawn + its pseudonyms' finals + what
    its earlier pseudonyms carried into this pool."""
    return tickets * allowance_micro - len(finals) * allowance_micro + sum(finals) + carried_micro
