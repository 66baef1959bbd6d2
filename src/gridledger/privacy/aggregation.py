"""Dropout-tolerant, post-quantum secure aggregation of feeder readings.

Goal (THREATS.md rows 3, 7, 8): the feeder total of households' slot readings is computed
so that no single node (validator, DSO, aggregator) learns any household's reading, no
single aggregator is needed, and a wrong result from an aggregator is detected and
attributed to it.

Construction (Shamir 1979 secret sharing + per-epoch ML-KEM key establishment; the
dropout handling follows the "only survivors are summed" rule of Bonawitz et al. CCS 2017,
but with threshold *shares* instead of pairwise masks, so a dropped meter needs no recovery
round; the share-validity check is in the spirit of Prio, Corrigan-Gibbs & Boneh NSDI 2017):

1. **Epoch setup** (once per epoch, e.g. a day). A feeder has a committee of ``m``
   aggregators with threshold ``t``. Each contributor (meter) encapsulates to each
   aggregator's ML-KEM-768 key (FIPS 203) and derives a 256-bit AES key with
   HKDF-SHA3-256; the ``m`` KEM ciphertexts are signed with the meter's ML-DSA device key
   (FIPS 204) so only registered meters can contribute. Doing ML-KEM once per epoch rather
   than per round moves ~40 us x m per meter out of every 15-minute round (measured in
   ``benchmarks/privacy.md``) while keeping post-quantum confidentiality: the AES-256 keys
   are as strong as ML-KEM-768 against a quantum adversary (Grover leaves 128 bits).
2. **Round** (``seal_reading``). The meter clips its reading, Shamir-shares it with a fresh
   degree ``t-1`` polynomial, and shares an independent uniform *mask* ``w`` the same way;
   share ``j`` of both goes to aggregator ``j`` under AES-256-GCM with a random nonce and
   the round (feeder, epoch, slot, meter, j) as associated data, so a share cannot be
   replayed into another round or redirected. The ``m`` ciphertexts travel in *one*
   submission (posted to the ledger), so every aggregator sees the same set of meters.
3. **Share check** (``check_shares``). For every submission aggregator ``j`` publishes
   ``v_j = x_j + r * w_j`` where ``r`` is a Fiat-Shamir challenge hashed from the whole
   round transcript. If the meter's shares lie on degree-``t-1`` polynomials, the ``v_j``
   do too; otherwise they do not, except with probability 1/p (p = 2^127 - 1). ``v`` opens
   to ``x + r w``, uniformly random because ``w`` is, so it reveals nothing about ``x``.
   This stops a malicious meter from sending inconsistent shares that would make an
   honest aggregator's partial sum look wrong.
4. **Inclusion** (``select_included``, pure): a meter is included iff all usable checks
   have its ``v`` and they lie on one polynomial. Meters that dropped out simply have no
   submission; they are not summed and need no recovery.
5. **Partial sums** (``sum_shares``): aggregator ``j`` sums its ``x`` shares of the
   included meters and signs (ML-DSA) the value together with the digest of the inclusion.
6. **Combination** (``combine_partials``, pure): anyone takes the signed partials, decodes
   the total from every ``t``-subset (Reed-Solomon unique decoding when ``m >= t + 2e``),
   rejects and *names* each aggregator whose partial is off the polynomial, and compares
   the total with the feeder head meter within a tolerance for losses. With only ``t + 1``
   partials and one wrong, the head meter picks the consistent subset.

Privacy: any ``t - 1`` aggregators together see only uniformly random shares; the public
sees the ``v``'s (one-time padded) and partial sums, which reveal the total only. With
optional distributed DP noise (``seal_noise``) each aggregator also deals a secret
discrete-Laplace draw, so the reconstructed total is already epsilon-DP.

Not covered here: a meter can still lie about its own reading (that is false data
injection, THREATS.md row 1, caught by the head-meter balance and state estimation), and
range proofs on shares (Prio's SNIPs) are not implemented: the clip is applied by honest
meters, which is what the DP guarantee for honest households needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from collections import Counter
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.kem import KEM_CT_BYTES, KemKey
from gridledger.crypto.shamir import (
    PRIME,
    SHARE_BYTES,
    InconsistentShares,
    RandomBytes,
    Share,
    candidate_secrets,
    decode_shares,
    decode_signed,
    encode_signed,
    evaluate_polynomial,
    field_to_bytes,
    is_field_element,
)
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.errors import CryptoError
from gridledger.privacy.dp import ClipBound, DpParams, clip_reading, sample_noise
from gridledger.privacy.errors import AggregationFailed, PrivacyError

# FIPS 204 §5.2 context strings: these signatures can never be replayed as anything else.
CTX_GRANT = b"gl/secagg/grant/v1"
CTX_CHECK = b"gl/secagg/check/v1"
CTX_PARTIAL = b"gl/secagg/partial/v1"
_NONCE = 12
_TAG = 16
NOISE_PREFIX = "noise/"
"""Contributor-id prefix of aggregators' DP noise submissions."""


