"""The aggregator's round: check shares, derive the inclusion, sign one partial sum.

1. **Share check** (``check_shares``). For every submission aggregator ``j`` publishes
   ``v_j = x_j + r * w_j``, ``r`` a Fiat-Shamir challenge hashed from the whole round
   transcript. If the meter's shares lie on degree-``t-1`` polynomials the ``v_j`` do too;
   otherwise not, except with probability 1/p (p = 2^127 - 1). ``v`` opens to ``x + r w``,
   uniform because ``w`` is, so it reveals nothing about ``x`` (Prio-style validation on
   shared data, Corrigan-Gibbs & Boneh NSDI 2017, with a random linear combination
   instead of a SNIP).
2. **Inclusion** (``select_included``, pure): a meter is included iff enough usable checks
   agree on one polynomial for its ``v``'s (``Committee.min_agree``: a missing value is an
   erasure, so one or two aggregators cannot drop an honest meter on their own).
3. **Partial sum** (``sum_shares``): the aggregator *derives* the inclusion itself from the
   round's submissions and the signed checks (never from what it is asked), refuses a
   total over fewer than ``min_contributors`` meters, sums its ``x`` shares and signs.

``Aggregator`` keeps the round discipline an aggregator node must follow: one check and
one partial per round, whoever asks. Two different signed partials for one round, or one
over fewer meters than the minimum, are standalone evidence (``partial_misconduct``) that
the ledger penalises (``privacy/aggregator_evidence``).

Why each rule (issue 21): an aggregator that signed a partial for any inclusion it was
handed let ``t`` colluders ask each honest aggregator about a single meter and recover its
exact reading; dropouts down to one meter published that meter's reading.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.shamir import (
    PRIME,
    InconsistentShares,
    Share,
    decode_shares,
    field_to_bytes,
    is_field_element,
)
from gridledger.crypto.sig import PublicKey
from gridledger.errors import CryptoError
from gridledger.privacy.aggregation.committee import (
    NOISE_PREFIX,
    AggregatorSession,
    Committee,
)
from gridledger.privacy.aggregation.meter import MeterSubmission, open_share
from gridledger.privacy.errors import (
    AggregationFailed,
    AnonymitySetTooSmall,
    PrivacyError,
    RoundAlreadySigned,
)

CTX_CHECK = b"gl/secagg/check/v1"
CTX_PARTIAL = b"gl/secagg/partial/v1"


def round_transcript(feeder_id: str, epoch: int, slot: int,
                     submissions: Sequence[MeterSubmission]) -> bytes:
    """Hash of the round's submission set (order-independent)."""
    digests = sorted(s.digest() for s in submissions)
    return tagged_hash("gl/secagg/transcript", feeder_id.encode(), epoch.to_bytes(8, "big"),
                       slot.to_bytes(8, "big"), *digests)


def challenge(transcript: bytes, contributor_id: str) -> int:
    """Fiat-Shamir challenge ``r``: fixed only after every submission is, so a meter cannot
    choose its share errors to cancel (success probability 1/p per attempt)."""
    r = int.from_bytes(tagged_hash("gl/secagg/challenge", transcript,
                                   contributor_id.encode()), "big") % PRIME
    return r or 1


