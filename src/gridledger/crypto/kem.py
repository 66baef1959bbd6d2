"""ML-KEM-768 sealing: KEM (FIPS 203) + HKDF-SHA3-256 + AES-256-GCM.

``seal(pk, plaintext, aad)`` -> ``kem_ct || nonce || aead_ct``. A fresh encapsulation per
message, so the nonce never repeats under one key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gridledger.errors import CryptoError
from gridledger.memo import memoize

KEM_ALG = "ml-kem-768"
KEM_CT_BYTES = 1088
KEM_PK_BYTES = 1184
_NONCE = 12
_INFO = b"gridledger/seal/v1"


def _kdf(shared: bytes, kem_ct: bytes) -> bytes:
    # Binding the KEM ciphertext into the key derivation makes the construction
    # robust even if the KEM's implicit rejection were weakened.
    return HKDF(algorithm=hashes.SHA3_256(), length=32, salt=kem_ct[:32], info=_INFO).derive(shared)


def seal(public_key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` to an ML-KEM-768 public key; ``aad`` is authenticated, not sent."""
    if len(public_key) != KEM_PK_BYTES:
        raise CryptoError(f"ML-KEM-768 public key must be {KEM_PK_BYTES} bytes")
    shared: bytes
    kem_ct: bytes
    shared, kem_ct = _public_key(bytes(public_key)).encapsulate()  # type: ignore[attr-defined]
    nonce = os.urandom(_NONCE)
    return kem_ct + nonce + AESGCM(_kdf(shared, kem_ct)).encrypt(nonce, plaintext, aad)


@memoize(64)  # aged by block time (gridledger.memo)
def _public_key(raw: bytes) -> object:
    """The parsed ML-KEM-768 public key of ``raw``. Parsing expands the key (its matrix from
    the seed, FIPS 203 K-PKE.Encrypt): about as much work as the encapsulation itself, and a
    run seals to a few keys only (the trustees', the DSO's): each household's escrows seal
    three shares a pseudonym, every meter a reading a slot (issue 17)."""
    from cryptography.hazmat.primitives.asymmetric import mlkem

    return mlkem.MLKEM768PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class KemKey:
    """An ML-KEM-768 private key kept as its 64-byte FIPS 203 seed."""

    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> KemKey:
        return cls(os.urandom(64))

    def __reduce__(self) -> tuple[type[KemKey], tuple[bytes]]:
        # the seed is the key: the PyCA object ``_key`` caches does not pickle
        return KemKey, (self.seed,)

    @cached_property
    def _key(self) -> object:
        from cryptography.hazmat.primitives.asymmetric import mlkem

        return mlkem.MLKEM768PrivateKey.from_seed_bytes(self.seed)

    @cached_property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes_raw()  # type: ignore[attr-defined,no-any-return]

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        """Decrypt a ``seal`` output; raises ``CryptoError`` if anything was altered."""
        if len(sealed) < KEM_CT_BYTES + _NONCE + 16:
            raise CryptoError("sealed payload too short")
        kem_ct = sealed[:KEM_CT_BYTES]
        nonce, body = sealed[KEM_CT_BYTES:KEM_CT_BYTES + _NONCE], sealed[KEM_CT_BYTES + _NONCE:]
        try:
            shared = self._key.decapsulate(kem_ct)  # type: ignore[attr-defined]
            return AESGCM(_kdf(shared, kem_ct)).decrypt(nonce, body, aad)
        except Exception as exc:
            raise CryptoError("sealed payload failed authentication") from exc