# --------------------------------------------------------------------------- committee
@dataclass(frozen=True)
class AggregatorInfo:
    """An aggregator's public identity: id, ML-DSA verification key, ML-KEM-768 public key."""

    aggregator_id: str
    sig_key: PublicKey
    kem_public_key: bytes


@dataclass(frozen=True)
class Committee:
    """The ``m`` aggregators of one feeder for one epoch, and the threshold ``t``.

    Aggregator ``j`` (0-based position) holds the shares at x = j + 1.
    """

    feeder_id: str
    epoch: int
    threshold: int
    aggregators: tuple[AggregatorInfo, ...]

    def __post_init__(self) -> None:
        m = len(self.aggregators)
        if not 2 <= self.threshold <= m <= 32:
            # t >= 2: with t = 1 every aggregator would see every reading in the clear.
            raise PrivacyError("committee needs 2 <= threshold <= aggregators <= 32")
        if len({a.aggregator_id for a in self.aggregators}) != m:
            raise PrivacyError("aggregator ids must be distinct")

    @property
    def size(self) -> int:
        """Number of aggregators ``m``."""
        return len(self.aggregators)

    def digest(self) -> bytes:
        """Hash binding feeder, epoch, threshold and every aggregator key."""
        parts = [self.feeder_id.encode(), self.epoch.to_bytes(8, "big"),
                 self.threshold.to_bytes(2, "big")]
        for a in self.aggregators:
            parts += [a.aggregator_id.encode(), a.sig_key.alg.encode(), a.sig_key.raw,
                      a.kem_public_key]
        return tagged_hash("gl/secagg/committee", *parts)


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


def _position(committee: Committee, aggregator_id: str) -> int:
    for j, a in enumerate(committee.aggregators):
        if a.aggregator_id == aggregator_id:
            return j
    raise PrivacyError(f"{aggregator_id!r} is not in the committee of {committee.feeder_id}")


# --------------------------------------------------------------------------- epoch setup
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
    j = _position(committee, keys.aggregator_id)
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
        ok = (reg is not None and g.signer == reg
              and reg.verify(g.signed_message(), g.signature, CTX_GRANT))
        if not ok:
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


# --------------------------------------------------------------------------- round
@dataclass(frozen=True)
class MeterSubmission:
    """One contributor's sealed shares for one slot: ciphertext ``j`` is for aggregator ``j``."""

    contributor_id: str
    feeder_id: str
    epoch: int
    slot: int
    sealed_shares: tuple[bytes, ...]

    def digest(self) -> bytes:
        """Hash of the whole submission (the meter's signed reading tx carries it)."""
        return tagged_hash("gl/secagg/submission", self.contributor_id.encode(),
                           self.feeder_id.encode(), self.epoch.to_bytes(8, "big"),
                           self.slot.to_bytes(8, "big"), *self.sealed_shares)


def _aad(feeder_id: str, epoch: int, slot: int, contributor_id: str, position: int) -> bytes:
    # Binds the ciphertext to its round and recipient: no replay across slots, no redirection.
    return f"gl/secagg/share/v1|{feeder_id}|{epoch}|{slot}|{contributor_id}|{position}".encode()


