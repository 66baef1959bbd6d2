"""Flexibility types (USEF terms): the request, offers, order and settlement records, the
messages and their stateless parsers, and the timeline.

Timeline of a request for slots ``first .. first+n-1`` (S = ``slot_seconds``)::

    request   offers / revocations    order (merit order, signed)    delivery     settlement
    ──┤ now ├──────────────────────┤ gate ├───────────────────────┤ first·S ├ … ┤ sd(k) ├
                                                          reports of slot k: [(k+1)·S, sd(k))
                                                          sd(k) = (k+1)·S + settle_window_s

Sign convention (as everywhere in GridLedger): net injection > 0 exports. Direction ``up``
raises a connection point's net injection (less consumption, more generation: what an
import overload or undervoltage needs), ``down`` lowers it (more consumption, less export).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gridledger.errors import InvalidBody
from gridledger.ledger.module import Body
from gridledger.ledger.params import Params
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import (
    require_alg,
    require_bytes,
    require_fields,
    require_int,
    require_key,
    require_str,
)

REQUEST = "flex/request"
OFFER = "flex/offer"
REVOKE = "flex/revoke"
CANCEL = "flex/cancel"
ORDER = "flex/order"
REPORT = "flex/report"
RESOURCE = "flex/resource"
VEN = "flex/ven"

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, ...] = ("up", "down")
BaselineMethod = Literal["declared", "reference"]
BASELINES: tuple[BaselineMethod, ...] = ("declared", "reference")
"""``declared``: the member's own prognosis in its offer (USEF D-prognosis), never more
favourable to it than the DSO's reference; ``reference``: the DSO's reference alone (a
standard baseline such as PG&E's "high 5 of 10", named in ``reference_method``)."""
DEVICES = ("battery", "ev", "heat-pump", "pv", "load")
Status = Literal["open", "ordered", "settled", "expired", "cancelled"]

MAX_SLOT = 2**40
MAX_SLOTS = 96              # a request spans at most a day of 15-minute slots
MAX_CPS = 256
MAX_WH = 10**9
MAX_PRICE = 10**9
MAX_BUDGET = 10**15
MAX_ACTIVATIONS = 1024
MAX_TEXT = 64
ID_LEN = 32
SECRET_HASH_LEN = 32


# -- timeline ---------------------------------------------------------------------------------

def slot_start(slot: int, p: Params) -> int:
    return slot * p.slot_seconds


def slot_end(slot: int, p: Params) -> int:
    return (slot + 1) * p.slot_seconds


def settlement_deadline(slot: int, p: Params) -> int:
    """Readings (and reports) of ``slot`` until this block time; it settles at the first
    block at or after it (the market's deadline: same readings, same flags)."""
    return (slot + 1) * p.slot_seconds + p.settle_window_s


# -- configuration (genesis section ``flex``) -------------------------------------------------

@dataclass(frozen=True)
class Config(Record):
    """``flex/cfg``: the programme's terms (genesis section ``flex``; defaults when absent).

    ``deposit_micro_per_kwh``: a member's delivery deposit per offered kWh; ``tolerance_pct``:
    shortfall within this share of the activated energy is paid pro rata without penalty;
    ``baseline_band_pct``: a declared baseline more favourable than the reference by more
    than this share (at least ``baseline_band_min_wh``) is implausible (event, sanction);
    ``max_offers_per_request``: per participant.
    """

    deposit_micro_per_kwh: int = 250_000
    tolerance_pct: int = 10
    baseline_band_pct: int = 20
    baseline_band_min_wh: int = 50
    max_offers_per_request: int = 4


# -- state records -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Eligible(Record):
    """One connection point a request accepts offers from: its weight (effect on the
    congested quantity, ppm of the most effective cp), the most it may move per slot in the
    request's direction (its operating-envelope headroom) and the DSO's reference baseline
    per slot (net injection, Wh)."""

    cp: str
    weight_ppm: int
    max_wh: tuple[int, ...]
    reference_wh: tuple[int, ...]


@dataclass(frozen=True)
class Request(Record):
    """``flex/r/<id>``: a USEF FlexRequest (id = its transaction id) and its escrow.

    ``energies_wh``: effective flexibility needed per slot; ``budget_micro`` is locked from
    the DSO at request time, cut to the order's cost when it is ordered; ``escrow_micro`` is
    what is still locked. After the order: ``effective_wh`` ordered per slot, ``cost_micro``,
    and as slots settle ``settled`` (slots done), ``paid_micro``, ``penalties_micro``.
    """

    dso: bytes
    area: str
    violation: str
    evidence: bytes
    first_slot: int
    energies_wh: tuple[int, ...]
    direction: Direction
    price_cap_micro_per_kwh: int
    budget_micro: int
    baseline: BaselineMethod
    reference_method: str
    gate_s: int
    cps: tuple[Eligible, ...]
    status: Status
    escrow_micro: int
    offers: int
    effective_wh: tuple[int, ...] | None = optional()
    cost_micro: int | None = optional()
    settled: int | None = optional()
    paid_micro: int | None = optional()
    penalties_micro: int | None = optional()
    done_at: int | None = optional()
    """Block time it finished (settled, expired, cancelled): pruned a dispute window later."""

    @property
    def n_slots(self) -> int:
        return len(self.energies_wh)

    @property
    def last_slot(self) -> int:
        return self.first_slot + len(self.energies_wh) - 1

    def eligible(self, cp: str) -> Eligible | None:
        for e in self.cps:
            if e.cp == cp:
                return e
        return None


@dataclass(frozen=True)
class Offer(Record):
    """``flex/o/<request><offer id>``: a USEF FlexOffer (id = its transaction id).

    ``baseline_wh``: the member's declared prognosis per slot (net injection without
    activation); ``deposit_micro``: still locked. After the order ``activated_wh`` per slot
    (the FlexOrder); as slots settle ``delivered_wh`` (one entry per settled slot),
    ``paid_micro``, ``penalty_micro``; ``claims_wh``: what the member reported per slot
    (-1: no report).
    """

    owner: bytes
    cp: str
    device: str
    price_micro_per_kwh: int
    energies_wh: tuple[int, ...]
    baseline_wh: tuple[int, ...]
    deposit_micro: int
    deposit_rate: int
    activated_wh: tuple[int, ...] | None = optional()
    delivered_wh: tuple[int, ...] | None = optional()
    claims_wh: tuple[int, ...] | None = optional()
    paid_micro: int | None = optional()
    penalty_micro: int | None = optional()
    faults: int | None = optional()
    """Settled slots with an implausible declared baseline or a claim its meter does not
    show (each costs reputation at the offer's final settlement)."""


@dataclass(frozen=True)
class Device(Record):
    """One registered flexible device kind at a cp: what it can move in one slot (Wh)."""

    device: str
    power_wh: int


@dataclass(frozen=True)
class Devices(Record):
    """``flex/dev/<cp>``: the flexible devices the DSO registered at a cp (sorted)."""

    devices: tuple[Device, ...]

    def power_of(self, device: str) -> int | None:
        for d in self.devices:
            if d.device == device:
                return d.power_wh
        return None


@dataclass(frozen=True)
class VenBinding(Record):
    """``flex/ven/<ven address>``: an OpenADR VEN enrolled by ``member``: its name (the
    OAuth client id) and the SHA3-256 of its client secret."""

    member: bytes
    name: str
    secret_hash: bytes


# -- messages ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PostRequest(Record):
    """``flex/request`` (dso): a FlexRequest from the DSO's forecast power flow."""

    area: str
    violation: str
    evidence: bytes
    first_slot: int
    energies_wh: tuple[int, ...]
    direction: Direction
    price_cap_micro_per_kwh: int
    budget_micro: int
    baseline: BaselineMethod
    reference_method: str
    gate_s: int
    cps: tuple[Eligible, ...]


@dataclass(frozen=True)
class PostOffer(Record):
    """``flex/offer`` (member): flexibility of one device for a request."""

    request: bytes
    device: str
    price_micro_per_kwh: int
    energies_wh: tuple[int, ...]
    baseline_wh: tuple[int, ...]


@dataclass(frozen=True)
class Revoke(Record):
    """``flex/revoke`` (member): withdraw an offer before the gate (USEF: revocable until
    ordered)."""

    request: bytes
    offer: bytes


@dataclass(frozen=True)
class CancelRequest(Record):
    """``flex/cancel`` (dso): withdraw a request before its gate."""

    request: bytes


@dataclass(frozen=True)
class Activation(Record):
    """One offer's activation in an order: Wh per slot."""

    offer: bytes
    activated_wh: tuple[int, ...]


@dataclass(frozen=True)
class PostOrder(Record):
    """``flex/order`` (dso): the FlexOrder, computed outside execution with a power flow;
    validators accept it only if it is the merit-order selection for ``effective_wh``."""

    request: bytes
    effective_wh: tuple[int, ...]
    activations: tuple[Activation, ...]
    evidence: bytes


@dataclass(frozen=True)
class Report(Record):
    """``flex/report`` (member or its VEN): delivery the member claims for an activated
    slot (OpenADR report ``DELTA_USAGE``). Settlement pays on meters, never on claims."""

    request: bytes
    offer: bytes
    slot: int
    delivered_wh: int


@dataclass(frozen=True)
class RegisterDevice(Record):
    """``flex/resource`` (dso): what a cp's device can move per slot (0 removes it)."""

    cp: str
    device: str
    power_wh: int


@dataclass(frozen=True)
class EnrollVen(Record):
    """``flex/ven`` (member): enrol an OpenADR VEN: its name (OAuth client id), its
    reporting key and the hash of its client secret."""

    name: str
    alg: str
    pk: bytes
    secret_hash: bytes


# -- parsers -----------------------------------------------------------------------------------

def _id(body: Body, name: str) -> bytes:
    return require_bytes(body, name, exact=ID_LEN)


def _text(body: Body, name: str) -> str:
    return require_str(body, name, max_len=MAX_TEXT)


def _int_list(v: Any, name: str, n: int | None, lo: int, hi: int) -> tuple[int, ...]:
    if not isinstance(v, list) or not 0 < len(v) <= MAX_SLOTS or (n is not None and len(v) != n):
        want = f"{n}" if n is not None else f"1..{MAX_SLOTS}"
        raise InvalidBody(f"field {name!r} must be a list of {want} integers")
    for x in v:
        if not isinstance(x, int) or isinstance(x, bool) or not lo <= x <= hi:
            raise InvalidBody(f"field {name!r} holds integers in [{lo}, {hi}]")
    return tuple(v)


def _eligible(e: Any, n: int) -> Eligible:
    if not (isinstance(e, list) and len(e) == 4 and isinstance(e[0], str)
            and 0 < len(e[0]) <= MAX_TEXT and isinstance(e[1], int)
            and not isinstance(e[1], bool) and 1 <= e[1] <= 1_000_000):
        raise InvalidBody("a cps entry is [cp, weight_ppm 1..1e6, [max_wh] x n, "
                          "[reference_wh] x n]")
    return Eligible(e[0], e[1], _int_list(e[2], "max_wh", n, 0, MAX_WH),
                    _int_list(e[3], "reference_wh", n, -MAX_WH, MAX_WH))


def parse_request(body: Body) -> PostRequest:
    """Exactly ``area``, ``violation`` (text), ``evidence`` (32 bytes), ``first_slot``,
    ``energies_wh`` (1..96 entries in 0..1e9, not all 0), ``direction`` (up|down),
    ``price_cap_micro_per_kwh`` (0..1e9), ``budget_micro`` (1..1e15), ``baseline``
    (declared|reference), ``reference_method`` (text), ``gate_s`` and ``cps`` (1..256
    entries ``[cp, weight_ppm, max_wh[n], reference_wh[n]]``, each cp once)."""
    require_fields(body, REQUEST, ("area", "violation", "evidence", "first_slot", "energies_wh",
                                   "direction", "price_cap_micro_per_kwh", "budget_micro",
                                   "baseline", "reference_method", "gate_s", "cps"))
    energies = _int_list(body["energies_wh"], "energies_wh", None, 0, MAX_WH)
    if not any(energies):
        raise InvalidBody("field 'energies_wh' asks for no energy in any slot")
    n = len(energies)
    raw = body["cps"]
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_CPS:
        raise InvalidBody(f"field 'cps' must list 1..{MAX_CPS} connection points")
    cps = tuple(_eligible(e, n) for e in raw)
    if len({e.cp for e in cps}) != len(cps):
        raise InvalidBody("field 'cps' names a connection point twice")
    direction: Direction = "up" if require_str(body, "direction", DIRECTIONS) == "up" else "down"
    baseline: BaselineMethod = ("declared" if require_str(body, "baseline", BASELINES)
                                == "declared" else "reference")
    return PostRequest(
        area=_text(body, "area"), violation=_text(body, "violation"),
        evidence=_id(body, "evidence"), first_slot=require_int(body, "first_slot", maximum=MAX_SLOT),
        energies_wh=energies, direction=direction,
        price_cap_micro_per_kwh=require_int(body, "price_cap_micro_per_kwh", maximum=MAX_PRICE),
        budget_micro=require_int(body, "budget_micro", minimum=1, maximum=MAX_BUDGET),
        baseline=baseline, reference_method=_text(body, "reference_method"),
        gate_s=require_int(body, "gate_s", maximum=MAX_SLOT * 3600),
        cps=tuple(sorted(cps, key=lambda e: e.cp.encode())))


def parse_offer(body: Body) -> PostOffer:
    """Exactly ``request`` (32 bytes), ``device`` (battery|ev|heat-pump|pv|load),
    ``price_micro_per_kwh`` (0..1e9), ``energies_wh`` (0..1e9 per slot, not all 0) and
    ``baseline_wh`` (declared net injection per slot, same length)."""
    require_fields(body, OFFER, ("request", "device", "price_micro_per_kwh", "energies_wh",
                                 "baseline_wh"))
    energies = _int_list(body["energies_wh"], "energies_wh", None, 0, MAX_WH)
    if not any(energies):
        raise InvalidBody("field 'energies_wh' offers no energy in any slot")
    return PostOffer(_id(body, "request"), require_str(body, "device", DEVICES),
                     require_int(body, "price_micro_per_kwh", maximum=MAX_PRICE), energies,
                     _int_list(body["baseline_wh"], "baseline_wh", len(energies), -MAX_WH, MAX_WH))


def parse_revoke(body: Body) -> Revoke:
    """Exactly ``request`` and ``offer`` (32 bytes each)."""
    require_fields(body, REVOKE, ("request", "offer"))
    return Revoke(_id(body, "request"), _id(body, "offer"))


def parse_cancel(body: Body) -> CancelRequest:
    """Exactly ``request`` (32 bytes)."""
    require_fields(body, CANCEL, ("request",))
    return CancelRequest(_id(body, "request"))


def parse_order(body: Body) -> PostOrder:
    """Exactly ``request``, ``effective_wh`` (per slot, 0..1e9), ``activations`` (0..1024
    entries ``[offer id, [activated_wh] x n]``, each offer once, not all zero) and
    ``evidence`` (32 bytes: hash of the power-flow check)."""
    require_fields(body, ORDER, ("request", "effective_wh", "activations", "evidence"))
    effective = _int_list(body["effective_wh"], "effective_wh", None, 0, MAX_WH)
    raw = body["activations"]
    if not isinstance(raw, list) or len(raw) > MAX_ACTIVATIONS:
        raise InvalidBody(f"field 'activations' must be a list of at most {MAX_ACTIVATIONS}")
    acts: list[Activation] = []
    for a in raw:
        if not (isinstance(a, list) and len(a) == 2 and isinstance(a[0], bytes)
                and len(a[0]) == ID_LEN):
            raise InvalidBody("an activation is [offer id (32 bytes), [activated_wh] x n]")
        wh = _int_list(a[1], "activated_wh", len(effective), 0, MAX_WH)
        if not any(wh):
            raise InvalidBody("an activation activates nothing (leave the offer out)")
        acts.append(Activation(a[0], wh))
    if len({a.offer for a in acts}) != len(acts):
        raise InvalidBody("field 'activations' names an offer twice")
    return PostOrder(_id(body, "request"), effective,
                     tuple(sorted(acts, key=lambda a: a.offer)), _id(body, "evidence"))


def parse_report(body: Body) -> Report:
    """Exactly ``request``, ``offer`` (32 bytes), ``slot`` and ``delivered_wh`` (0..1e9)."""
    require_fields(body, REPORT, ("request", "offer", "slot", "delivered_wh"))
    return Report(_id(body, "request"), _id(body, "offer"),
                  require_int(body, "slot", maximum=MAX_SLOT),
                  require_int(body, "delivered_wh", maximum=MAX_WH))


def parse_resource(body: Body) -> RegisterDevice:
    """Exactly ``cp`` (text), ``device`` and ``power_wh`` (0..1e9; 0 removes)."""
    require_fields(body, RESOURCE, ("cp", "device", "power_wh"))
    return RegisterDevice(_text(body, "cp"), require_str(body, "device", DEVICES),
                          require_int(body, "power_wh", maximum=MAX_WH))


def parse_ven(body: Body) -> EnrollVen:
    """Exactly ``name`` (1..64 chars of ``[A-Za-z0-9_-]``: an OpenADR id), ``alg`` (ML-DSA),
    ``pk`` and ``secret_hash`` (32 bytes)."""
    require_fields(body, VEN, ("name", "alg", "pk", "secret_hash"))
    name = _text(body, "name")
    if not all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
        raise InvalidBody("field 'name' must match ^[A-Za-z0-9_-]+$ (an OpenADR id)")
    return EnrollVen(name, require_alg(body, "alg"), require_key(body, "pk"),
                     require_bytes(body, "secret_hash", exact=SECRET_HASH_LEN))


def parse_config(section: dict[str, Any]) -> Config:
    """The genesis section ``flex`` (every field optional; ``resources`` handled apart).

    Raises ``InvalidBody`` naming a field of the wrong type or range."""
    known = {"deposit_micro_per_kwh", "tolerance_pct", "baseline_band_pct",
             "baseline_band_min_wh", "max_offers_per_request", "resources"}
    extra = set(section) - known
    if extra:
        raise InvalidBody(f"genesis flex section has unknown fields {sorted(extra)}")
    d = Config()
    return Config(
        deposit_micro_per_kwh=require_int(section, "deposit_micro_per_kwh", maximum=MAX_PRICE)
        if "deposit_micro_per_kwh" in section else d.deposit_micro_per_kwh,
        tolerance_pct=require_int(section, "tolerance_pct", maximum=100)
        if "tolerance_pct" in section else d.tolerance_pct,
        baseline_band_pct=require_int(section, "baseline_band_pct", maximum=1000)
        if "baseline_band_pct" in section else d.baseline_band_pct,
        baseline_band_min_wh=require_int(section, "baseline_band_min_wh", maximum=MAX_WH)
        if "baseline_band_min_wh" in section else d.baseline_band_min_wh,
        max_offers_per_request=require_int(section, "max_offers_per_request", minimum=1,
                                           maximum=64)
        if "max_offers_per_request" in section else d.max_offers_per_request)
