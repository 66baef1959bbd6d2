"""ML-DSA signatures (FIPS 204) behind an algorithm-tagged key type.

Algorithm ids are strings on the wire (``"ml-dsa-65"``); a key's address is
``SHA3-256(alg || public key)``. Signing uses the FIPS 204 context string (§5.2) for domain
separation: a transaction signature can never be replayed as a vote or a meter reading.
Classical algorithms are known by name only so they can be *rejected* with a clear rule.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import ClassicalKey, CryptoBackendError, CryptoError, UnknownAlgorithm
from gridledger.memo import memoize

SigAlg = Literal["ml-dsa-44", "ml-dsa-65", "ml-dsa-87"]
PQ_SIG_ALGS: Final[tuple[str, ...]] = ("ml-dsa-44", "ml-dsa-65", "ml-dsa-87")
# Known quantum-breakable algorithms: recognised so the error says "classical-key", not
# "unknown algorithm" (docs/threat-model.md row Q).
CLASSICAL_SIG_ALGS: Final[frozenset[str]] = frozenset(
    {"ed25519", "ed448", "ecdsa-p256", "ecdsa-secp256k1", "rsa-pss", "rsa-pkcs1", "dsa"}
)
# FIPS 204 Table 2 sizes: (public key, signature)
_SIZES: Final[dict[str, tuple[int, int]]] = {
    "ml-dsa-44": (1312, 2420),
    "ml-dsa-65": (1952, 3309),
    "ml-dsa-87": (2592, 4627),
}


def _classes(alg: str) -> tuple[type, type]:
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa
    except ImportError as exc:  # pragma: no cover - depends on the installed build
        raise CryptoBackendError(
            "the installed 'cryptography' has no ML-DSA support: install cryptography>=46 "
            "built against OpenSSL >= 3.5 (the PyPI wheels are)"
        ) from exc
    table = {
        "ml-dsa-44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
        "ml-dsa-65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
        "ml-dsa-87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
    }
    return table[alg]


def check_alg(alg: str) -> None:
    """Raise ``ClassicalKey`` for quantum-breakable algorithms, ``UnknownAlgorithm`` (a
    ``CryptoError`` and a named transaction rejection, ``unknown-algorithm``) for any other
    name, so an unknown name inside a transaction can never stop block execution."""
    if alg in PQ_SIG_ALGS:
        return
    if alg in CLASSICAL_SIG_ALGS:
        raise ClassicalKey(f"algorithm {alg!r} is quantum-breakable; use one of {PQ_SIG_ALGS}")
    raise UnknownAlgorithm(f"unknown signature algorithm {alg[:32]!r}")


def check_backend() -> None:
    """Fail with a clear message unless ML-DSA and ML-KEM work in this ``cryptography``."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

        key = mldsa.MLDSA44PrivateKey.generate()
        key.public_key().verify(key.sign(b"probe"), b"probe")
        kem = mlkem.MLKEM768PrivateKey.generate()
        secret, ct = kem.public_key().encapsulate()
        if kem.decapsulate(ct) != secret:
            raise CryptoBackendError("ML-KEM-768 round trip failed")
    except (ImportError, AttributeError) as exc:
        raise CryptoBackendError(
            "the installed 'cryptography' lacks ML-DSA/ML-KEM (needs >= 46 built with "
            f"OpenSSL >= 3.5): {exc}"
        ) from exc
    except Exception as exc:
        if isinstance(exc, CryptoBackendError):
            raise
        raise CryptoBackendError(f"ML-DSA/ML-KEM self-test failed: {exc}") from exc


PRIVATE_KEYS_CACHED = 1024
"""Expanded private keys kept in memory (``_load_private``): ~30 MiB at most."""


@memoize(4096)  # aged by block time (gridledger.memo)
def _load_public(alg: str, raw: bytes) -> object:
    _, pub_cls = _classes(alg)
    return pub_cls.from_public_bytes(raw)  # type: ignore[attr-defined]


def verify_signature(alg: str, public_key: bytes, message: bytes, signature: bytes,
                     context: bytes = b"") -> bool:
    """Return whether ``signature`` is valid for ``message`` under ``public_key``.

    Raises ``ClassicalKey`` for a quantum-breakable algorithm; any malformed key or signature
    simply fails to verify. Public key objects are cached: parsing costs about as much as a
    verification.
    """
    check_alg(alg)
    pk_len, sig_len = _SIZES[alg]
    if len(public_key) != pk_len or len(signature) != sig_len:
        return False
    if _tally is not None:
        _tally.add(alg, signature)
    try:
        pub = _load_public(alg, bytes(public_key))
        pub.verify(signature, message, context)  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


class VerificationTally:
    """The distinct signatures ``verify_signature`` was asked to check while the tally was
    active, by algorithm (``gridledger bench scale`` counts what a chain really carries, to
    price its cryptographic floor per algorithm; a signature checked twice counts once)."""

    def __init__(self) -> None:
        self._seen: dict[str, set[bytes]] = {}

    def add(self, alg: str, signature: bytes) -> None:
        # a 16-byte digest, not the 2.4-4.6 kB signature: a 1,000-member day checks ~10^5
        self._seen.setdefault(alg, set()).add(hashlib.blake2b(signature, digest_size=16).digest())

    def counts(self) -> dict[str, int]:
        """``{algorithm: distinct signatures}``, algorithms in name order."""
        return {alg: len(self._seen[alg]) for alg in sorted(self._seen)}


