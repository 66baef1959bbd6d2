"""Opening an identity for a recorded dispute, off the ledger (a court, an auditor).

An opening needs a dispute id the ledger has recorded against this pseudonym. Each trustee
checks that before releasing its share and signs (community, dispute id, certificate hash,
share, blind); k such shares, each matching its commitment in the certified escrow, give the
data key, the identity record and an ``OpeningRecord`` that any validator re-verifies with
``verify_opening``. On the ledger the same happens in transactions
(``privacy/escrow``, ``privacy/release``); see ``ledger/modules/privacy``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import PublicKey
from gridledger.privacy.errors import (
    EndorsementRefused,
    InvalidCertificate,
    OpeningRefused,
)
from gridledger.privacy.pseudonyms.certificates import (
    PseudonymCertificate,
    verify_certificate,
)
from gridledger.privacy.pseudonyms.escrow import (
    IdentityEscrow,
    open_escrow,
    open_own_share,
)
from gridledger.privacy.pseudonyms.trustees import TrusteeKeys, TrusteeSet

CTX_OPEN = b"gl/pseudonym/open/v2"


@dataclass(frozen=True)
class OpeningShare:
    """A trustee's escrow share (and its commitment's blind) released for one dispute, signed."""

    trustee_index: int
    dispute_id: bytes
    certificate_digest: bytes
    share: bytes
    blind: bytes
    signature: bytes

    def signed_message(self, community: str) -> bytes:
        """What the trustee signs: community, dispute, certificate and the share itself."""
        return tagged_hash("gl/pseudonym/opening-share", community.encode(), self.dispute_id,
                           self.certificate_digest, self.trustee_index.to_bytes(2, "big"),
                           self.share, self.blind)


@dataclass(frozen=True)
class OpeningRecord:
    """An identity opening: which trustees, dispute, pseudonym -> identity (address, key)."""

    community: str
    dispute_id: bytes
    pseudonym_address: bytes
    identity_address: bytes
    identity_key: PublicKey
    trustee_ids: tuple[str, ...]
    shares: tuple[OpeningShare, ...]
    certificate: PseudonymCertificate
    escrow: IdentityEscrow
    faulty_trustees: tuple[str, ...] = ()
    """Trustees whose signed release contradicts their commitment (their own evidence)."""


def release_share(trustee: TrusteeKeys, trustees: TrusteeSet, cert: PseudonymCertificate,
                  escrow: IdentityEscrow, dispute_id: bytes,
                  recorded_disputes: Mapping[bytes, bytes]) -> OpeningShare:
    """A trustee releases its share to open ``cert``'s identity for ``dispute_id``.

    ``recorded_disputes`` maps dispute ids recorded on the ledger to the pseudonym address
    they are about; the trustee refuses (``OpeningRefused``) unless ``dispute_id`` is there
    and names this pseudonym, and the certificate and escrow check out.
    """
    if recorded_disputes.get(dispute_id) != cert.address:
        raise OpeningRefused("no recorded dispute with this id against this pseudonym")
    try:
        verify_certificate(cert, trustees)
    except InvalidCertificate as exc:
        raise OpeningRefused(f"certificate does not verify: {exc.detail}") from exc
    if escrow.digest() != cert.escrow_digest:
        raise OpeningRefused("escrow does not match the certificate")
    j = trustees.position(trustee.trustee_id)
    try:
        share, blind = open_own_share(trustee, j, escrow)
    except EndorsementRefused as exc:
        raise OpeningRefused(exc.detail) from exc
    unsigned = OpeningShare(j, dispute_id, cert.digest(), share, blind, b"")
    return OpeningShare(j, dispute_id, cert.digest(), share, blind,
                        trustee.signing_key.sign(unsigned.signed_message(trustees.community),
                                                 CTX_OPEN))


def _signed_shares(trustees: TrusteeSet, cert: PseudonymCertificate, dispute_id: bytes,
                   shares: Sequence[OpeningShare]) -> dict[int, OpeningShare]:
    good: dict[int, OpeningShare] = {}
    for s in shares:
        if s.trustee_index in good or not 0 <= s.trustee_index < len(trustees.trustees):
            continue
        if s.dispute_id != dispute_id or s.certificate_digest != cert.digest():
            continue
        if trustees.trustees[s.trustee_index].sig_key.verify(
                s.signed_message(trustees.community), s.signature, CTX_OPEN):
            good[s.trustee_index] = s
    return good


def open_identity(trustees: TrusteeSet, cert: PseudonymCertificate, escrow: IdentityEscrow,
                  dispute_id: bytes, shares: Sequence[OpeningShare]) -> OpeningRecord:
    """Combine >= k released shares into the opening record (run by anyone, e.g. a court).

    Only signed shares that match their commitment count; a trustee whose signed share does
    not is listed as faulty (that contradiction is its own doing). Raises ``OpeningRefused``
    with fewer than k valid shares, or if k committed shares open no well-formed record
    (a bogus escrow: the owner's doing, no trustee is blamed).
    """
    if escrow.digest() != cert.escrow_digest:
        raise OpeningRefused("escrow does not match the certificate")
    signed = _signed_shares(trustees, cert, dispute_id, shares)
    good = {j: s for j, s in signed.items() if escrow.share_matches(j, s.share, s.blind)}
    faulty = tuple(trustees.trustees[j].trustee_id for j in sorted(signed) if j not in good)
    k = trustees.threshold
    if len(good) < k:
        raise OpeningRefused(f"{len(good)} valid trustee shares for this dispute; need {k}")
    opened = open_escrow(escrow, {j: s.share for j, s in good.items()}, k)
    if opened is None or opened.identity is None:
        raise OpeningRefused("k committed shares open no well-formed identity record: the "
                             "escrow is bogus (the owner's doing)")
    identity = opened.identity
    return OpeningRecord(
        community=trustees.community, dispute_id=dispute_id, pseudonym_address=cert.address,
        identity_address=identity.address, identity_key=identity.key,
        trustee_ids=tuple(trustees.trustees[j].trustee_id for j in opened.used),
        shares=tuple(good[j] for j in opened.used), certificate=cert, escrow=escrow,
        faulty_trustees=faulty)


def verify_opening(record: OpeningRecord, trustees: TrusteeSet) -> None:
    """Validator check of an opening record (pure); raises ``OpeningRefused``.

    Re-verifies the certificate, that the escrow is the certified one, k valid distinct
    trustee shares signed for this dispute and certificate and matching their commitments,
    and that exactly those shares open the escrow to the recorded identity.
    """
    cert, escrow = record.certificate, record.escrow
    try:
        verify_certificate(cert, trustees)
    except InvalidCertificate as exc:
        raise OpeningRefused(exc.detail) from exc
    if escrow.digest() != cert.escrow_digest or record.pseudonym_address != cert.address:
        raise OpeningRefused("record's escrow or pseudonym does not match the certificate")
    good = _signed_shares(trustees, cert, record.dispute_id, record.shares)
    if (len(good) != len(record.shares) or len(good) != trustees.threshold
            or not all(escrow.share_matches(j, s.share, s.blind) for j, s in good.items())):
        raise OpeningRefused("record must carry exactly k valid committed trustee shares")
    names = tuple(trustees.trustees[i].trustee_id for i in sorted(good))
    if names != tuple(sorted(record.trustee_ids, key=trustees.position)):
        raise OpeningRefused("record's trustee list does not match its shares")
    opened = open_escrow(escrow, {j: s.share for j, s in good.items()}, trustees.threshold)
    if (opened is None or opened.identity is None or opened.identity.key != record.identity_key
            or opened.identity.address != record.identity_address):
        raise OpeningRefused("shares do not open the escrow to the recorded identity")
