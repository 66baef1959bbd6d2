"""Rotating pseudonyms certified by k-of-n trustees, with threshold identity escrow.

THREATS.md row 5: participants trade under pseudonyms that nobody can link to them, yet a
recorded dispute can open exactly one pseudonym's identity with k of the n trustees, and the
opening itself is a ledger event.

* A **pseudonym** is a fresh ML-DSA key (FIPS 204) per epoch (a day, or a slot: rotation is
  policy, see ``privacy.attacks.analyse_deanonymization`` for why finer is better).
* The **escrow**: an identity record (identity key + the identity key's signature binding the
  pseudonym) is encrypted under a random 256-bit data key with AES-256-GCM; the data key is
  Shamir-shared k-of-n (Shamir 1979) and share ``j`` is sealed to trustee ``j`` with
  ML-KEM-768 + HKDF + AES-GCM (FIPS 203; ``crypto.kem.seal``), with the pseudonym bound in as
  associated data. Fewer than k trustees learn nothing about the data key, hence nothing
  about the identity.
* The **certificate** is k ML-DSA signatures from distinct trustees over
  (community, epoch, scope, pseudonym public key, escrow hash). A trustee endorses after
  checking the pseudonym's proof of possession and that its own escrow share opens and is
  well formed. Trustees never see the identity at issuance: the request carries none.
* An **opening** needs a dispute id that the ledger has recorded against this pseudonym.
  Each trustee checks that before releasing its share and signs
  (community, dispute id, certificate hash, share); k such shares give the data key, the
  identity record, and an ``OpeningRecord`` (which trustees, which dispute, which
  pseudonym -> which identity) that any validator re-verifies with ``verify_opening``.

What this does not give: trustees cannot check at issuance that the escrowed identity is a
registered member (that would need a post-quantum blind signature or zero-knowledge proof,
neither standardised). A bogus escrow is caught at opening: the identity record must carry
a valid signature by a key whose address the registry knows, binding this pseudonym.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.kem import KemKey, seal
from gridledger.crypto.shamir import (
    SHARE_BYTES,
    RandomBytes,
    Share,
    evaluate_polynomial,
    field_from_bytes,
    field_to_bytes,
    random_coefficients,
    reconstruct_secret,
)
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.errors import CryptoError
from gridledger.privacy.errors import (
    EndorsementRefused,
    InvalidCertificate,
    OpeningRefused,
    PrivacyError,
)

Scope = Literal["trade", "roaming"]
"""What a pseudonym may be used for (a roaming certificate is shown to other communities)."""

CTX_POP = b"gl/pseudonym/pop/v1"
CTX_BIND = b"gl/pseudonym/bind/v1"
CTX_CERT = b"gl/pseudonym/cert/v1"
CTX_OPEN = b"gl/pseudonym/open/v1"
# The 32-byte data key is carried as three field elements of at most 15 bytes each, so every
# chunk is below p = 2^127 - 1.
_CHUNKS = (15, 15, 2)
_NONCE = 12


@dataclass(frozen=True)
class TrusteeInfo:
    """A trustee's public keys: ML-DSA for endorsements and openings, ML-KEM for escrow."""

    trustee_id: str
    sig_key: PublicKey
    kem_public_key: bytes


@dataclass(frozen=True)
class TrusteeSet:
    """A community's n trustees and the threshold k; trustee ``j`` holds Shamir x = j + 1."""

    community: str
    threshold: int
    trustees: tuple[TrusteeInfo, ...]

    def __post_init__(self) -> None:
        n = len(self.trustees)
        if not 1 <= self.threshold <= n <= 32:
            raise PrivacyError("trustee set needs 1 <= k <= n <= 32")
        if len({t.sig_key for t in self.trustees}) != n or len(
                {t.trustee_id for t in self.trustees}) != n:
            raise PrivacyError("trustee ids and keys must be distinct")

    def digest(self) -> bytes:
        """Hash of the set (what a foreign community pins for roaming)."""
        parts = [self.community.encode(), self.threshold.to_bytes(2, "big")]
        for t in self.trustees:
            parts += [t.trustee_id.encode(), t.sig_key.alg.encode(), t.sig_key.raw,
                      t.kem_public_key]
        return tagged_hash("gl/pseudonym/trustees", *parts)


