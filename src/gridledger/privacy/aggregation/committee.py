"""The aggregation committee and the per-epoch key establishment (FIPS 203 ML-KEM-768).

A feeder has a committee of ``m`` aggregators with threshold ``t`` for an epoch. Each
contributor (a meter, or an aggregator dealing DP noise) encapsulates once per epoch to each
aggregator's ML-KEM-768 key and derives a 256-bit AES key with HKDF-SHA3-256; the ``m``
ciphertexts and key commitments are signed with the contributor's ML-DSA device key
(FIPS 204), so only registered meters contribute. Doing ML-KEM once per epoch moves ~40 us
x m per meter out of every 15-minute round (``benchmarks/privacy.md``) and keeps
post-quantum confidentiality (AES-256: Grover leaves 128 bits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.kem import KEM_CT_BYTES, KemKey
from gridledger.crypto.shamir import unique_agreement
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.errors import CryptoError
from gridledger.privacy.errors import PrivacyError

# FIPS 204 section 5.2 context string: a grant signature can never pass for anything else.
CTX_GRANT = b"gl/secagg/grant/v1"
NOISE_PREFIX = "noise/"
"""Contributor-id prefix of aggregators' DP noise submissions."""
MAX_AGGREGATORS = 32
DEFAULT_MIN_CONTRIBUTORS = 5
"""Fewest meters a published total may cover (the anonymity set of one reading)."""


@dataclass(frozen=True)
class AggregatorInfo:
    """An aggregator's public identity: id, ML-DSA verification key, ML-KEM-768 public key."""

    aggregator_id: str
    sig_key: PublicKey
    kem_public_key: bytes


@dataclass(frozen=True)
class Committee:
    """The ``m`` aggregators of one feeder for one epoch, the threshold ``t`` and the rules
    every member and every combiner applies.

    * ``threshold`` (t): any ``t`` shares give a reading, any ``t - 1`` nothing (t >= 2:
      with t = 1 every aggregator would see every reading in the clear);
    * ``min_contributors``: no aggregator signs, and no combiner publishes, a total over
      fewer meters (noise dealers do not count): an honest dropout down to one meter
      must not publish that meter's reading;
    * ``fault_bound`` (c, default ``t - 1``): colluding or faulty aggregators a total
      must withstand. A total is accepted only if ``min_agree = max(t + c, ceil((n + t)/2))``
      partial sums agree on it, so every accepted total agrees with ``t`` honest ones
      (``crypto.shamir.decode_shares``). With m = 5, t = 3 no liar is tolerated (a lie
      fails the round); m = 7, t = 3 locates up to two.

    Aggregator ``j`` (0-based position) holds the shares at x = j + 1.
    """

    feeder_id: str
    epoch: int
    threshold: int
    aggregators: tuple[AggregatorInfo, ...]
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS
    fault_bound: int | None = None

    def __post_init__(self) -> None:
        m = len(self.aggregators)
        if not 2 <= self.threshold <= m <= MAX_AGGREGATORS:
            raise PrivacyError(f"committee needs 2 <= threshold <= aggregators <= "
                               f"{MAX_AGGREGATORS}")
        if len({a.aggregator_id for a in self.aggregators}) != m:
            raise PrivacyError("aggregator ids must be distinct")
        if self.min_contributors < 2:
            raise PrivacyError("min_contributors must be at least 2")
        if not 0 <= self.faults < self.threshold:
            raise PrivacyError("fault_bound must lie in [0, threshold - 1]")
        if self.min_agree(m) > m:
            raise PrivacyError(f"{m} aggregators cannot reach the {self.min_agree(m)} "
                               f"agreeing partial sums that t = {self.threshold} with "
                               f"{self.faults} faults needs")

    @property
    def size(self) -> int:
        """Number of aggregators ``m``."""
        return len(self.aggregators)

    @property
    def faults(self) -> int:
        """The fault bound ``c`` (``t - 1`` unless set)."""
        return self.threshold - 1 if self.fault_bound is None else self.fault_bound

    def min_agree(self, n: int) -> int:
        """Shares that must agree on a polynomial out of ``n`` present for it to be trusted."""
        return max(self.threshold + self.faults, unique_agreement(n, self.threshold))

    @cached_property
    def _digest(self) -> bytes:
        parts = [self.feeder_id.encode(), self.epoch.to_bytes(8, "big"),
                 self.threshold.to_bytes(2, "big"), self.min_contributors.to_bytes(4, "big"),
                 self.faults.to_bytes(2, "big")]
        for a in self.aggregators:
            parts += [a.aggregator_id.encode(), a.sig_key.alg.encode(), a.sig_key.raw,
                      a.kem_public_key]
        return tagged_hash("gl/secagg/committee", *parts)

    def digest(self) -> bytes:
        """Hash binding feeder, epoch, rules and every aggregator key (computed once)."""
        return self._digest

    def position(self, aggregator_id: str) -> int:
        """0-based position of an aggregator; raises ``PrivacyError`` if not a member."""
        for j, a in enumerate(self.aggregators):
            if a.aggregator_id == aggregator_id:
                return j
        raise PrivacyError(f"{aggregator_id!r} is not in the committee of {self.feeder_id}")


@dataclass(frozen=True)
class AggregatorKeys:
    """An aggregator's private keys (held by the aggregator node only)."""

    aggregator_id: str
    signing_key: SigningKey
    kem_key: KemKey

    @classmethod
    def generate(cls, aggregator_id: str, alg: str = "ml-dsa-65") -> AggregatorKeys:
        """Fresh keys from the OS RNG."""
        return cls(aggregator_id, SigningKey.generate(alg), KemKey.generate())

    def info(self) -> AggregatorInfo:
        """The public part, for the committee."""
        return AggregatorInfo(self.aggregator_id, self.signing_key.public_key,
                              self.kem_key.public_key)


