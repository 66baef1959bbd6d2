"""Privacy messages, with the stateless parser of every kind (records: ``records.py``).

Every ``parse_<kind>`` does all checks that need no state (exact fields, types, ranges,
sizes, algorithm names); admission runs it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridledger.crypto.sig import PublicKey
from gridledger.errors import CryptoError, InvalidBody
from gridledger.ledger.module import Body
from gridledger.ledger.modules.privacy.records import pseudo_cp as pseudo_cp  # for metering
from gridledger.ledger.validate import (
    require_addr,
    require_alg,
    require_bytes,
    require_fields,
    require_int,
    require_str,
)
from gridledger.privacy.pseudonyms import BLIND_BYTES, OPENING_SHARE_BYTES

MAX_ESCROW_RECORD = 8192
MAX_SEALED_SHARE = 2048
MAX_LEAVES_PER_TX = 4          # a leaf carries two ML-DSA public keys (1.3-2.6 kB each)
MAX_SHARES_PER_TX = 64
MAX_PATH = 32
MAX_TRUSTEES = 32
MAX_SIG = 4627                 # an ML-DSA-87 signature
MAX_SLOT = 2**40
MAX_MICRO = 10**15
MAX_ROAMING_WH = 1_000_000     # 1 MWh: far above any one EV charging session
MAX_PRICE_MICRO_PER_KWH = 10**9
DISPUTE_CLAIMS = ("non-delivery", "non-receipt")
"""The trade-dispute claims a pseudonym's opening can be requested for (disputes module)."""

JOIN, ATTEST, CERTIFY, REGISTER = "privacy/join", "privacy/attest", "privacy/certify", \
    "privacy/register"
CLAIM, CARRY = "privacy/claim", "privacy/carry"
REQUEST_OPENING, ESCROW, RELEASE, ATTRIBUTE = ("privacy/request_opening", "privacy/escrow",
                                               "privacy/release", "privacy/attribute")
PARTIAL, AGGREGATOR_EVIDENCE = "privacy/partial", "privacy/aggregator_evidence"
ROAMING_AUTHORISE, ROAMING_CHARGE = "privacy/roaming_authorise", "privacy/roaming_charge"


# --------------------------------------------------------------------------------- messages
def _list(body: Body, name: str, lo: int, hi: int) -> list[Any]:
    v = body.get(name)
    if not isinstance(v, list) or not lo <= len(v) <= hi:
        raise InvalidBody(f"field {name!r} must be a list of {lo}..{hi} items")
    return v


def _path(body: Body, name: str) -> tuple[bytes, ...]:
    path = body.get(name)
    if (not isinstance(path, list) or len(path) > MAX_PATH
            or not all(isinstance(h, bytes) and len(h) == 32 for h in path)):
        raise InvalidBody(f"field {name!r} must be a list of at most {MAX_PATH} 32-byte hashes")
    return tuple(path)


def _key(body: Body, alg_field: str, pk_field: str) -> PublicKey:
    alg = require_alg(body, alg_field)
    pk = require_bytes(body, pk_field, max_len=4096)
    try:
        return PublicKey(alg, pk)
    except CryptoError as exc:
        raise InvalidBody(f"field {pk_field!r}: {exc}") from exc


@dataclass(frozen=True)
class Join:
    """``privacy/join``: lock ``tickets`` x allowance in the pool of ``epoch``."""

    epoch: int
    tickets: int


def parse_join(body: Body) -> Join:
    require_fields(body, JOIN, ("epoch", "tickets"))
    return Join(require_int(body, "epoch", maximum=MAX_SLOT),
                require_int(body, "tickets", 1, 10_000))


@dataclass(frozen=True)
class Attest:
    """``privacy/attest``: the DSO attests a root of meter reading keys for ``epoch``."""

    epoch: int
    root: bytes
    count: int


def parse_attest(body: Body) -> Attest:
    require_fields(body, ATTEST, ("epoch", "root", "count"))
    return Attest(require_int(body, "epoch", maximum=MAX_SLOT),
                  require_bytes(body, "root", exact=32), require_int(body, "count", 1, 10**6))


METER_IMAGE = "privacy/meter_image"