def _seal_value(session: ContributorSession, slot: int, value: int,
                random_bytes: RandomBytes) -> MeterSubmission:
    c = session.committee
    t, m = c.threshold, c.size
    # One call to the RNG per submission: 2(t-1) coefficients + m nonces.
    need = 2 * (t - 1) * SHARE_BYTES + m * _NONCE
    pool = random_bytes(need)
    coeff: list[int] = []
    for i in range(2 * (t - 1)):
        v = int.from_bytes(pool[i * SHARE_BYTES:(i + 1) * SHARE_BYTES], "big") & PRIME
        if v == PRIME:  # probability 2^-127; redraw to stay exactly uniform
            v = int.from_bytes(random_bytes(SHARE_BYTES), "big") & PRIME
            while v == PRIME:
                v = int.from_bytes(random_bytes(SHARE_BYTES), "big") & PRIME
        coeff.append(v)
    x_coeffs, w_coeffs = coeff[:t - 1], coeff[t - 1:]
    # The mask's constant term: uniform, so x + r*w is a one-time pad on x.
    w_secret = int.from_bytes(random_bytes(SHARE_BYTES), "big") & PRIME
    while w_secret == PRIME:
        w_secret = int.from_bytes(random_bytes(SHARE_BYTES), "big") & PRIME
    secret = encode_signed(value)
    nonce_base = 2 * (t - 1) * SHARE_BYTES
    sealed = []
    for j in range(m):
        x = j + 1
        plain = (field_to_bytes(evaluate_polynomial(secret, x_coeffs, x))
                 + field_to_bytes(evaluate_polynomial(w_secret, w_coeffs, x)))
        nonce = pool[nonce_base + j * _NONCE:nonce_base + (j + 1) * _NONCE]
        aad = _aad(c.feeder_id, c.epoch, slot, session.contributor_id, j)
        sealed.append(nonce + AESGCM(session.keys[j]).encrypt(nonce, plain, aad))
    return MeterSubmission(session.contributor_id, c.feeder_id, c.epoch, slot, tuple(sealed))


def seal_reading(session: ContributorSession, slot: int, reading_wh: int, clip: ClipBound,
                 random_bytes: RandomBytes = os.urandom) -> MeterSubmission:
    """The meter's round work: clip, share, seal one share per aggregator.

    ``random_bytes`` is the meter's RNG (``os.urandom``; injected for reproducible tests).
    """
    if session.contributor_id.startswith(NOISE_PREFIX):
        raise PrivacyError("noise sessions seal noise, not readings")
    return _seal_value(session, slot, clip_reading(reading_wh, clip), random_bytes)


def seal_noise(session: ContributorSession, slot: int, params: DpParams,
               random_bytes: RandomBytes = os.urandom) -> MeterSubmission:
    """An aggregator's secret discrete-Laplace draw, shared like a reading.

    Every aggregator that deals one adds full-scale noise, so the total stays epsilon-DP
    even if all other noise dealers collude and subtract theirs (variance grows with the
    number of dealers; see docs/privacy.md). A dealer could bias the total with a huge
    "draw"; the head-meter check with tolerance ``DpParams.noise_bound_wh`` bounds that.
    """
    if not session.contributor_id.startswith(NOISE_PREFIX):
        raise PrivacyError("noise is dealt from a noise/<aggregator id> session")
    return _seal_value(session, slot, sample_noise(params, random_bytes), random_bytes)


def round_transcript(feeder_id: str, epoch: int, slot: int,
                     submissions: Sequence[MeterSubmission]) -> bytes:
    """Hash of the round's submission set (order-independent)."""
    digests = sorted(s.digest() for s in submissions)
    return tagged_hash("gl/secagg/transcript", feeder_id.encode(), epoch.to_bytes(8, "big"),
                       slot.to_bytes(8, "big"), *digests)


