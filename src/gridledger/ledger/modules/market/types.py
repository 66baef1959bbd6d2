"""Market types: the slot timeline, state records, messages and their stateless parsers,
sealed-bid commitments, escrow amounts.

Timeline of slot ``t`` (S = ``slot_seconds``; times are block ``slot_time`` seconds)::

    orders/cancel/replace/commit  reveal      clearing    delivery       readings      settlement
    ──────────────────────────┤ gate ├──────┤ rd ├ ─ ─ ┤ t·S ├───────┤ (t+1)·S ├─────┤ sd ├
                              gate = t·S − gate_closure_s
                                         rd = gate + reveal_window_s  (<= t·S)
                                                              sd = (t+1)·S + settle_window_s

Everything happens in the first block whose ``slot_time`` reaches the boundary; blocks are
cut from the ordered log, so every validator sees the same boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import InvalidBody
from gridledger.ledger import codec
from gridledger.ledger.module import Body
from gridledger.ledger.modules.market.errors import DuplicateEnvelope
from gridledger.ledger.params import Params, fee_rate_ceiling
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import require_bytes, require_fields, require_int, require_str
from gridledger.market import MAX_ENERGY_WH, MAX_PRICE_MICRO_PER_KWH, Mechanism
from gridledger.market.rounding import ceil_micro

ORDER = "market/order"
CANCEL = "market/cancel"
REPLACE = "market/replace"
COMMIT = "market/commit"
REVEAL = "market/reveal"
ENVELOPE = "market/envelope"

Side = Literal["buy", "sell"]
SIDES: tuple[Side, ...] = ("buy", "sell")
SlotStatus = Literal["cleared", "failed", "none", "settled"]
MAX_SLOT = 2**40
MAX_SALT_LEN = 64
MAX_ENVELOPES_PER_TX = 256
MAX_CP_LEN = 64
ID_LEN = 32


# -- timeline ----------------------------------------------------------------------------

def slot_start(slot: int, p: Params) -> int:
    return slot * p.slot_seconds


def gate_closure(slot: int, p: Params) -> int:
    """Orders, cancels, replaces and commitments for ``slot`` need ``slot_time`` < this."""
    return slot * p.slot_seconds - p.gate_closure_s


def reveal_deadline(slot: int, p: Params) -> int:
    """Reveals need gate <= ``slot_time`` < this; the first block at or after it clears."""
    return gate_closure(slot, p) + p.reveal_window_s


def settlement_deadline(slot: int, p: Params) -> int:
    """Readings need ``slot_time`` < this; the first block at or after it settles."""
    return (slot + 1) * p.slot_seconds + p.settle_window_s


# -- state records ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Order(Record):
    """``mkt/o/<slot><order_id>``: an order and the money the market holds for it (buy:
    escrow; sell: delivery deposit at ``deposit_rate`` micro/kWh). ``seq`` is its arrival
    (for the continuous book); ``filled_wh`` is set at clearing."""

    owner: bytes
    side: Side
    energy_wh: int
    price_micro_per_kwh: int
    held_micro: int
    deposit_rate: int
    seq: int
    sealed: bool
    filled_wh: int


@dataclass(frozen=True)
class Commitment(Record):
    """``mkt/c/<slot><commit_id>``: a sealed bid and its deposit."""

    owner: bytes
    commitment: bytes
    deposit_micro: int
    seq: int


@dataclass(frozen=True)
class Count(Record):
    """``mkt/n/<slot><owner>``: orders + commitments of one participant in a slot, and the
    side it trades (None while it has only sealed commitments)."""

    n: int
    side: Side | None


@dataclass(frozen=True)
class Trade(Record):
    """``mkt/t/<slot><index:4>``: one bilateral fill, and after settlement what flowed and
    what was paid (the ``optional`` fields, absent until then)."""

    buy_order: bytes
    sell_order: bytes
    buyer: bytes
    seller: bytes
    energy_wh: int
    price_micro_per_kwh: int
    payment_micro: int
    grid_fee_micro: int
    grid_fee_micro_per_kwh: int
    settled: bool
    delivered_wh: int | None = optional()
    received_wh: int | None = optional()
    replaced_wh: int | None = optional()
    paid_micro: int | None = optional()
    fee_paid_micro: int | None = optional()
    compensation_micro: int | None = optional()
    penalty_micro: int | None = optional()


@dataclass(frozen=True)
class SlotRecord(Record):
    """``mkt/slot/<slot>``: the slot's clearing (or failure) and, later, its settlement.

    A cleared slot always carries ``price_micro_per_kwh``, ``None`` when nothing traded or
    the mechanism prices each trade (``to_obj`` keeps that null, as the slot was written).
    """

    status: SlotStatus
    volume_wh: int
    bought_wh: int
    sold_wh: int
    trades: int
    mechanism: Mechanism | None = optional()
    price_micro_per_kwh: int | None = optional()
    orders: int | None = optional()
    clipped_wh: int | None = optional()
    cleared_at: int | None = optional()
    reason: str | None = optional()
    delivered_wh: int | None = optional()
    shortfall_wh: int | None = optional()
    settled_at: int | None = optional()

    def to_obj(self) -> dict[str, Any]:
        out = super().to_obj()
        if self.mechanism is not None:
            out["price_micro_per_kwh"] = self.price_micro_per_kwh
        return out


@dataclass(frozen=True)
class Retail(Record):
    """``mkt/rh/<addr>``: the retail hold locked against unsettled retail import, the recent
    peak import it is sized by, and unpaid retail carried as debt."""

    held_micro: int = 0
    peak_wh: int = 0
    debt_micro: int = 0


# -- messages --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlaceOrder(Record):
    """``market/order``: buy or sell up to ``energy_wh`` in ``slot`` at a limit price; the
    order id is the transaction hash."""

    slot: int
    side: Side
    energy_wh: int
    price_micro_per_kwh: int


@dataclass(frozen=True)
class Cancel(Record):
    """``market/cancel``: withdraw an order or a sealed commitment before the gate."""

    slot: int
    order_id: bytes


@dataclass(frozen=True)
class Replace(Record):
    """``market/replace``: new terms, same side, new id (the tx hash) and time priority."""

    slot: int
    order_id: bytes
    energy_wh: int
    price_micro_per_kwh: int


@dataclass(frozen=True)
class Commit(Record):
    """``market/commit``: a sealed bid (``order_commitment``); the commit id is the tx hash."""

    slot: int
    commitment: bytes


@dataclass(frozen=True)
class Reveal(Record):
    """``market/reveal``: open a commitment in the reveal window."""

    slot: int
    commit_id: bytes
    side: Side
    energy_wh: int
    price_micro_per_kwh: int
    salt: bytes


@dataclass(frozen=True)
class SetEnvelopes(Record):
    """``market/envelope`` (dso): ``(cp, import_max_wh, export_max_wh)`` per connection
    point for ``slot``; the last one per cp counts."""

    slot: int
    envelopes: tuple[tuple[str, int, int], ...]


def _slot(body: Body) -> int:
    return require_int(body, "slot", maximum=MAX_SLOT)


def _side(body: Body) -> Side:
    return "buy" if require_str(body, "side", choices=SIDES) == "buy" else "sell"


def _energy(body: Body) -> int:
    return require_int(body, "energy_wh", minimum=1, maximum=MAX_ENERGY_WH)


def _price(body: Body) -> int:
    return require_int(body, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH)


def parse_order(body: Body) -> PlaceOrder:
    """Exactly ``slot`` (0..2^40), ``side``, ``energy_wh`` (1..1e9), ``price_micro_per_kwh``
    (0..1e9). Raises ``InvalidBody``."""
    require_fields(body, ORDER, ("slot", "side", "energy_wh", "price_micro_per_kwh"))
    return PlaceOrder(_slot(body), _side(body), _energy(body), _price(body))


def parse_cancel(body: Body) -> Cancel:
    """Exactly ``slot`` and a 32-byte ``order_id``. Raises ``InvalidBody``."""
    require_fields(body, CANCEL, ("slot", "order_id"))
    return Cancel(_slot(body), require_bytes(body, "order_id", exact=ID_LEN))


def parse_replace(body: Body) -> Replace:
    """Exactly ``slot``, ``order_id``, ``energy_wh``, ``price_micro_per_kwh``."""
    require_fields(body, REPLACE, ("slot", "order_id", "energy_wh", "price_micro_per_kwh"))
    return Replace(_slot(body), require_bytes(body, "order_id", exact=ID_LEN), _energy(body),
                   _price(body))


def parse_commit(body: Body) -> Commit:
    """Exactly ``slot`` and a 32-byte ``commitment``."""
    require_fields(body, COMMIT, ("slot", "commitment"))
    return Commit(_slot(body), require_bytes(body, "commitment", exact=ID_LEN))


def parse_reveal(body: Body) -> Reveal:
    """Exactly ``slot``, ``commit_id``, ``side``, ``energy_wh``, ``price_micro_per_kwh`` and a
    ``salt`` of at most 64 bytes."""
    require_fields(body, REVEAL, ("slot", "commit_id", "side", "energy_wh",
                                  "price_micro_per_kwh", "salt"))
    return Reveal(_slot(body), require_bytes(body, "commit_id", exact=ID_LEN), _side(body),
                  _energy(body), _price(body), require_bytes(body, "salt", max_len=MAX_SALT_LEN))


def parse_envelope(body: Body) -> SetEnvelopes:
    """Exactly ``slot`` and 1..256 ``envelopes`` ``[cp, import_max_wh, export_max_wh]``
    (cp 1..64 chars, Wh in 0..1e9), each cp once. Raises ``InvalidBody`` or
    ``duplicate-envelope``."""
    require_fields(body, ENVELOPE, ("slot", "envelopes"))
    slot = _slot(body)
    envs = body["envelopes"]
    if not isinstance(envs, list) or not 0 < len(envs) <= MAX_ENVELOPES_PER_TX:
        raise InvalidBody(f"field 'envelopes' must be a list of 1..{MAX_ENVELOPES_PER_TX} entries")
    out: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for e in envs:
        ok = (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)
              and 0 < len(e[0]) <= MAX_CP_LEN
              and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_ENERGY_WH
                      for x in e[1:]))
        if not ok:
            raise InvalidBody(f"envelope entry must be [cp, import_max_wh, export_max_wh] with "
                        f"0 <= Wh <= {MAX_ENERGY_WH}")
        if e[0] in seen:
            raise DuplicateEnvelope(f"cp {e[0]!r} twice")
        seen.add(e[0])
        out.append((e[0], e[1], e[2]))
    return SetEnvelopes(slot, tuple(out))


# -- sealed bids ---------------------------------------------------------------------------

def order_commitment(owner: bytes, slot: int, side: str, energy_wh: int,
                     price_micro_per_kwh: int, salt: bytes) -> bytes:
    """The hash a sealed bid commits to (``market/commit``) and ``market/reveal`` opens.

    The owner is inside the hash so nobody can copy another's commitment and reveal it as
    their own; the salt (>= 16 random bytes, client-side) stops guessing small order spaces.
    """
    return tagged_hash("gl/order-commit", codec.encode({
        "energy_wh": energy_wh, "owner": owner, "price_micro_per_kwh": price_micro_per_kwh,
        "side": side, "slot": slot}), salt)


# -- escrow ----------------------------------------------------------------------------------

def max_fee_rate(p: Params) -> int:
    """The highest grid-fee rate any trade can carry: the highest flat + time-of-use rate
    (the genesis upper bound when the DSO may change fees at run time) + the highest
    network-distance fee (so a buyer's escrow always covers its fee line)."""
    distance = max([p.grid_fee_default_distance_micro_per_kwh]
                   + [fee for _a, _b, fee in p.grid_fee_distance_micro_per_kwh])
    return fee_rate_ceiling(p) + distance


def buyer_escrow_micro(energy_wh: int, limit_micro_per_kwh: int, p: Params) -> int:
    """What a buy order locks: the most it can pay at its limit plus the most grid fee, each
    rounded up (an order's total may round up by less than a micro-unit:
    ``gridledger.market.rounding``)."""
    return (ceil_micro(energy_wh * limit_micro_per_kwh)
            + ceil_micro(energy_wh * max_fee_rate(p)))


def seller_deposit_micro(energy_wh: int, rate_micro_per_kwh: int) -> int:
    """A sell order's delivery deposit for ``energy_wh``, rounded up so it covers the
    compensation its buyers can be owed (each rounded by the carry rule)."""
    return ceil_micro(energy_wh * rate_micro_per_kwh)


def seller_deposit_rate(p: Params, deposit_pct: int) -> int:
    """Delivery-deposit rate per kWh, scaled up by the seller's sanction tier."""
    return p.deposit_micro_per_kwh * deposit_pct // 100