@dataclass(frozen=True)
class ShareCheck:
    """Aggregator ``position``'s signed check values ``v = x + r w`` (None: unusable share)."""

    feeder_id: str
    epoch: int
    slot: int
    position: int
    transcript: bytes
    values: tuple[tuple[str, int | None], ...]
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the aggregator signs (raises ``CryptoError`` on a non-canonical value)."""
        parts = [self.feeder_id.encode(), self.epoch.to_bytes(8, "big"),
                 self.slot.to_bytes(8, "big"), self.position.to_bytes(2, "big"), self.transcript]
        for cid, v in self.values:
            parts += [cid.encode(), b"" if v is None else field_to_bytes(v)]
        return tagged_hash("gl/secagg/check", *parts)

    @cached_property
    def canonical(self) -> bool:
        """Whether every value is a canonical field element (``v + p`` would alias ``v``)."""
        return all(v is None or is_field_element(v) for _, v in self.values)

    def verify(self, key: PublicKey) -> bool:
        """Whether ``key`` signed this check (memoised: every aggregator checks every check)."""
        return _verify_check(self, key)


@lru_cache(maxsize=64)  # a few rounds' checks (each holds a value per meter)
def _verify_check(check: ShareCheck, key: PublicKey) -> bool:
    # a pure function of (check, key); ShareCheck is frozen and hashable
    return key.verify(check.signed_message(), check.signature, CTX_CHECK)


@dataclass(frozen=True)
class AggregatorRound:
    """Aggregator-side secret round state: the round's submissions, its own signed check and
    its decrypted ``x`` shares per contributor."""

    session: AggregatorSession
    slot: int
    transcript: bytes
    submissions: tuple[MeterSubmission, ...]
    check: ShareCheck
    x_shares: Mapping[str, int] = field(repr=False)


def check_shares(session: AggregatorSession, slot: int,
                 submissions: Sequence[MeterSubmission]) -> tuple[ShareCheck, AggregatorRound]:
    """Decrypt this aggregator's share of every submission; publish signed check values.

    Submissions from contributors without an accepted grant, for another round, or that
    fail AES-GCM authentication or canonical decoding get ``None`` (an erasure). Returns the
    public check and the secret round state for ``sum_shares``.
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
        if (key is not None and (sub.feeder_id, sub.epoch, sub.slot) == (c.feeder_id, c.epoch,
                                                                          slot)
                and len(sub.sealed_shares) == c.size):
            opened = open_share(key, sub, j)
            if opened is not None:
                xs, ws = opened
                v = (xs + challenge(transcript, cid) * ws) % PRIME
                x_shares[cid] = xs
        values.append((cid, v))
    unsigned = ShareCheck(c.feeder_id, c.epoch, slot, j, transcript, tuple(values))
    signed = replace(unsigned, signature=session.keys.signing_key.sign(
        unsigned.signed_message(), CTX_CHECK))
    return signed, AggregatorRound(session, slot, transcript, tuple(submissions), signed,
                                   x_shares)


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
        """What partial sums are signed over: the round and the exact included set.

        It names contributors, not the transcript: a partial must not depend on secret
        randomness (ciphertexts) that would then reach ledger state (the ledger groups
        partials by this digest).
        """
        return inclusion_digest(self.feeder_id, self.epoch, self.slot, self.included)

    @property
    def included_meters(self) -> tuple[str, ...]:
        """Included contributors that are meters (not aggregators' noise)."""
        return tuple(c for c in self.included if not c.startswith(NOISE_PREFIX))

    def unusable_at(self, position: int) -> tuple[str, ...]:
        """Included contributors whose share at ``position`` is missing or off-polynomial."""
        inc = set(self.included)
        return tuple(cid for cid, ps in self.suspects if cid in inc and position in ps)


def inclusion_digest(feeder_id: str, epoch: int, slot: int, included: Sequence[str]) -> bytes:
    """``Inclusion.digest`` from its parts (sorted contributor ids)."""
    return tagged_hash("gl/secagg/inclusion", feeder_id.encode(), epoch.to_bytes(8, "big"),
                       slot.to_bytes(8, "big"), *(c.encode() for c in sorted(included)))


def _usable_checks(committee: Committee, slot: int, transcript: bytes,
                   checks: Sequence[ShareCheck]) -> tuple[dict[int, ShareCheck],
                                                          list[tuple[int, str]]]:
    c = committee
    usable: dict[int, ShareCheck] = {}
    bad: list[tuple[int, str]] = []
    for ch in checks:
        if not 0 <= ch.position < c.size or ch.position in usable:
            continue
        agg = c.aggregators[ch.position]
        if not ch.canonical:
            bad.append((ch.position, "non-canonical"))  # v + p would alias v
        elif not ch.verify(agg.sig_key):
            bad.append((ch.position, "bad-signature"))
        elif (ch.feeder_id, ch.epoch, ch.slot, ch.transcript) != (c.feeder_id, c.epoch, slot,
                                                                  transcript):
            bad.append((ch.position, "wrong-transcript"))
        else:
            usable[ch.position] = ch
    return usable, bad