@dataclass(frozen=True)
class MeterImage:
    """``privacy/meter_image`` (dso): the image a registered pseudonym's meter now runs, as
    the DSO saw it in that meter's latest reading under an earlier pseudonym (a meter
    flashed mid-epoch; issue 19): recorded before the pseudonym trades."""

    pseudonym: bytes
    firmware: bytes
    salt: bytes | None = None
    """Given: an opening — ``firmware`` is the image the pseudonym's sealed firmware of
    record commits to, with its salt (the DSO opens it on an advisory; rule
    ``image-opening``). Absent: ``firmware`` is what the meter now attests for this
    pseudonym (a commitment under a sealed record)."""


def parse_meter_image(body: Body) -> MeterImage:
    require_fields(body, METER_IMAGE, ("pseudonym", "firmware"), ("salt",))
    return MeterImage(require_bytes(body, "pseudonym", exact=32),
                      require_bytes(body, "firmware", exact=32),
                      require_bytes(body, "salt", exact=32) if "salt" in body else None)


@dataclass(frozen=True)
class Certify:
    """``privacy/certify``: a trustee posts the batch certificate (k signatures on a root)."""

    epoch: int
    root: bytes
    count: int
    endorsements: tuple[tuple[int, bytes], ...]


def parse_certify(body: Body) -> Certify:
    require_fields(body, CERTIFY, ("epoch", "root", "count", "endorsements"))
    ends = []
    for e in _list(body, "endorsements", 1, MAX_TRUSTEES):
        if (not isinstance(e, list) or len(e) != 2 or not isinstance(e[0], int)
                or isinstance(e[0], bool) or not 0 <= e[0] < MAX_TRUSTEES
                or not isinstance(e[1], bytes) or len(e[1]) > MAX_SIG):
            raise InvalidBody("each endorsement is [trustee index, signature]")
        ends.append((e[0], e[1]))
    return Certify(require_int(body, "epoch", maximum=MAX_SLOT),
                   require_bytes(body, "root", exact=32), require_int(body, "count", 1, 10**6),
                   tuple(ends))


@dataclass(frozen=True)
class Leaf:
    """One pseudonym to register: its certified leaf and its meter's attested reading key."""

    key: PublicKey
    escrow_digest: bytes
    first_slot: int
    last_slot: int
    feeder: str
    index: int
    path: tuple[bytes, ...]
    reading_key: PublicKey
    reading_root: bytes
    reading_index: int
    reading_path: tuple[bytes, ...]
    reading_firmware: bytes | None = None
    """The image the meter attested it runs, bound into the DSO's attested leaf (issue 19:
    the pseudonym's firmware of record from registration on, before any reading)."""
    reading_sealed: bool = False
    """``reading_firmware`` is the salted commitment to the image (privacy mode: the DSO
    attested that the committed image is approved; no image on the ledger)."""


_LEAF_FIELDS = ("alg", "pk", "escrow_digest", "first_slot", "last_slot", "feeder", "index",
                "path", "reading_alg", "reading_pk", "reading_root", "reading_index",
                "reading_path")


def _parse_leaf(raw: Any) -> Leaf:
    if not isinstance(raw, dict):
        raise InvalidBody("each leaf is a map")
    require_fields(raw, "leaf", _LEAF_FIELDS, ("reading_firmware", "reading_sealed"))
    sealed = raw.get("reading_sealed", False)
    if ("reading_sealed" in raw and sealed is not True) or (sealed and "reading_firmware" not in raw):
        raise InvalidBody("'reading_sealed' is true, and only beside 'reading_firmware'")
    first = require_int(raw, "first_slot", maximum=MAX_SLOT)
    last = require_int(raw, "last_slot", maximum=MAX_SLOT)
    if first > last:
        raise InvalidBody("first_slot is after last_slot")
    return Leaf(_key(raw, "alg", "pk"), require_bytes(raw, "escrow_digest", exact=32), first,
                last, require_str(raw, "feeder", max_len=64),
                require_int(raw, "index", maximum=10**6), _path(raw, "path"),
                _key(raw, "reading_alg", "reading_pk"),
                require_bytes(raw, "reading_root", exact=32),
                require_int(raw, "reading_index", maximum=10**6), _path(raw, "reading_path"),
                require_bytes(raw, "reading_firmware", exact=32)
                if "reading_firmware" in raw else None, sealed is True)


@dataclass(frozen=True)
class Register:
    """``privacy/register``: anyone relays certified pseudonyms onto the ledger."""

    root: bytes
    leaves: tuple[Leaf, ...]


def parse_register(body: Body) -> Register:
    require_fields(body, REGISTER, ("root", "leaves"))
    leaves = tuple(_parse_leaf(x) for x in _list(body, "leaves", 1, MAX_LEAVES_PER_TX))
    if len({x.key for x in leaves}) != len(leaves):
        raise InvalidBody("a pseudonym appears twice in one registration")
    return Register(require_bytes(body, "root", exact=32), leaves)


