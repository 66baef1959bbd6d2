"""Threshold identity escrow with verifiable shares.

The escrow of one pseudonym: an identity record — the owner's ledger address, the key it
signs with and that key's signature binding the pseudonym — encrypted under a random
256-bit data key with AES-256-GCM; the data key Shamir-shared k-of-n (Shamir 1979, as three
field elements), share ``j`` sealed to trustee ``j`` with ML-KEM-768 + HKDF + AES-GCM
(FIPS 203, ``crypto.kem.seal``) with the pseudonym bound in as associated data.

**Verifiable shares.** Each sealed share also carries a 32-byte blinding value, and the
escrow publishes ``commit_j = SHA3(j, share_j, blind_j)`` for every trustee (hash-based
commitments, hiding and binding, post-quantum). A trustee checks its own share against its
commitment before it endorses; a share released at opening must match its commitment, so a
trustee can neither release a wrong share unnoticed nor be framed by one: a released share
that matches is, provably, the one the owner dealt. If k committed shares do not open the
record, the escrow is bogus and that is the owner's doing (``EscrowOpening.bogus``).

The record names the owner's *address* as well as its key: a member's address does not
change when it rotates its key, so the ledger can recognise the owner by the key it held
when it joined the epoch (``ledger/modules/privacy``).

**One owner signature per batch.** With per-slot pseudonyms a member makes ~100 a day; an
ML-DSA-65 signature per pseudonym was the largest cost of issuing them. The owner signs,
once, the Merkle root over one *salted* leaf per pseudonym, ``H(binding, address, salt)``;
each record carries its own salt, position and path. An opened record proves the binding
as before, and its path links no other pseudonym: the siblings are hashes of leaves whose
32-byte salts only their own (still sealed) records hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.kem import seal
from gridledger.crypto.merkle import fold_path, inclusion_proofs, root_of_hashes
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
from gridledger.privacy.errors import EndorsementRefused
from gridledger.privacy.pseudonyms.trustees import TrusteeKeys, TrusteeSet

CTX_BIND = b"gl/pseudonym/bind/v3"
SALT_BYTES = 32
# The 32-byte data key is carried as three field elements of at most 15 bytes each, so every
# chunk is below p = 2^127 - 1.
_CHUNKS = (15, 15, 2)
_NONCE = 12
BLIND_BYTES = 32
OPENING_SHARE_BYTES = SHARE_BYTES * len(_CHUNKS)
"""Bytes of one trustee's share of a data key (three field elements)."""


def binding(community: str, epoch: int, scope: str, pseudonym: PublicKey) -> bytes:
    """What ties an escrow, a certificate and a proof of possession to one pseudonym."""
    return tagged_hash("gl/pseudonym/binding", community.encode(), epoch.to_bytes(8, "big"),
                       scope.encode(), pseudonym.alg.encode(), pseudonym.raw)


def share_commitment(position: int, share: bytes, blind: bytes) -> bytes:
    """Hash commitment to trustee ``position``'s share (hiding: ``blind`` is 256 random bits)."""
    return tagged_hash("gl/pseudonym/share-commit", position.to_bytes(2, "big"), share, blind)


@dataclass(frozen=True)
class IdentityEscrow:
    """The escrowed identity of one pseudonym: AES-GCM record, k-of-n sealed key shares and a
    commitment to each share."""

    community: str
    epoch: int
    scope: str
    pseudonym_key: PublicKey
    record_ciphertext: bytes
    sealed_shares: tuple[bytes, ...]
    share_commitments: tuple[bytes, ...]

    def digest(self) -> bytes:
        """The escrow hash that certificates and batch leaves carry."""
        return self._digest

    @cached_property
    def _digest(self) -> bytes:
        return tagged_hash("gl/pseudonym/escrow/v2", self._binding,
                           self.record_ciphertext, *self.sealed_shares,
                           *self.share_commitments)

    # the escrow's fields are frozen: its binding and its record's hash are hashed once each,
    # not again for every share's associated data (its owner seals n shares, each trustee
    # opens its own) and the digest (issue 17: ~9 bindings and 6 record hashes a pseudonym
    # in a privacy epoch's issuance)
    @cached_property
    def _binding(self) -> bytes:
        return binding(self.community, self.epoch, self.scope, self.pseudonym_key)

    @cached_property
    def _record_hash(self) -> bytes:
        return tagged_hash("gl/pseudonym/record", self.record_ciphertext)

    def share_aad(self, position: int) -> bytes:
        """Associated data of sealed share ``position`` (binds pseudonym and record)."""
        return tagged_hash("gl/pseudonym/share-aad", self._binding, self._record_hash,
                           position.to_bytes(2, "big"))

    def share_matches(self, position: int, share: bytes, blind: bytes) -> bool:
        """Whether a released share is the one committed for trustee ``position``."""
        return (0 <= position < len(self.share_commitments)
                and len(share) == OPENING_SHARE_BYTES and len(blind) == BLIND_BYTES
                and share_commitment(position, share, blind) == self.share_commitments[position])