@dataclass(frozen=True)
class TrusteeKeys:
    """A trustee's private keys."""

    trustee_id: str
    signing_key: SigningKey
    kem_key: KemKey

    @classmethod
    def generate(cls, trustee_id: str, alg: str = "ml-dsa-65") -> TrusteeKeys:
        """Fresh keys from the OS RNG."""
        return cls(trustee_id, SigningKey.generate(alg), KemKey.generate())

    def info(self) -> TrusteeInfo:
        """The public part."""
        return TrusteeInfo(self.trustee_id, self.signing_key.public_key, self.kem_key.public_key)


def _position(trustees: TrusteeSet, trustee_id: str) -> int:
    for j, t in enumerate(trustees.trustees):
        if t.trustee_id == trustee_id:
            return j
    raise PrivacyError(f"{trustee_id!r} is not a trustee of {trustees.community}")


def _binding(community: str, epoch: int, scope: str, pseudonym: PublicKey) -> bytes:
    return tagged_hash("gl/pseudonym/binding", community.encode(), epoch.to_bytes(8, "big"),
                       scope.encode(), pseudonym.alg.encode(), pseudonym.raw)


@dataclass(frozen=True)
class IdentityEscrow:
    """The escrowed identity of one pseudonym: AES-GCM record + k-of-n sealed key shares."""

    community: str
    epoch: int
    scope: str
    pseudonym_key: PublicKey
    record_ciphertext: bytes
    sealed_shares: tuple[bytes, ...]

    def digest(self) -> bytes:
        """The escrow hash that the certificate signs."""
        return tagged_hash("gl/pseudonym/escrow", _binding(self.community, self.epoch,
                                                           self.scope, self.pseudonym_key),
                           self.record_ciphertext, *self.sealed_shares)

    def _share_aad(self, position: int) -> bytes:
        return tagged_hash("gl/pseudonym/share-aad",
                           _binding(self.community, self.epoch, self.scope, self.pseudonym_key),
                           tagged_hash("gl/pseudonym/record", self.record_ciphertext),
                           position.to_bytes(2, "big"))


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
class Endorsement:
    """One trustee's ML-DSA signature over a certificate body."""

    trustee_index: int
    signature: bytes


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
                           _binding(self.community, self.epoch, self.scope, self.pseudonym_key),
                           self.escrow_digest)

    def digest(self) -> bytes:
        """Hash of the certificate body (endorsements excluded: any k of them certify it)."""
        return self.signed_message()

    @property
    def address(self) -> bytes:
        """The pseudonym's ledger address."""
        return self.pseudonym_key.address


def _dek_to_field(dek: bytes) -> list[int]:
    out, i = [], 0
    for n in _CHUNKS:
        out.append(int.from_bytes(dek[i:i + n], "big"))
        i += n
    return out


def _field_to_dek(values: Sequence[int]) -> bytes:
    try:
        return b"".join(v.to_bytes(n, "big") for v, n in zip(values, _CHUNKS, strict=True))
    except OverflowError as exc:
        raise CryptoError("reconstructed key chunk out of range") from exc


def _identity_record(identity_key: SigningKey, binding: bytes) -> bytes:
    pk = identity_key.public_key
    sig = identity_key.sign(binding, CTX_BIND)
    alg = pk.alg.encode()
    return (len(alg).to_bytes(1, "big") + alg + len(pk.raw).to_bytes(2, "big") + pk.raw + sig)


def _parse_record(record: bytes, binding: bytes) -> PublicKey:
    try:
        n = record[0]
        alg = record[1:1 + n].decode()
        k = int.from_bytes(record[1 + n:3 + n], "big")
        pk = PublicKey(alg, record[3 + n:3 + n + k])
        sig = record[3 + n + k:]
    except (IndexError, UnicodeDecodeError, CryptoError) as exc:
        raise OpeningRefused("identity record is malformed") from exc
    if not pk.verify(binding, sig, CTX_BIND):
        raise OpeningRefused("identity record does not bind this pseudonym")
    return pk