@dataclass(frozen=True)
class EpochGrant:
    """A contributor's ML-KEM ciphertexts for each aggregator, signed with its device key."""

    contributor_id: str
    committee_digest: bytes
    kem_ciphertexts: tuple[bytes, ...]
    key_commitments: tuple[bytes, ...]
    signer: PublicKey | None
    signature: bytes

    def signed_message(self) -> bytes:
        """What the device key signs."""
        return tagged_hash("gl/secagg/grant", self.contributor_id.encode(),
                           self.committee_digest, *self.kem_ciphertexts,
                           *self.key_commitments)


@dataclass(frozen=True)
class ContributorSession:
    """Contributor-side secrets for one epoch: one AES-256 key per aggregator."""

    contributor_id: str
    committee: Committee
    keys: tuple[bytes, ...] = field(repr=False)


def _derive_key(shared: bytes, kem_ct: bytes, committee: Committee, contributor_id: str,
                position: int) -> bytes:
    info = tagged_hash("gl/secagg/key", committee.digest(), contributor_id.encode(),
                       position.to_bytes(2, "big"))
    return HKDF(algorithm=hashes.SHA3_256(), length=32, salt=kem_ct[:32],
                info=info).derive(shared)


def commit_key(key: bytes) -> bytes:
    """Hiding, binding commitment to a uniform 256-bit key (lets a revealed key be checked)."""
    return tagged_hash("gl/secagg/key-commitment", key)


def establish_session(contributor_id: str, committee: Committee,
                      device_key: SigningKey | None) -> tuple[ContributorSession, EpochGrant]:
    """Run the contributor's epoch setup: one ML-KEM encapsulation per aggregator.

    ``device_key`` is the meter's registered ML-DSA key; an aggregator's noise session
    (``noise/<aggregator id>``) is signed with that aggregator's committee key instead.
    ``None`` gives an unsigned grant, which ``accept_grants`` rejects (tests use it).
    Returns the secret session and the public grant to post. Encapsulation randomness
    comes from OpenSSL's RNG, at the meter, outside the ledger.
    """
    keys, cts = [], []
    for j, agg in enumerate(committee.aggregators):
        pub = mlkem.MLKEM768PublicKey.from_public_bytes(agg.kem_public_key)
        shared, ct = pub.encapsulate()
        keys.append(_derive_key(shared, ct, committee, contributor_id, j))
        cts.append(ct)
    grant = EpochGrant(contributor_id, committee.digest(), tuple(cts),
                       tuple(commit_key(k) for k in keys),
                       device_key.public_key if device_key else None, b"")
    if device_key is not None:
        grant = replace(grant, signature=device_key.sign(grant.signed_message(), CTX_GRANT))
    return ContributorSession(contributor_id, committee, tuple(keys)), grant


@dataclass(frozen=True)
class AggregatorSession:
    """Aggregator-side epoch state: the AES key shared with each accepted contributor."""

    keys: AggregatorKeys
    committee: Committee
    position: int
    contributor_keys: Mapping[str, bytes] = field(repr=False)
    rejected: tuple[tuple[str, str], ...] = ()


def accept_grants(keys: AggregatorKeys, committee: Committee, grants: Sequence[EpochGrant],
                  device_keys: Mapping[str, PublicKey]) -> AggregatorSession:
    """Decapsulate this aggregator's ciphertext from each grant.

    A grant is accepted if it is signed by the contributor's registered device key
    (``device_keys``, from the meter registry), or is a ``noise/<aggregator id>`` session
    signed by that committee member. Rejected grants are listed with the reason.
    """
    j = committee.position(keys.aggregator_id)
    digest = committee.digest()
    member_keys = {a.aggregator_id: a.sig_key for a in committee.aggregators}
    accepted: dict[str, bytes] = {}
    rejected: list[tuple[str, str]] = []
    for g in grants:
        cid = g.contributor_id
        if (g.committee_digest != digest or len(g.kem_ciphertexts) != committee.size
                or len(g.key_commitments) != committee.size):
            rejected.append((cid, "wrong-committee"))
            continue
        # Noise sessions are signed by their aggregator's committee key: nobody else can
        # inject a "noise" term into the sum.
        reg = (member_keys.get(cid[len(NOISE_PREFIX):]) if cid.startswith(NOISE_PREFIX)
               else device_keys.get(cid))
        if reg is None or not verify_grant(g, reg):
            rejected.append((cid, "bad-grant-signature"))
            continue
        ct = g.kem_ciphertexts[j]
        if len(ct) != KEM_CT_BYTES:
            rejected.append((cid, "bad-kem-ciphertext"))
            continue
        shared = keys.kem_key._key.decapsulate(ct)  # type: ignore[attr-defined]
        key = _derive_key(shared, ct, committee, cid, j)
        if commit_key(key) != g.key_commitments[j]:
            # ML-KEM's implicit rejection turns a garbled ciphertext into a random key:
            # the commitment catches it now instead of as undecryptable shares later.
            rejected.append((cid, "bad-key-commitment"))
            continue
        accepted[cid] = key
    return AggregatorSession(keys, committee, j, accepted, tuple(rejected))


def verify_grant(grant: EpochGrant, device_key: PublicKey) -> bool:
    """Whether ``grant`` is signed by ``device_key`` (ledger admission of a grant)."""
    if grant.signer != device_key:
        return False
    try:
        return device_key.verify(grant.signed_message(), grant.signature, CTX_GRANT)
    except CryptoError:
        return False