@dataclass(frozen=True)
class Identity:
    """Who an escrow names: the owner's ledger address and the key that signed the binding."""

    address: bytes
    key: PublicKey


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


def owner_leaf(bind: bytes, address: bytes, salt: bytes) -> bytes:
    """One pseudonym's leaf in its owner's signed batch (salted: see the module docstring)."""
    return tagged_hash("gl/pseudonym/owner-leaf", bind, address, salt)


def _owner_root_message(root: bytes, count: int, address: bytes) -> bytes:
    return tagged_hash("gl/pseudonym/owner-root", root, count.to_bytes(4, "big"), address)


def identity_records(identity_key: SigningKey, address: bytes, binds: Sequence[bytes],
                     random_bytes: RandomBytes = os.urandom) -> list[bytes]:
    """The escrow plaintexts of a batch of pseudonyms, one owner signature for all.

    Record layout: address (32) | alg length (1) | alg | pk length (2) | pk | sig length (2) |
    sig | salt (32) | index (4) | count (4) | path (32 each). ``binds`` are the pseudonyms'
    ``binding`` values, in the order the records are returned."""
    if not binds:
        raise ValueError("a batch has at least one pseudonym")
    salts = [random_bytes(SALT_BYTES) for _ in binds]
    leaves = [owner_leaf(b, address, salt) for b, salt in zip(binds, salts, strict=True)]
    sig = identity_key.sign(_owner_root_message(root_of_hashes(leaves), len(leaves), address),
                            CTX_BIND)
    pk = identity_key.public_key
    alg = pk.alg.encode()
    head = (address + len(alg).to_bytes(1, "big") + alg + len(pk.raw).to_bytes(2, "big")
            + pk.raw + len(sig).to_bytes(2, "big") + sig)
    return [head + salt + i.to_bytes(4, "big") + len(leaves).to_bytes(4, "big") + b"".join(path)
            for i, (salt, path) in enumerate(zip(salts, inclusion_proofs(leaves), strict=True))]


def identity_record(identity_key: SigningKey, address: bytes, bind: bytes,
                    random_bytes: RandomBytes = os.urandom) -> bytes:
    """The plaintext of one pseudonym's escrow (a batch of one)."""
    return identity_records(identity_key, address, [bind], random_bytes)[0]


def parse_identity_record(record: bytes, bind: bytes) -> Identity | None:
    """The identity a record names if it is well formed and its owner's batch signature
    covers ``bind``."""
    try:
        address, n = record[:32], record[32]
        alg = record[33:33 + n].decode()
        at = 33 + n
        k = int.from_bytes(record[at:at + 2], "big")
        pk = PublicKey(alg, record[at + 2:at + 2 + k])
        at += 2 + k
        m = int.from_bytes(record[at:at + 2], "big")
        sig = record[at + 2:at + 2 + m]
        at += 2 + m
        salt = record[at:at + SALT_BYTES]
        index = int.from_bytes(record[at + SALT_BYTES:at + SALT_BYTES + 4], "big")
        count = int.from_bytes(record[at + SALT_BYTES + 4:at + SALT_BYTES + 8], "big")
        rest = record[at + SALT_BYTES + 8:]
    except (IndexError, UnicodeDecodeError, CryptoError):
        return None
    if (len(address) != 32 or len(sig) != m or len(salt) != SALT_BYTES or len(rest) % 32
            or count > 1 << 20):
        return None
    path = [rest[i:i + 32] for i in range(0, len(rest), 32)]
    root = fold_path(owner_leaf(bind, address, salt), index, count, path)
    if root is None or not pk.verify(_owner_root_message(root, count, address), sig, CTX_BIND):
        return None
    return Identity(address, pk)