def select_included(committee: Committee, slot: int, submissions: Sequence[MeterSubmission],
                    checks: Sequence[ShareCheck]) -> Inclusion:
    """Decide the included set from the submissions and the signed share checks (pure).

    A check is usable if signed by its aggregator and computed over this round's transcript.
    A contributor is included iff its check values agree on one polynomial of degree
    ``t - 1`` at ``Committee.min_agree(n)`` of the ``n`` usable positions; a missing value
    counts as a disagreement. Positions off that polynomial are listed as suspects (the
    meter or that aggregator lied; ``disputes.resolve_share_dispute`` settles which).
    Raises ``AggregationFailed`` if the usable checks cannot reach that agreement at all.
    """
    c = committee
    transcript = round_transcript(c.feeder_id, c.epoch, slot, submissions)
    usable, bad = _usable_checks(c, slot, transcript, checks)
    n = len(usable)
    need = c.min_agree(n)
    if n < need:
        raise AggregationFailed(f"{n} usable share checks; a contributor needs {need} "
                                "agreeing ones")
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
        present = [(p, tables[p].get(cid)) for p in positions]
        shares = [Share(p + 1, v) for p, v in present if v is not None]
        missing = tuple(p for p, v in present if v is None)
        if len(shares) < need:
            excluded.append((cid, "share-undecryptable"))
            suspects.append((cid, missing))
            continue
        try:
            decoded = decode_shares(shares, c.threshold, min_agree=need)
        except (InconsistentShares, CryptoError):
            excluded.append((cid, "shares-inconsistent"))
            continue
        off = tuple(sorted(missing + tuple(x - 1 for x in decoded.bad_xs)))
        if off:
            suspects.append((cid, off))
        included.append(cid)
    return Inclusion(c.feeder_id, c.epoch, slot, transcript, tuple(included), tuple(excluded),
                     tuple(suspects), tuple(sorted(bad)))