def create_pseudonym(identity_key: SigningKey, trustees: TrusteeSet, epoch: int,
                     scope: Scope = "trade", *, pseudonym_alg: str = "ml-dsa-65",
                     random_bytes: RandomBytes = os.urandom) -> tuple[SigningKey,
                                                                      PseudonymRequest]:
    """Make a fresh pseudonym key and its escrowed identity (run by the participant).

    The request carries no identity in the clear; the identity key only signs the binding
    that goes, encrypted, into the escrow. Returns the pseudonym's private key and the
    request to send to the trustees.
    """
    pseudonym = SigningKey.from_seed(pseudonym_alg, random_bytes(32))
    pk = pseudonym.public_key
    binding = _binding(trustees.community, epoch, scope, pk)
    dek = random_bytes(32)
    nonce = random_bytes(_NONCE)
    record_ct = nonce + AESGCM(dek).encrypt(nonce, _identity_record(identity_key, binding),
                                            binding)
    k = trustees.threshold
    polys = [(c, random_coefficients(k, random_bytes)) for c in _dek_to_field(dek)]
    draft = IdentityEscrow(trustees.community, epoch, scope, pk, record_ct, ())
    sealed = []
    for j, trustee in enumerate(trustees.trustees):
        share = b"".join(field_to_bytes(evaluate_polynomial(c, coeffs, j + 1))
                         for c, coeffs in polys)
        sealed.append(seal(trustee.kem_public_key, share, draft._share_aad(j)))
    escrow = IdentityEscrow(trustees.community, epoch, scope, pk, record_ct, tuple(sealed))
    pop = pseudonym.sign(escrow.digest(), CTX_POP)
    return pseudonym, PseudonymRequest(escrow, pop)


def _open_own_share(trustee: TrusteeKeys, position: int, escrow: IdentityEscrow) -> bytes:
    try:
        share = trustee.kem_key.open(escrow.sealed_shares[position], escrow._share_aad(position))
    except (CryptoError, IndexError) as exc:
        raise EndorsementRefused("escrow share does not open for this trustee") from exc
    if len(share) != SHARE_BYTES * len(_CHUNKS):
        raise EndorsementRefused("escrow share has the wrong length")
    try:
        for i in range(len(_CHUNKS)):
            field_from_bytes(share[i * SHARE_BYTES:(i + 1) * SHARE_BYTES])
    except CryptoError as exc:
        raise EndorsementRefused("escrow share is not canonical") from exc
    return share


def endorse_pseudonym(trustee: TrusteeKeys, trustees: TrusteeSet, request: PseudonymRequest,
                      epoch: int) -> Endorsement:
    """A trustee's endorsement, after checking the request (raises ``EndorsementRefused``).

    Checks: community and ``epoch`` (the one the trustee is issuing for), the pseudonym's
    proof of possession, one sealed share per trustee, and that this trustee's share opens
    under the pseudonym-bound associated data and is well formed.
    """
    e = request.escrow
    j = _check_request(trustee, trustees, request, epoch)
    body = PseudonymCertificate(e.community, e.epoch, e.scope, e.pseudonym_key, e.digest(), ())
    return Endorsement(j, trustee.signing_key.sign(body.signed_message(), CTX_CERT))


def _check_request(trustee: TrusteeKeys, trustees: TrusteeSet, request: PseudonymRequest,
                   epoch: int) -> int:
    e = request.escrow
    j = _position(trustees, trustee.trustee_id)
    if e.community != trustees.community or e.epoch != epoch:
        raise EndorsementRefused("request is for another community or epoch")
    if e.scope not in ("trade", "roaming"):
        raise EndorsementRefused(f"unknown scope {e.scope!r}")
    if len(e.sealed_shares) != len(trustees.trustees):
        raise EndorsementRefused("escrow must carry one sealed share per trustee")
    if not e.pseudonym_key.verify(e.digest(), request.pop_signature, CTX_POP):
        raise EndorsementRefused("bad proof of possession of the pseudonym key")
    _open_own_share(trustee, j, e)
    return j


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


# --------------------------------------------------------------------------- opening
@dataclass(frozen=True)
class OpeningShare:
    """A trustee's escrow share released for one recorded dispute, signed."""

    trustee_index: int
    dispute_id: bytes
    certificate_digest: bytes
    share: bytes
    signature: bytes

    def signed_message(self, community: str) -> bytes:
        """What the trustee signs: community, dispute, certificate and the share itself."""
        return tagged_hash("gl/pseudonym/opening-share", community.encode(), self.dispute_id,
                           self.certificate_digest, self.trustee_index.to_bytes(2, "big"),
                           self.share)


