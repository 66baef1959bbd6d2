"""The community's trustees: k of n certify pseudonyms and hold identity-escrow shares."""

from __future__ import annotations

from dataclasses import dataclass

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.privacy.errors import PrivacyError


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

    def position(self, trustee_id: str) -> int:
        """0-based position of a trustee; raises ``PrivacyError`` if not a member."""
        for j, t in enumerate(self.trustees):
            if t.trustee_id == trustee_id:
                return j
        raise PrivacyError(f"{trustee_id!r} is not a trustee of {self.community}")


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


@dataclass(frozen=True)
class Endorsement:
    """One trustee's ML-DSA signature over a certificate body or a batch root."""

    trustee_index: int
    signature: bytes
