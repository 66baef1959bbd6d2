"""Pseudonym requests and certificates: k of n trustees vouch for a fresh key whose owner is
escrowed, without learning who it is."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.shamir import RandomBytes
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.privacy.errors import EndorsementRefused, InvalidCertificate
from gridledger.privacy.pseudonyms.escrow import (
    IdentityEscrow,
    binding,
    identity_records,
    make_escrow,
    open_own_share,
)
from gridledger.privacy.pseudonyms.trustees import Endorsement, TrusteeKeys, TrusteeSet

Scope = Literal["trade", "roaming"]
"""What a pseudonym may be used for (a roaming certificate is shown to other communities)."""

CTX_POP = b"gl/pseudonym/pop/v1"
CTX_CERT = b"gl/pseudonym/cert/v1"


@dataclass(frozen=True)
class PseudonymRequest:
    """What a participant sends the trustees: pseudonym key, escrow, proof of possession."""

    escrow: IdentityEscrow
    pop_signature: bytes

    @property
    def pseudonym_key(self) -> PublicKey:
        """The pseudonym's public key."""
        return self.escrow.pseudonym_key


@dataclass(frozen=True)
class PseudonymCertificate:
    """A pseudonym key certified by >= k trustees of ``community`` for ``epoch``."""

    community: str
    epoch: int
    scope: str
    pseudonym_key: PublicKey
    escrow_digest: bytes
    endorsements: tuple[Endorsement, ...]

    def signed_message(self) -> bytes:
        """What each trustee signs."""
        return tagged_hash("gl/pseudonym/cert",
                           binding(self.community, self.epoch, self.scope, self.pseudonym_key),
                           self.escrow_digest)

    def digest(self) -> bytes:
        """Hash of the certificate body (endorsements excluded: any k of them certify it)."""
        return self.signed_message()

    @property
    def address(self) -> bytes:
        """The pseudonym's ledger address."""
        return self.pseudonym_key.address


def create_pseudonym(identity_key: SigningKey, trustees: TrusteeSet, epoch: int,
                     scope: Scope = "trade", *, address: bytes | None = None,
                     pseudonym_alg: str = "ml-dsa-65",
                     random_bytes: RandomBytes = os.urandom) -> tuple[SigningKey,
                                                                      PseudonymRequest]:
    """Make a fresh pseudonym key and its escrowed identity (run by the participant).

    ``address`` is the owner's ledger address (default: the address of ``identity_key``,
    which differs once the owner has rotated its key). The request carries no identity in
    the clear. Returns the pseudonym's private key and the request for the trustees. The
    pseudonym key's seed is the first thing drawn from ``random_bytes``.
    """
    pseudonym = SigningKey.from_seed(pseudonym_alg, random_bytes(32))
    escrow = make_escrow(identity_key, address or identity_key.address, trustees, epoch,
                         scope, pseudonym.public_key, random_bytes)
    pop = pseudonym.sign(escrow.digest(), CTX_POP)
    return pseudonym, PseudonymRequest(escrow, pop)


def create_pseudonyms(identity_key: SigningKey, trustees: TrusteeSet, epoch: int, count: int,
                      scope: Scope = "trade", *, address: bytes | None = None,
                      pseudonym_alg: str = "ml-dsa-65",
                      random_bytes: RandomBytes = os.urandom
                      ) -> list[tuple[SigningKey, PseudonymRequest]]:
    """``count`` pseudonyms as ``create_pseudonym`` makes one, with one owner signature over
    all their escrows (``escrow.identity_records``): per-slot rotation makes ~100 a day."""
    owner = address or identity_key.address
    keys = [SigningKey.from_seed(pseudonym_alg, random_bytes(32)) for _ in range(count)]
    binds = [binding(trustees.community, epoch, scope, k.public_key) for k in keys]
    records = identity_records(identity_key, owner, binds, random_bytes)
    out = []
    for key, record in zip(keys, records, strict=True):
        escrow = make_escrow(identity_key, owner, trustees, epoch, scope, key.public_key,
                             random_bytes, record=record)
        out.append((key, PseudonymRequest(escrow, key.sign(escrow.digest(), CTX_POP))))
    return out


def check_request(trustee: TrusteeKeys, trustees: TrusteeSet, request: PseudonymRequest,
                  epoch: int) -> int:
    """A trustee's checks of a request; returns its position or raises ``EndorsementRefused``.

    Community and ``epoch`` (the one the trustee is issuing for), the pseudonym's proof of
    possession, one sealed share and commitment per trustee, and that this trustee's share
    opens under the pseudonym-bound associated data, is canonical and matches its
    commitment (so it can always release exactly what the owner committed to).
    """
    e = request.escrow
    j = trustees.position(trustee.trustee_id)
    if e.community != trustees.community or e.epoch != epoch:
        raise EndorsementRefused("request is for another community or epoch")
    if e.scope not in ("trade", "roaming"):
        raise EndorsementRefused(f"unknown scope {e.scope!r}")
    n = len(trustees.trustees)
    if len(e.sealed_shares) != n or len(e.share_commitments) != n:
        raise EndorsementRefused("escrow must carry one sealed share and commitment per trustee")
    if not e.pseudonym_key.verify(e.digest(), request.pop_signature, CTX_POP):
        raise EndorsementRefused("bad proof of possession of the pseudonym key")
    open_own_share(trustee, j, e)
    return j


def endorse_pseudonym(trustee: TrusteeKeys, trustees: TrusteeSet, request: PseudonymRequest,
                      epoch: int) -> Endorsement:
    """A trustee's endorsement, after ``check_request`` (raises ``EndorsementRefused``)."""
    e = request.escrow
    j = check_request(trustee, trustees, request, epoch)
    body = PseudonymCertificate(e.community, e.epoch, e.scope, e.pseudonym_key, e.digest(), ())
    return Endorsement(j, trustee.signing_key.sign(body.signed_message(), CTX_CERT))


def assemble_certificate(request: PseudonymRequest,
                         endorsements: Sequence[Endorsement]) -> PseudonymCertificate:
    """The certificate from a request and its trustees' endorsements (sorted by trustee)."""
    e = request.escrow
    uniq = {x.trustee_index: x for x in endorsements}
    return PseudonymCertificate(e.community, e.epoch, e.scope, e.pseudonym_key, e.digest(),
                                tuple(uniq[i] for i in sorted(uniq)))


def verify_certificate(cert: PseudonymCertificate, trustees: TrusteeSet, *,
                       epoch: int | None = None, scope: str | None = None) -> None:
    """Validator check: at least k valid endorsements from distinct trustees (pure).

    ``epoch`` / ``scope``, if given, must match. Raises ``InvalidCertificate``.
    """
    if cert.community != trustees.community:
        raise InvalidCertificate("certificate is from another community")
    if epoch is not None and cert.epoch != epoch:
        raise InvalidCertificate(f"certificate is for epoch {cert.epoch}, not {epoch}")
    if scope is not None and cert.scope != scope:
        raise InvalidCertificate(f"certificate scope is {cert.scope!r}, not {scope!r}")
    message = cert.signed_message()
    good: set[int] = set()
    for e in cert.endorsements:
        if e.trustee_index in good or not 0 <= e.trustee_index < len(trustees.trustees):
            continue
        if trustees.trustees[e.trustee_index].sig_key.verify(message, e.signature, CTX_CERT):
            good.add(e.trustee_index)
    if len(good) < trustees.threshold:
        raise InvalidCertificate(
            f"{len(good)} valid distinct trustee endorsements; need {trustees.threshold}")