@dataclass(frozen=True)
class PartialSum:
    """Aggregator ``position``'s signed sum of its shares over one round's inclusion."""

    position: int
    feeder_id: str
    epoch: int
    slot: int
    inclusion_digest: bytes
    meters: int
    value: int
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the aggregator signs: round, inclusion, how many meters it covers, value."""
        return partial_message(self.feeder_id, self.epoch, self.slot, self.position,
                               self.inclusion_digest, self.meters, self.value)

    def statement(self) -> tuple[bytes, int, int]:
        """What two partials for one round must agree on (signature bytes aside: hedged)."""
        return self.inclusion_digest, self.meters, self.value


def partial_message(feeder_id: str, epoch: int, slot: int, position: int, inclusion: bytes,
                    meters: int, value: int) -> bytes:
    """``PartialSum.signed_message`` from its parts (the ledger rebuilds it from a tx body)."""
    return tagged_hash("gl/secagg/partial", feeder_id.encode(), epoch.to_bytes(8, "big"),
                       slot.to_bytes(8, "big"), position.to_bytes(2, "big"), inclusion,
                       meters.to_bytes(4, "big"), field_to_bytes(value))


def sum_shares(round_state: AggregatorRound,
               checks: Sequence[ShareCheck]) -> tuple[PartialSum, Inclusion]:
    """Derive the round's inclusion from its submissions and the signed ``checks``, and sign
    this aggregator's partial sum over it.

    The inclusion is recomputed here (``select_included`` over the submissions this
    aggregator checked), never taken from the caller; the caller's checks must include
    this aggregator's own. Raises ``AnonymitySetTooSmall`` below ``min_contributors``
    meters, ``PrivacyError`` if this aggregator's own share of an included contributor is
    unusable (it stays out rather than post a partial it knows is wrong).
    """
    r = round_state
    s = r.session
    c = s.committee
    mine = [ch for ch in checks if ch.position == s.position]
    if mine and mine[0].values != r.check.values:
        raise PrivacyError("the checks carry another check in this aggregator's name")
    checks = [r.check, *(ch for ch in checks if ch.position != s.position)]
    inclusion = select_included(c, r.slot, r.submissions, checks)
    meters = len(inclusion.included_meters)
    if meters < c.min_contributors:
        raise AnonymitySetTooSmall(f"the round includes {meters} meters; no total over fewer "
                                   f"than {c.min_contributors} is signed")
    unusable = inclusion.unusable_at(s.position)
    if unusable:
        raise PrivacyError(f"own share of included contributor {unusable[0]!r} is unusable")
    try:
        value = sum(r.x_shares[cid] for cid in inclusion.included) % PRIME
    except KeyError as exc:
        raise PrivacyError(f"no share from included contributor {exc.args[0]!r}") from exc
    unsigned = PartialSum(s.position, c.feeder_id, c.epoch, r.slot, inclusion.digest(), meters,
                          value)
    return replace(unsigned, signature=s.keys.signing_key.sign(unsigned.signed_message(),
                                                               CTX_PARTIAL)), inclusion


class Aggregator:
    """An aggregator node's round discipline over ``check_shares`` and ``sum_shares``.

    One signed check and one signed partial per (feeder, epoch, slot), whoever asks and
    however often: a second request with other submissions or another inclusion raises
    ``RoundAlreadySigned``; the same request returns what was signed before.
    """

    def __init__(self, session: AggregatorSession) -> None:
        self.session = session
        self._rounds: dict[int, AggregatorRound] = {}
        self._partials: dict[int, tuple[PartialSum, Inclusion]] = {}

    @property
    def position(self) -> int:
        """This aggregator's position in the committee."""
        return self.session.position

    def check(self, slot: int, submissions: Sequence[MeterSubmission]) -> ShareCheck:
        """The signed share check of round ``slot`` (once per round)."""
        c = self.session.committee
        prev = self._rounds.get(slot)
        if prev is not None:
            if prev.transcript != round_transcript(c.feeder_id, c.epoch, slot, submissions):
                raise RoundAlreadySigned(f"slot {slot} was checked over another submission set")
            return prev.check
        check, state = check_shares(self.session, slot, submissions)
        self._rounds[slot] = state
        return check

    def partial(self, slot: int, checks: Sequence[ShareCheck]) -> tuple[PartialSum, Inclusion]:
        """The signed partial sum of round ``slot`` (once per round), with its inclusion."""
        state = self._rounds.get(slot)
        if state is None:
            raise PrivacyError(f"slot {slot} has no share check by this aggregator")
        prev = self._partials.get(slot)
        try:
            out = sum_shares(state, checks)
        except PrivacyError:
            if prev is not None:
                raise RoundAlreadySigned(f"slot {slot} already has a partial sum") from None
            raise
        if prev is not None:
            if prev[0].statement() != out[0].statement():
                raise RoundAlreadySigned(f"slot {slot} already has a partial sum over "
                                         "another inclusion")
            return prev
        self._partials[slot] = out
        return out

    def forget_before(self, slot: int) -> None:
        """Drop round state older than ``slot`` (bounded memory); the refusal to sign a
        second partial for a forgotten round then rests on the ledger's one-per-round rule."""
        for s in [s for s in self._rounds if s < slot]:
            del self._rounds[s]
        for s in [s for s in self._partials if s < slot]:
            del self._partials[s]


def partial_misconduct(sig_key: PublicKey, min_contributors: int, first: PartialSum,
                       second: PartialSum | None = None) -> str | None:
    """Standalone evidence against an aggregator, from its own signatures only (pure).

    ``"equivocation"``: two partials it signed for one (feeder, slot) that differ;
    ``"below-minimum"``: a partial it signed over fewer meters than the minimum.
    None when the statements are not both validly signed by ``sig_key`` for the same
    position, or prove nothing. Decoding results are never evidence: a partial off the
    decoded polynomial may be the honest one when more aggregators collude than assumed.
    """
    signed = [p for p in (first, second) if p is not None]
    for p in signed:
        if not is_field_element(p.value) or not sig_key.verify(p.signed_message(), p.signature,
                                                               CTX_PARTIAL):
            return None
    if second is not None:
        same_round = ((first.feeder_id, first.slot, first.position)
                      == (second.feeder_id, second.slot, second.position))
        if not same_round:
            return None
        if (first.epoch, *first.statement()) != (second.epoch, *second.statement()):
            return "equivocation"
    if any(p.meters < min_contributors for p in signed):
        return "below-minimum"
    return None