def make_escrow(identity_key: SigningKey, address: bytes, trustees: TrusteeSet, epoch: int,
                scope: str, pseudonym: PublicKey,
                random_bytes: RandomBytes = os.urandom, *,
                record: bytes | None = None) -> IdentityEscrow:
    """Escrow ``address`` (signed by ``identity_key``) for ``pseudonym`` (run by the owner).

    ``record``: the plaintext from ``identity_records`` when the owner signs a batch at once
    (default: a record of its own, one signature)."""
    bind = binding(trustees.community, epoch, scope, pseudonym)
    if record is None:
        record = identity_record(identity_key, address, bind, random_bytes)
    dek = random_bytes(32)
    nonce = random_bytes(_NONCE)
    record_ct = nonce + AESGCM(dek).encrypt(nonce, record, bind)
    k = trustees.threshold
    polys = [(c, random_coefficients(k, random_bytes)) for c in _dek_to_field(dek)]
    draft = IdentityEscrow(trustees.community, epoch, scope, pseudonym, record_ct, (), ())
    draft.__dict__["_binding"] = bind
    sealed, commitments = [], []
    for j, trustee in enumerate(trustees.trustees):
        share = b"".join(field_to_bytes(evaluate_polynomial(c, coeffs, j + 1))
                         for c, coeffs in polys)
        blind = random_bytes(BLIND_BYTES)
        sealed.append(seal(trustee.kem_public_key, share + blind, draft.share_aad(j)))
        commitments.append(share_commitment(j, share, blind))
    out = IdentityEscrow(trustees.community, epoch, scope, pseudonym, record_ct,
                         tuple(sealed), tuple(commitments))
    out.__dict__.update(_binding=bind, _record_hash=draft._record_hash)  # the same fields
    return out


def open_own_share(trustee: TrusteeKeys, position: int,
                   escrow: IdentityEscrow) -> tuple[bytes, bytes]:
    """A trustee's (share, blind), checked canonical and against its commitment; raises
    ``EndorsementRefused`` otherwise (it must not endorse what it could not release)."""
    try:
        plain = trustee.kem_key.open(escrow.sealed_shares[position], escrow.share_aad(position))
    except (CryptoError, IndexError) as exc:
        raise EndorsementRefused("escrow share does not open for this trustee") from exc
    share, blind = plain[:OPENING_SHARE_BYTES], plain[OPENING_SHARE_BYTES:]
    if len(share) != OPENING_SHARE_BYTES or len(blind) != BLIND_BYTES:
        raise EndorsementRefused("escrow share has the wrong length")
    try:
        for i in range(len(_CHUNKS)):
            field_from_bytes(share[i * SHARE_BYTES:(i + 1) * SHARE_BYTES])
    except CryptoError as exc:
        raise EndorsementRefused("escrow share is not canonical") from exc
    if not escrow.share_matches(position, share, blind):
        raise EndorsementRefused("escrow share does not match its commitment")
    return share, blind


def _try_open(escrow: IdentityEscrow, subset: Sequence[tuple[int, bytes]],
              threshold: int) -> Identity | None:
    try:
        values = []
        for i in range(len(_CHUNKS)):
            pts = [Share(j + 1, field_from_bytes(s[i * SHARE_BYTES:(i + 1) * SHARE_BYTES]))
                   for j, s in subset]
            values.append(reconstruct_secret(pts, threshold))
        dek = _field_to_dek(values)
        bind = binding(escrow.community, escrow.epoch, escrow.scope, escrow.pseudonym_key)
        ct = escrow.record_ciphertext
        record = AESGCM(dek).decrypt(ct[:_NONCE], ct[_NONCE:], bind)
    except (CryptoError, InvalidTag, ValueError):
        return None
    return parse_identity_record(record, bind)


@dataclass(frozen=True)
class EscrowOpening:
    """The outcome of opening with committed shares: the identity and the trustees whose
    shares opened it, or ``bogus`` when k committed shares open no well-formed record (the
    owner dealt an unopenable escrow; no trustee is at fault)."""

    identity: Identity | None
    used: tuple[int, ...]
    bogus: bool


def open_escrow(escrow: IdentityEscrow, shares: Mapping[int, bytes],
                threshold: int) -> EscrowOpening | None:
    """Open an escrow from released shares (trustee index -> share bytes), pure.

    Every share given must already match its commitment (``IdentityEscrow.share_matches``,
    checked when it is released). Tries k-subsets; None while fewer than k shares are in.
    """
    good = [(j, s) for j, s in sorted(shares.items()) if len(s) == OPENING_SHARE_BYTES]
    if len(good) < threshold:
        return None
    for subset in combinations(good, threshold):
        identity = _try_open(escrow, subset, threshold)
        if identity is not None:
            return EscrowOpening(identity, tuple(j for j, _ in subset), False)
    return EscrowOpening(None, (), True)