@dataclass(frozen=True)
class Claim:
    """``privacy/claim``: what a member says its pseudonyms left it in ``epoch``."""

    epoch: int
    amount_micro: int


def parse_claim(body: Body) -> Claim:
    require_fields(body, CLAIM, ("epoch", "amount_micro"))
    return Claim(require_int(body, "epoch", maximum=MAX_SLOT),
                 require_int(body, "amount_micro", maximum=MAX_MICRO))


@dataclass(frozen=True)
class Carry:
    """``privacy/carry``: a pseudonym of a paid-out epoch moves money that reached it late
    into the pool of open epoch ``epoch``, where its owner claims it."""

    epoch: int


def parse_carry(body: Body) -> Carry:
    require_fields(body, CARRY, ("epoch",))
    return Carry(require_int(body, "epoch", maximum=MAX_SLOT))


@dataclass(frozen=True)
class RequestOpening:
    """``privacy/request_opening``: a decided trade dispute lost by a pseudonym."""

    slot: int
    trade: int
    claim: str


def parse_request_opening(body: Body) -> RequestOpening:
    require_fields(body, REQUEST_OPENING, ("slot", "trade", "claim"))
    return RequestOpening(require_int(body, "slot", maximum=MAX_SLOT),
                          require_int(body, "trade", maximum=2**32 - 1),
                          require_str(body, "claim", choices=DISPUTE_CLAIMS))


@dataclass(frozen=True)
class PostEscrow:
    """``privacy/escrow``: a disputed pseudonym's escrow (trustees keep every escrow)."""

    dispute: bytes
    pseudonym: bytes
    record: bytes
    shares: tuple[bytes, ...]
    commitments: tuple[bytes, ...]


def parse_escrow(body: Body) -> PostEscrow:
    require_fields(body, ESCROW, ("dispute", "pseudonym", "record", "shares", "commitments"))
    shares = _list(body, "shares", 1, MAX_TRUSTEES)
    commitments = _list(body, "commitments", 1, MAX_TRUSTEES)
    if (not all(isinstance(s, bytes) and len(s) <= MAX_SEALED_SHARE for s in shares)
            or not all(isinstance(c, bytes) and len(c) == 32 for c in commitments)
            or len(shares) != len(commitments)):
        raise InvalidBody("one sealed share and one 32-byte commitment per trustee")
    return PostEscrow(require_bytes(body, "dispute", exact=32), require_addr(body, "pseudonym"),
                      require_bytes(body, "record", max_len=MAX_ESCROW_RECORD), tuple(shares),
                      tuple(commitments))


@dataclass(frozen=True)
class Release:
    """``privacy/release``: a trustee's shares (and blinds) for pseudonyms a dispute names."""

    dispute: bytes
    shares: tuple[tuple[bytes, bytes, bytes], ...]   # (pseudonym, share, blind)


def parse_release(body: Body) -> Release:
    require_fields(body, RELEASE, ("dispute", "shares"))
    out = []
    for it in _list(body, "shares", 1, MAX_SHARES_PER_TX):
        if (not isinstance(it, list) or len(it) != 3 or not isinstance(it[0], bytes)
                or len(it[0]) != 32 or not isinstance(it[1], bytes)
                or len(it[1]) != OPENING_SHARE_BYTES or not isinstance(it[2], bytes)
                or len(it[2]) != BLIND_BYTES):
            raise InvalidBody(f"each share is [pseudonym, {OPENING_SHARE_BYTES}-byte share, "
                              f"{BLIND_BYTES}-byte blind]")
        out.append((it[0], it[1], it[2]))
    if len({p for p, _, _ in out}) != len(out):
        raise InvalidBody("one share per pseudonym in a release")
    return Release(require_bytes(body, "dispute", exact=32), tuple(out))


@dataclass(frozen=True)
class Attribute:
    """``privacy/attribute``: the meter evidence that a pseudonym whose escrow proved bogus
    belongs to the household at ``cp`` (``privacy.meter_keys.MeterStatement.evidence``)."""

    dispute: bytes
    pseudonym: bytes
    cp: str
    count: int
    root: bytes
    index: int
    path: tuple[bytes, ...]
    device_sig: bytes


