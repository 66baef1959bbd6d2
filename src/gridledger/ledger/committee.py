"""k-of-n committee identities: a sender whose transactions need k member signatures.

A committee is a registry identity like any other: its record's ``alg`` is ``"committee"``
and its ``pk`` is the committee descriptor, the canonical CBOR map
``{members: [[alg, pk], …], threshold: k}``; its address is therefore
``address_of("committee", descriptor)``, derived exactly as for a single key. Its
transactions keep the one envelope (``{chain_id, sender, nonce, kind, body, alg, sig}``,
``alg = "committee"``); ``sig`` is the canonical CBOR list ``[[member_index, signature],
…]`` in ascending member order, each an ML-DSA signature by that member over the usual
signing bytes under the FIPS 204 context ``gl/tx``.

This is how the DSO runs without a single point of failure (docs/threat-model.md row 7): three DSO
nodes with k = 2 keep signing when one crashes, and one compromised node cannot sign
alone — the same k-of-n structure as a block's quorum certificate. A committee changes its
members or threshold with ``registry/rotate_key`` (signed by the current committee, its
proof of possession signed by the new one), keeping its address, balance and roles.

Checked in ``execute.authenticate`` (admission runs the same function). Rules:
``committee-signature`` (the signature list is malformed), ``unknown-member`` (an index
outside the committee), ``duplicate-signer`` (one member twice), ``bad-signature`` (a
listed member's signature does not verify), ``committee-threshold`` (fewer than k).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from gridledger.crypto.sig import PQ_SIG_ALGS, address_of, verify_signature
from gridledger.errors import (
    BadSignature,
    CommitteeSignature,
    CommitteeThreshold,
    DuplicateSigner,
    InvalidBody,
    RejectedTx,
    UnknownMember,
)
from gridledger.ledger import codec

COMMITTEE_ALG = "committee"
"""The ``alg`` of a committee identity and of its transactions' envelopes."""
MAX_MEMBERS = 16
"""Most members a committee may have (its transactions carry up to this many signatures)."""
_PK_BYTES = {"ml-dsa-44": 1312, "ml-dsa-65": 1952, "ml-dsa-87": 2592}


class BadCommittee(InvalidBody):
    """A committee descriptor is malformed: threshold outside [1, n], more than 16 members,
    a member key that is not ML-DSA of the right length, or one key listed twice."""

    rule = "bad-committee"


@dataclass(frozen=True)
class Committee:
    """A k-of-n committee: member keys ``(alg, pk)`` in index order and the threshold k."""

    threshold: int
    members: tuple[tuple[str, bytes], ...]

    def encode(self) -> bytes:
        """The descriptor: what the registry stores as the committee's ``pk``."""
        return codec.encode({"members": [[a, pk] for a, pk in self.members],
                             "threshold": self.threshold})

    @property
    def address(self) -> bytes:
        return address_of(COMMITTEE_ALG, self.encode())

    def index_of(self, alg: str, pk: bytes) -> int | None:
        """The member index of key ``(alg, pk)`` (None: not a member)."""
        try:
            return self.members.index((alg, pk))
        except ValueError:
            return None


def make_committee(threshold: int, members: Sequence[tuple[str, bytes]]) -> Committee:
    """A checked committee; raises ``BadCommittee`` naming what is wrong."""
    c = Committee(threshold, tuple((a, bytes(pk)) for a, pk in members))
    check_committee(c)
    return c


def check_committee(c: Committee) -> None:
    """Raise ``BadCommittee`` unless 1 <= k <= n <= 16, every member an ML-DSA key of its
    algorithm's length, and no key listed twice."""
    n = len(c.members)
    if not 1 <= n <= MAX_MEMBERS:
        raise BadCommittee(f"a committee has 1..{MAX_MEMBERS} members, not {n}")
    if not isinstance(c.threshold, int) or isinstance(c.threshold, bool) \
            or not 1 <= c.threshold <= n:
        raise BadCommittee(f"threshold must be in [1, {n}]")
    for i, (alg, pk) in enumerate(c.members):
        if alg not in PQ_SIG_ALGS or not isinstance(pk, bytes) or len(pk) != _PK_BYTES[alg]:
            raise BadCommittee(f"member {i} must be an ML-DSA public key of its length")
    if len({pk for _a, pk in c.members}) != n:
        raise BadCommittee("a key is listed twice")