_tally: VerificationTally | None = None


@contextmanager
def tally_verifications() -> Iterator[VerificationTally]:
    """Count, in this process, the distinct signatures checked inside the ``with`` block.
    Not re-entrant; verification results are unchanged."""
    global _tally
    if _tally is not None:
        raise RuntimeError("a verification tally is already active")
    _tally = VerificationTally()
    try:
        yield _tally
    finally:
        _tally = None


@memoize(PRIVATE_KEYS_CACHED)  # aged by block time (gridledger.memo)
def _load_private(alg: str, seed: bytes) -> object:
    # A PyCA (OpenSSL) ML-DSA private key object holds ~30 KiB of native memory (the
    # expanded key); its seed is 32 bytes. Kept per ``SigningKey``, a privacy-mode day of
    # 1,000 members (96,000 pseudonym keys) held ~3 GB of them, so the objects live in this
    # bounded cache instead: re-expanding a seed costs about a quarter of a signature.
    priv_cls, _ = _classes(alg)
    return priv_cls.from_seed_bytes(seed)  # type: ignore[attr-defined]


@memoize(8192)  # aged by block time (gridledger.memo)
def address_of(alg: str, public_key: bytes) -> bytes:
    """The 32-byte address of an algorithm-tagged public key.

    The cache keeps the public keys it was asked about (1.3-2 KB each): 65,536 of them
    pinned ~98 MiB at 1,000 members in privacy mode, where most keys are a slot's
    pseudonyms, named a few times and never again (issue 17); a miss is one SHA3 hash."""
    return tagged_hash("gl/address", alg.encode(), public_key)


@dataclass(frozen=True)
class PublicKey:
    """An algorithm-tagged public key."""

    alg: str
    raw: bytes

    def __post_init__(self) -> None:
        check_alg(self.alg)
        if len(self.raw) != _SIZES[self.alg][0]:
            raise CryptoError(f"{self.alg} public key must be {_SIZES[self.alg][0]} bytes")

    @property
    def address(self) -> bytes:
        return address_of(self.alg, self.raw)

    def verify(self, message: bytes, signature: bytes, context: bytes = b"") -> bool:
        return verify_signature(self.alg, self.raw, message, signature, context)


@dataclass(frozen=True)
class SigningKey:
    """An ML-DSA private key, stored as its 32-byte FIPS 204 seed."""

    alg: str
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_alg(self.alg)
        if len(self.seed) != 32:
            raise CryptoError("ML-DSA seed must be 32 bytes")

    @classmethod
    def generate(cls, alg: str = "ml-dsa-65") -> SigningKey:
        import os

        return cls(alg, os.urandom(32))

    @classmethod
    def from_seed(cls, alg: str, seed: bytes) -> SigningKey:
        """Deterministic key from a seed (tests and simulations use derived seeds)."""
        return cls(alg, seed)

    def __reduce__(self) -> tuple[Callable[..., SigningKey], tuple[str, bytes, bytes | None]]:
        # the seed is the key (a key goes to a worker process, e.g. the demo's signing
        # pool). The public key travels along once derived: a pseudonym issued in a worker
        # (a key generation from the seed each) was derived again where it arrived (~0.1 ms
        # an ML-DSA key, 5,760 a privacy day on the main core; issue 19)
        pk = self.__dict__.get("public_key")
        return _signing_key, (self.alg, self.seed, None if pk is None else pk.raw)

    @property
    def _key(self) -> object:
        return _load_private(self.alg, self.seed)

    @functools.cached_property
    def public_key(self) -> PublicKey:
        return PublicKey(self.alg, self._key.public_key().public_bytes_raw())  # type: ignore[attr-defined]

    @functools.cached_property
    def address(self) -> bytes:
        return self.public_key.address

    @classmethod
    def known(cls, alg: str, seed: bytes, address: bytes) -> SigningKey:
        """The key of ``seed`` whose ``address`` its holder derived before (kept beside the
        seed): naming it needs no key expansion and no public key in memory. A privacy day
        at 1,000 members keeps 192,000 pseudonym and reading keys between their uses; each
        one's public key is ~1.3 KB (issue 17)."""
        key = cls(alg, seed)
        key.__dict__["address"] = address
        return key

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        """ML-DSA signature over ``message`` with FIPS 204 context string ``context``."""
        return self._key.sign(message, context)  # type: ignore[attr-defined,no-any-return]


def _signing_key(alg: str, seed: bytes, public_raw: bytes | None = None) -> SigningKey:
    """``SigningKey.__reduce__``'s constructor: the key, with its public key when the pickle
    carried it (derived from this seed where it was made: pickles are this package's own,
    between its processes)."""
    key = SigningKey(alg, seed)
    if public_raw is not None:
        key.__dict__["public_key"] = PublicKey(alg, public_raw)
    return key