def parse_attribute(body: Body) -> Attribute:
    require_fields(body, ATTRIBUTE, ("dispute", "pseudonym", "cp", "count", "root", "index",
                                     "path", "device_sig"))
    return Attribute(require_bytes(body, "dispute", exact=32), require_addr(body, "pseudonym"),
                     require_str(body, "cp", max_len=64), require_int(body, "count", 1, 10**6),
                     require_bytes(body, "root", exact=32),
                     require_int(body, "index", maximum=10**6), _path(body, "path"),
                     require_bytes(body, "device_sig", max_len=MAX_SIG))


@dataclass(frozen=True)
class Partial:
    """``privacy/partial``: an aggregator's signed partial sum for one round."""

    slot: int
    feeder: str
    epoch: int
    inclusion: bytes
    meters: int
    value: int
    sig: bytes


_PARTIAL_FIELDS = ("slot", "feeder", "epoch", "inclusion", "meters", "value", "sig")


def _partial(raw: Body) -> Partial:
    return Partial(require_int(raw, "slot", maximum=MAX_SLOT),
                   require_str(raw, "feeder", max_len=64),
                   require_int(raw, "epoch", maximum=MAX_SLOT),
                   require_bytes(raw, "inclusion", exact=32),
                   require_int(raw, "meters", maximum=10**6),
                   require_int(raw, "value", maximum=2**127 - 2),
                   require_bytes(raw, "sig", max_len=MAX_SIG))


def parse_partial(body: Body) -> Partial:
    require_fields(body, PARTIAL, _PARTIAL_FIELDS)
    return _partial(body)


@dataclass(frozen=True)
class AggregatorEvidence:
    """``privacy/aggregator_evidence``: partials one aggregator signed that prove misconduct."""

    feeder: str
    slot: int
    partials: tuple[tuple[int, Partial], ...]   # (position, partial)


def parse_aggregator_evidence(body: Body) -> AggregatorEvidence:
    require_fields(body, AGGREGATOR_EVIDENCE, ("feeder", "slot", "partials"))
    feeder = require_str(body, "feeder", max_len=64)
    slot = require_int(body, "slot", maximum=MAX_SLOT)
    out = []
    for raw in _list(body, "partials", 1, 2):
        if not isinstance(raw, list) or len(raw) != 6:
            raise InvalidBody("each partial is [position, epoch, inclusion, meters, value, sig]")
        fields = dict(zip(("position", "epoch", "inclusion", "meters", "value", "sig"), raw,
                          strict=True))
        pos = require_int(fields, "position", maximum=31)
        out.append((pos, _partial({**fields, "slot": slot, "feeder": feeder})))
    return AggregatorEvidence(feeder, slot, tuple(out))


@dataclass(frozen=True)
class RoamingAuthorise:
    """``privacy/roaming_authorise``: the home DSO books a member's signed authorisation."""

    account: bytes
    seq: int
    commitment: bytes
    max_energy_wh: int
    price_cap_micro_per_kwh: int
    billing_sig: bytes


def parse_roaming_authorise(body: Body) -> RoamingAuthorise:
    require_fields(body, ROAMING_AUTHORISE, ("account", "seq", "commitment", "max_energy_wh",
                                             "price_cap_micro_per_kwh", "billing_sig"))
    return RoamingAuthorise(
        require_addr(body, "account"), require_int(body, "seq", maximum=MAX_SLOT),
        require_bytes(body, "commitment", exact=32),
        require_int(body, "max_energy_wh", 1, MAX_ROAMING_WH),
        require_int(body, "price_cap_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH),
        require_bytes(body, "billing_sig", max_len=MAX_SIG))


@dataclass(frozen=True)
class RoamingCharge:
    """``privacy/roaming_charge``: the home DSO charges a booking for a settled claim."""

    account: bytes
    seq: int
    energy_wh: int
    price_micro_per_kwh: int
    amount_micro: int
    foreign_community: str
    foreign_dso: str


def parse_roaming_charge(body: Body) -> RoamingCharge:
    require_fields(body, ROAMING_CHARGE, ("account", "seq", "energy_wh", "price_micro_per_kwh",
                                          "amount_micro", "foreign_community", "foreign_dso"))
    return RoamingCharge(
        require_addr(body, "account"), require_int(body, "seq", maximum=MAX_SLOT),
        require_int(body, "energy_wh", 1, MAX_ROAMING_WH),
        require_int(body, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH),
        require_int(body, "amount_micro", maximum=MAX_MICRO),
        require_str(body, "foreign_community", max_len=64),
        require_str(body, "foreign_dso", max_len=64))