@functools.lru_cache(maxsize=256)
def parse_committee(descriptor: bytes) -> Committee:
    """Decode and check a descriptor (the committee's registered ``pk``); memoised, as a
    pure function of the bytes. Raises ``BadCommittee``."""
    try:
        obj = codec.decode(descriptor)
    except Exception as exc:
        raise BadCommittee("the descriptor is not canonical CBOR") from exc
    if not isinstance(obj, dict) or sorted(obj) != ["members", "threshold"] \
            or not isinstance(obj["members"], list):
        raise BadCommittee("the descriptor is a map {members: [[alg, pk], …], threshold}")
    members = []
    for m in obj["members"]:
        if not (isinstance(m, list) and len(m) == 2 and isinstance(m[0], str)
                and isinstance(m[1], bytes)):
            raise BadCommittee("each member is [alg, pk]")
        members.append((m[0], m[1]))
    c = Committee(obj["threshold"], tuple(members))
    check_committee(c)
    return c


def encode_signatures(sigs: Sequence[tuple[int, bytes]]) -> bytes:
    """A committee transaction's ``sig``: ``[[index, signature], …]`` by ascending index."""
    return codec.encode([[i, s] for i, s in sorted(sigs)])


def decode_signatures(sig: bytes) -> list[tuple[int, bytes]]:
    """The ``(member index, signature)`` pairs of a committee ``sig``, in order. Raises
    ``CommitteeSignature`` unless it is a canonical CBOR list of ``[index, bytes]`` pairs
    of at most 16 entries in strictly ascending index order (``DuplicateSigner`` when an
    index repeats)."""
    try:
        obj = codec.decode(sig)
    except Exception as exc:
        raise CommitteeSignature("the signature is not a canonical CBOR list") from exc
    if not isinstance(obj, list) or not 1 <= len(obj) <= MAX_MEMBERS:
        raise CommitteeSignature(f"the signature is a list of 1..{MAX_MEMBERS} [index, sig]")
    out: list[tuple[int, bytes]] = []
    for e in obj:
        if not (isinstance(e, list) and len(e) == 2 and isinstance(e[0], int)
                and not isinstance(e[0], bool) and isinstance(e[1], bytes)):
            raise CommitteeSignature("each entry is [member index, signature bytes]")
        if out and e[0] == out[-1][0]:
            raise DuplicateSigner(f"member {e[0]} signs twice")
        if out and e[0] < out[-1][0]:
            raise CommitteeSignature("entries must be in ascending member order")
        out.append((e[0], e[1]))
    return out


def _member_ok(alg: str, pk: bytes, message: bytes, sig: bytes, context: bytes) -> bool:
    # Not memoised across calls: a process-wide memo let the validators an in-process network
    # runs in one process (the demo's 0 and 1, the host's 2 and 3) share one check of each
    # member's signature, where every validator must verify every signature itself (issue
    # 17's rule; its floor and a full check's cost were counted short). ~940 member
    # signatures a default day: ~0.2 s a validator.
    return verify_signature(alg, pk, message, sig, context)


def verify_committee(c: Committee, message: bytes, sig: bytes, context: bytes) -> None:
    """Check a committee signature: k or more distinct members, each valid.

    Raises ``CommitteeSignature`` / ``DuplicateSigner`` (malformed list), ``UnknownMember``
    (an index outside the committee), ``BadSignature`` (a listed member's signature does
    not verify: an assembler includes only signatures it checked), ``CommitteeThreshold``
    (fewer than k signatures).
    """
    entries = decode_signatures(sig)
    for i, s in entries:
        if not 0 <= i < len(c.members):
            raise UnknownMember(f"member index {i} outside a committee of {len(c.members)}")
        alg, pk = c.members[i]
        if not _member_ok(alg, pk, message, s, context):
            raise BadSignature(f"committee member {i}'s signature does not verify")
    if len(entries) < c.threshold:
        raise CommitteeThreshold(f"{len(entries)} member signature(s), {c.threshold} of "
                                 f"{len(c.members)} needed")


def verifies(alg: str, pk: bytes, message: bytes, sig: bytes, context: bytes) -> bool:
    """Whether ``sig`` is a valid signature of an identity's key ``(alg, pk)`` — a single
    ML-DSA key or a committee descriptor — over ``message`` (e.g. a proof of possession).
    Never raises for bad input."""
    if alg != COMMITTEE_ALG:
        try:
            return verify_signature(alg, pk, message, sig, context)
        except Exception:
            return False
    try:
        verify_committee(parse_committee(pk), message, sig, context)
    except RejectedTx:
        return False
    return True