def _challenge(transcript: bytes, contributor_id: str) -> int:
    # Fiat-Shamir: r is fixed only after every submission is, so a meter cannot choose its
    # share errors to cancel (success probability 1/p per attempt).
    r = int.from_bytes(tagged_hash("gl/secagg/challenge", transcript,
                                   contributor_id.encode()), "big") % PRIME
    return r or 1


@dataclass(frozen=True)
class ShareCheck:
    """Aggregator ``position``'s signed check values ``v = x + r w`` (None: undecryptable)."""

    feeder_id: str
    epoch: int
    slot: int
    position: int
    transcript: bytes
    values: tuple[tuple[str, int | None], ...]
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the aggregator signs."""
        parts = [self.feeder_id.encode(), self.epoch.to_bytes(8, "big"),
                 self.slot.to_bytes(8, "big"), self.position.to_bytes(2, "big"), self.transcript]
        for cid, v in self.values:
            parts += [cid.encode(), b"" if v is None else field_to_bytes(v)]
        return tagged_hash("gl/secagg/check", *parts)


@dataclass(frozen=True)
class AggregatorRound:
    """Aggregator-side secret round state: its decrypted ``x`` shares per contributor."""

    session: AggregatorSession
    slot: int
    transcript: bytes
    x_shares: Mapping[str, int] = field(repr=False)


def check_shares(session: AggregatorSession, slot: int,
                 submissions: Sequence[MeterSubmission]) -> tuple[ShareCheck, AggregatorRound]:
    """Decrypt this aggregator's share of every submission; publish signed check values.

    Submissions from contributors without an accepted grant, for another round, or that
    fail AES-GCM authentication get ``None`` (which excludes them). Returns the public
    check and the secret round state for ``sum_shares``.
    """
    c, j = session.committee, session.position
    transcript = round_transcript(c.feeder_id, c.epoch, slot, submissions)
    values: list[tuple[str, int | None]] = []
    x_shares: dict[str, int] = {}
    counts = Counter(s.contributor_id for s in submissions)
    for sub in sorted(submissions, key=lambda s: s.contributor_id):
        cid = sub.contributor_id
        if counts[cid] > 1:
            # Two different submissions for one round: neither is trusted (and every
            # aggregator decides the same way whatever order it received them in).
            if not values or values[-1][0] != cid:
                values.append((cid, None))
            continue
        key = session.contributor_keys.get(cid)
        v: int | None = None
        if (key is not None and sub.feeder_id == c.feeder_id
                and sub.epoch == c.epoch and sub.slot == slot
                and len(sub.sealed_shares) == c.size):
            blob = sub.sealed_shares[j]
            try:
                plain = AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:],
                                            _aad(c.feeder_id, c.epoch, slot, cid, j))
            except Exception:
                plain = b""
            if len(plain) == 2 * SHARE_BYTES:
                xs = int.from_bytes(plain[:SHARE_BYTES], "big")
                ws = int.from_bytes(plain[SHARE_BYTES:], "big")
                if xs < PRIME and ws < PRIME:
                    v = (xs + _challenge(transcript, cid) * ws) % PRIME
                    x_shares[cid] = xs
        values.append((cid, v))
    check = ShareCheck(c.feeder_id, c.epoch, slot, j, transcript, tuple(values))
    signed = ShareCheck(check.feeder_id, check.epoch, check.slot, check.position,
                        check.transcript, check.values,
                        session.keys.signing_key.sign(check.signed_message(), CTX_CHECK))
    return signed, AggregatorRound(session, slot, transcript, x_shares)


@dataclass(frozen=True)
class Inclusion:
    """Which contributors a round sums, and why the others are out (pure, recomputable)."""

    feeder_id: str
    epoch: int
    slot: int
    transcript: bytes
    included: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]  # (contributor, reason)
    suspects: tuple[tuple[str, tuple[int, ...]], ...]  # contributor -> aggregator positions
    bad_checks: tuple[tuple[int, str], ...]  # (aggregator position, reason)

    def digest(self) -> bytes:
        """What partial sums are signed over: the round and the exact included set."""
        return tagged_hash("gl/secagg/inclusion", self.feeder_id.encode(),
                           self.epoch.to_bytes(8, "big"), self.slot.to_bytes(8, "big"),
                           self.transcript, *(c.encode() for c in self.included))

    @property
    def included_meters(self) -> tuple[str, ...]:
        """Included contributors that are meters (not aggregators' noise)."""
        return tuple(c for c in self.included if not c.startswith(NOISE_PREFIX))


def select_included(committee: Committee, slot: int, submissions: Sequence[MeterSubmission],
                    checks: Sequence[ShareCheck]) -> Inclusion:
    """Decide the included set from the posted submissions and share checks (pure).

    A check is usable if signed by its aggregator and computed over this round's transcript.
    A contributor is included iff every usable check has a value for it and those values
    lie on one polynomial of degree ``t - 1``. With at least ``t + 2`` usable checks a
    single off-polynomial value is located and its aggregator listed as a suspect (the
    meter or that aggregator lied; a dispute with the revealed epoch key settles which).
    Raises ``AggregationFailed`` with fewer than ``t + 1`` usable checks (no redundancy).
    """
    c = committee
    transcript = round_transcript(c.feeder_id, c.epoch, slot, submissions)
    usable: dict[int, ShareCheck] = {}
    bad: list[tuple[int, str]] = []
    for ch in checks:
        if not 0 <= ch.position < c.size or ch.position in usable:
            continue
        agg = c.aggregators[ch.position]
        if not all(v is None or is_field_element(v) for _, v in ch.values):
            bad.append((ch.position, "non-canonical"))  # v + p would alias v
        elif not agg.sig_key.verify(ch.signed_message(), ch.signature, CTX_CHECK):
            bad.append((ch.position, "bad-signature"))
        elif (ch.feeder_id, ch.epoch, ch.slot, ch.transcript) != (c.feeder_id, c.epoch, slot,
                                                                  transcript):
            bad.append((ch.position, "wrong-transcript"))
        else:
            usable[ch.position] = ch
    if len(usable) < c.threshold + 1:
        raise AggregationFailed(
            f"{len(usable)} usable share checks; need threshold+1 = {c.threshold + 1}")
    tables = {p: dict(ch.values) for p, ch in usable.items()}
    positions = sorted(usable)
    counts = Counter(s.contributor_id for s in submissions)
    included: list[str] = []
    excluded: list[tuple[str, str]] = []
    suspects: list[tuple[str, tuple[int, ...]]] = []
    for cid in sorted(counts):
        if counts[cid] > 1:
            excluded.append((cid, "duplicate-submission"))
            continue
        vals = [(p, tables[p].get(cid)) for p in positions]
        missing = tuple(p for p, v in vals if v is None)
        if missing:
            excluded.append((cid, "share-undecryptable"))
            suspects.append((cid, missing))
            continue
        shares = [Share(p + 1, v) for p, v in vals if v is not None]
        try:
            decoded = decode_shares(shares, c.threshold)
        except InconsistentShares:
            excluded.append((cid, "shares-inconsistent"))
            continue
        if decoded.bad_xs:
            excluded.append((cid, "shares-inconsistent"))
            suspects.append((cid, tuple(x - 1 for x in decoded.bad_xs)))
            continue
        included.append(cid)
    return Inclusion(c.feeder_id, c.epoch, slot, transcript, tuple(included), tuple(excluded),
                     tuple(suspects), tuple(sorted(bad)))


@dataclass(frozen=True)
class PartialSum:
    """Aggregator ``position``'s signed sum of its shares over an inclusion."""

    position: int
    inclusion_digest: bytes
    value: int
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the aggregator signs."""
        return tagged_hash("gl/secagg/partial", self.position.to_bytes(2, "big"),
                           self.inclusion_digest, field_to_bytes(self.value))


def sum_shares(round_state: AggregatorRound, inclusion: Inclusion) -> PartialSum:
    """Sum this aggregator's ``x`` shares of the included contributors and sign the result.

    Raises ``PrivacyError`` if the inclusion names a contributor this aggregator has no
    share for (it would have reported None in its check) or belongs to another round.
    """
    s = round_state.session
    if (inclusion.slot != round_state.slot or inclusion.transcript != round_state.transcript):
        raise PrivacyError("inclusion is for another round")
    try:
        value = sum(round_state.x_shares[cid] for cid in inclusion.included) % PRIME
    except KeyError as exc:
        raise PrivacyError(f"no share from included contributor {exc.args[0]!r}") from exc
    unsigned = PartialSum(s.position, inclusion.digest(), value)
    return PartialSum(unsigned.position, unsigned.inclusion_digest, value,
                      s.keys.signing_key.sign(unsigned.signed_message(), CTX_PARTIAL))


@dataclass(frozen=True)
class AggregateResult:
    """The verified feeder total of a round and everything needed to audit it."""

    feeder_id: str
    epoch: int
    slot: int
    total_wh: int
    included_meters: tuple[str, ...]
    noise_dealers: tuple[str, ...]
    inclusion_digest: bytes
    used_aggregators: tuple[str, ...]
    rejected_aggregators: tuple[tuple[str, str], ...]  # (aggregator id, reason)
    redundancy_checked: bool
    head_meter_wh: int | None
    head_meter_ok: bool | None


def combine_partials(committee: Committee, inclusion: Inclusion,
                     partials: Sequence[PartialSum], *, head_meter_wh: int | None = None,
                     tolerance_wh: int = 0) -> AggregateResult:
    """Reconstruct and verify the feeder total from signed partial sums (pure).

    Every partial must be signed by its aggregator over ``inclusion``; the total is decoded
    from all ``t``-subsets and any aggregator whose partial is off the polynomial is rejected
    with reason ``bad-aggregator``. If the partials are too few to locate the bad one
    (e.g. ``t + 1`` with one wrong), the candidate totals are compared with the feeder
    head meter and the one within ``tolerance_wh`` wins. ``head_meter_ok`` reports the
    final balance check (loss tolerance plus DP-noise bound are the caller's to add).
    Raises ``AggregationFailed`` if no trustworthy total can be named.
    """
    c = committee
    digest = inclusion.digest()
    rejected: list[tuple[str, str]] = []
    valid: dict[int, PartialSum] = {}
    for p in partials:
        if not 0 <= p.position < c.size or p.position in valid:
            continue
        agg = c.aggregators[p.position]
        if not is_field_element(p.value):
            rejected.append((agg.aggregator_id, "non-canonical"))  # checked before encoding
        elif not agg.sig_key.verify(p.signed_message(), p.signature, CTX_PARTIAL):
            rejected.append((agg.aggregator_id, "bad-signature"))
        elif p.inclusion_digest != digest:
            rejected.append((agg.aggregator_id, "wrong-inclusion"))
        else:
            valid[p.position] = p
    if len(valid) < c.threshold:
        raise AggregationFailed(f"{len(valid)} valid partial sums; need {c.threshold}")
    shares = [Share(pos + 1, valid[pos].value) for pos in sorted(valid)]
    redundancy = len(shares) > c.threshold
    bad_xs: tuple[int, ...]
    try:
        decoded = decode_shares(shares, c.threshold)
        total, bad_xs = decode_signed(decoded.secret), decoded.bad_xs
    except InconsistentShares:
        # Too many disagreements to locate by redundancy: let the head meter choose.
        if head_meter_wh is None:
            raise AggregationFailed(
                "partial sums are inconsistent and no head-meter reading to arbitrate")
        # A subset containing a wrong partial lands at a value the liar does not control
        # unless it shifts by a tiny delta, in which case several candidates fit the head
        # meter and we refuse rather than guess.
        fits = {s: xs for s, xs in candidate_secrets(shares, c.threshold).items()
                if abs(decode_signed(s) - head_meter_wh) <= tolerance_wh}
        if len(fits) != 1:
            raise AggregationFailed(
                f"partial sums are inconsistent; {len(fits)} candidate totals match the "
                "head meter")
        secret, agree = next(iter(fits.items()))
        total = decode_signed(secret)
        bad_xs = tuple(s.x for s in shares if s.x not in agree)
    for x in bad_xs:
        rejected.append((c.aggregators[x - 1].aggregator_id, "bad-aggregator"))
    used = tuple(c.aggregators[s.x - 1].aggregator_id for s in shares if s.x not in bad_xs)
    head_ok = None if head_meter_wh is None else abs(total - head_meter_wh) <= tolerance_wh
    return AggregateResult(
        feeder_id=c.feeder_id, epoch=c.epoch, slot=inclusion.slot, total_wh=total,
        included_meters=inclusion.included_meters,
        noise_dealers=tuple(x for x in inclusion.included if x.startswith(NOISE_PREFIX)),
        inclusion_digest=digest, used_aggregators=used,
        rejected_aggregators=tuple(sorted(rejected)), redundancy_checked=redundancy,
        head_meter_wh=head_meter_wh, head_meter_ok=head_ok)


# --------------------------------------------------------------------------- disputes
def reveal_epoch_key(session: AggregatorSession, contributor_id: str) -> bytes:
    """The AES key an aggregator shares with one contributor, revealed in a dispute.

    Revealing it exposes only this aggregator's shares of that contributor: fewer than
    ``t`` shares, so nothing about the readings (Shamir 1979).
    """
    try:
        return session.contributor_keys[contributor_id]
    except KeyError as exc:
        raise PrivacyError(f"no key for {contributor_id!r}") from exc


def resolve_share_dispute(committee: Committee, grant: EpochGrant, submission: MeterSubmission,
                          check: ShareCheck, revealed_key: bytes) -> str:
    """Say who is at fault for a suspect share: ``"meter"`` or ``"aggregator"``.

    Anyone can run it with the submission (whose digest the meter signed in its reading
    transaction), the aggregator's signed check and the key it revealed. If the share
    does not decrypt under the revealed key, or decrypts and gives the published ``v``,
    the meter sent it; if it gives a different ``v``, the aggregator lied.
    A revealed key that does not match the commitment in the meter's signed epoch
    ``grant`` is the aggregator's fault (it would otherwise frame the meter).
    """
    j = check.position
    if grant.contributor_id != submission.contributor_id:
        raise PrivacyError("grant and submission are from different contributors")
    if commit_key(revealed_key) != grant.key_commitments[j]:
        return "aggregator"
    if (submission.feeder_id, submission.epoch, submission.slot) != (check.feeder_id,
                                                                     check.epoch, check.slot):
        raise PrivacyError("submission and check are from different rounds")
    published = dict(check.values).get(submission.contributor_id)
    blob = submission.sealed_shares[j]
    try:
        plain = AESGCM(revealed_key).decrypt(
            blob[:_NONCE], blob[_NONCE:],
            _aad(committee.feeder_id, committee.epoch, submission.slot,
                 submission.contributor_id, j))
    except Exception:
        return "meter" if published is None else "aggregator"
    xs, ws = int.from_bytes(plain[:SHARE_BYTES], "big"), int.from_bytes(plain[SHARE_BYTES:], "big")
    well_formed = (len(plain) == 2 * SHARE_BYTES and is_field_element(xs)
                   and is_field_element(ws))
    if published is None:
        # an honest aggregator reports None for a share that does not decrypt *or* is not
        # two canonical field elements (an alias x + p is the meter's doing)
        return "meter" if not well_formed else "aggregator"
    if not well_formed:
        return "aggregator"  # it published a value for a share it could not have used
    v = (xs + _challenge(check.transcript, submission.contributor_id) * ws) % PRIME
    return "meter" if v == published else "aggregator"


def verify_grant(grant: EpochGrant, device_key: PublicKey) -> bool:
    """Whether ``grant`` is signed by ``device_key`` (ledger admission of a grant)."""
    if grant.signer != device_key:
        return False
    try:
        return device_key.verify(grant.signed_message(), grant.signature, CTX_GRANT)
    except CryptoError:
        return False