@dataclass(frozen=True)
class OpeningRecord:
    """The ledger event of an identity opening: which trustees, dispute, pseudonym -> identity."""

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
    j = _position(trustees, trustee.trustee_id)
    try:
        share = _open_own_share(trustee, j, escrow)
    except EndorsementRefused as exc:
        raise OpeningRefused(exc.detail) from exc
    unsigned = OpeningShare(j, dispute_id, cert.digest(), share, b"")
    return OpeningShare(j, dispute_id, cert.digest(), share,
                        trustee.signing_key.sign(unsigned.signed_message(trustees.community),
                                                 CTX_OPEN))


def _valid_shares(trustees: TrusteeSet, cert: PseudonymCertificate, dispute_id: bytes,
                  shares: Sequence[OpeningShare]) -> dict[int, OpeningShare]:
    good: dict[int, OpeningShare] = {}
    for s in shares:
        if s.trustee_index in good or not 0 <= s.trustee_index < len(trustees.trustees):
            continue
        if s.dispute_id != dispute_id or s.certificate_digest != cert.digest():
            continue
        if len(s.share) != SHARE_BYTES * len(_CHUNKS):
            continue
        if trustees.trustees[s.trustee_index].sig_key.verify(
                s.signed_message(trustees.community), s.signature, CTX_OPEN):
            good[s.trustee_index] = s
    return good


def _try_open(escrow: IdentityEscrow, subset: Sequence[OpeningShare],
              threshold: int) -> PublicKey | None:
    try:
        values = []
        for i in range(len(_CHUNKS)):
            pts = [Share(s.trustee_index + 1,
                         field_from_bytes(s.share[i * SHARE_BYTES:(i + 1) * SHARE_BYTES]))
                   for s in subset]
            values.append(reconstruct_secret(pts, threshold))
        dek = _field_to_dek(values)
        binding = _binding(escrow.community, escrow.epoch, escrow.scope, escrow.pseudonym_key)
        ct = escrow.record_ciphertext
        record = AESGCM(dek).decrypt(ct[:_NONCE], ct[_NONCE:], binding)
    except Exception:
        return None
    try:
        return _parse_record(record, binding)
    except OpeningRefused:
        return None


def open_identity(trustees: TrusteeSet, cert: PseudonymCertificate, escrow: IdentityEscrow,
                  dispute_id: bytes, shares: Sequence[OpeningShare]) -> OpeningRecord:
    """Combine >= k released shares into the opening record (run by anyone, e.g. the court).

    Tries k-subsets of the valid shares until one opens the escrow; trustees whose shares
    disagree with the opening subset are listed as faulty. Raises ``OpeningRefused`` with
    fewer than k valid shares for this dispute, or if no subset opens a well-formed record.
    """
    if escrow.digest() != cert.escrow_digest:
        raise OpeningRefused("escrow does not match the certificate")
    good = _valid_shares(trustees, cert, dispute_id, shares)
    k = trustees.threshold
    if len(good) < k:
        raise OpeningRefused(f"{len(good)} valid trustee shares for this dispute; need {k}")
    ordered = [good[i] for i in sorted(good)]
    for subset in combinations(ordered, k):
        identity = _try_open(escrow, subset, k)
        if identity is None:
            continue
        faulty = tuple(trustees.trustees[s.trustee_index].trustee_id for s in ordered
                       if s not in subset and _try_open(escrow, (*subset[:-1], s), k) is None)
        return OpeningRecord(
            community=trustees.community, dispute_id=dispute_id, pseudonym_address=cert.address,
            identity_address=identity.address, identity_key=identity,
            trustee_ids=tuple(trustees.trustees[s.trustee_index].trustee_id for s in subset),
            shares=tuple(subset), certificate=cert, escrow=escrow, faulty_trustees=faulty)
    raise OpeningRefused("no k shares open a well-formed identity record (bogus escrow or "
                         "lying trustees)")


def verify_opening(record: OpeningRecord, trustees: TrusteeSet) -> None:
    """Validator check of an opening record (pure); raises ``OpeningRefused``.

    Re-verifies the certificate, that the escrow is the certified one, k valid distinct
    trustee shares signed for this dispute and certificate, and that exactly those shares
    open the escrow to the recorded identity, whose key signed the pseudonym binding.
    """
    cert, escrow = record.certificate, record.escrow
    try:
        verify_certificate(cert, trustees)
    except InvalidCertificate as exc:
        raise OpeningRefused(exc.detail) from exc
    if escrow.digest() != cert.escrow_digest or record.pseudonym_address != cert.address:
        raise OpeningRefused("record's escrow or pseudonym does not match the certificate")
    good = _valid_shares(trustees, cert, record.dispute_id, record.shares)
    if len(good) != len(record.shares) or len(good) != trustees.threshold:
        raise OpeningRefused("record must carry exactly k valid distinct trustee shares")
    names = tuple(trustees.trustees[i].trustee_id for i in sorted(good))
    if names != tuple(sorted(record.trustee_ids, key=lambda n: _position(trustees, n))):
        raise OpeningRefused("record's trustee list does not match its shares")
    identity = _try_open(escrow, [good[i] for i in sorted(good)], trustees.threshold)
    if identity is None or identity != record.identity_key:
        raise OpeningRefused("shares do not open the escrow to the recorded identity")
    if identity.address != record.identity_address:
        raise OpeningRefused("identity address does not match the identity key")


# --------------------------------------------------------------------------- batch issuance
# One certificate per community and epoch instead of one per pseudonym: the trustees sign
# the Merkle root over every pseudonym they issued for the epoch. That costs k signatures a
# day instead of k per pseudonym (per-slot rotation would otherwise put ~100 trustee
# signatures per member per day on the ledger), and every pseudonym of the epoch shows the
# same certificate, so the certificate itself links nothing.
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


def endorse_batch(trustee: TrusteeKeys, trustees: TrusteeSet, entries: Sequence[BatchEntry],
                  epoch: int, slots_per_epoch: int) -> tuple[bytes, int, Endorsement]:
    """A trustee checks every request of the batch and signs its Merkle root.

    Each request is checked as for a single certificate (proof of possession, this
    trustee's escrow share opens); each entry's slots must lie inside ``epoch``. Returns
    (root, count, endorsement); raises ``EndorsementRefused`` naming the first bad entry.
    """
    from gridledger.crypto.merkle import root_of_hashes

    first, last = epoch * slots_per_epoch, (epoch + 1) * slots_per_epoch - 1
    leaves = []
    for i, entry in enumerate(entries):
        if entry.request.escrow.scope != "trade":
            raise EndorsementRefused(f"entry {i}: batch certificates are for trading pseudonyms")
        if not first <= entry.first_slot <= entry.last_slot <= last:
            raise EndorsementRefused(f"entry {i}: slots must lie inside epoch {epoch}")
        if not entry.feeder or len(entry.feeder) > 64:
            raise EndorsementRefused(f"entry {i}: feeder must be 1..64 characters")
        j = _check_request(trustee, trustees, entry.request, epoch)
        leaves.append(entry_leaf(trustees.community, entry))
    if not leaves:
        raise EndorsementRefused("empty batch")
    root = root_of_hashes(leaves)
    sig = trustee.signing_key.sign(batch_message(trustees.community, epoch, root, len(leaves)),
                                   CTX_BATCH)
    return root, len(leaves), Endorsement(j, sig)


def open_escrow(escrow: IdentityEscrow, shares: Mapping[int, bytes], threshold: int
                ) -> tuple[PublicKey, tuple[int, ...], tuple[int, ...]] | None:
    """Open an escrow from released shares (trustee index -> share bytes), pure.

    Used by validators when trustees release shares in ledger transactions (the envelope
    signature authenticates each trustee). Returns (identity key, the k trustee indices
    that opened it, indices whose shares disagree) or None if no k-subset opens a
    well-formed record.
    """
    good = [OpeningShare(i, b"", b"", s, b"") for i, s in sorted(shares.items())
            if len(s) == SHARE_BYTES * len(_CHUNKS)]
    for subset in combinations(good, threshold):
        identity = _try_open(escrow, subset, threshold)
        if identity is None:
            continue
        faulty = tuple(s.trustee_index for s in good if s not in subset
                       and _try_open(escrow, (*subset[:-1], s), threshold) is None)
        return identity, tuple(s.trustee_index for s in subset), faulty
    return None
