"""Market types: the slot timeline, order bodies, sealed-bid commitments, escrow amounts.

Timeline of slot ``t`` (S = ``slot_seconds``; times are block ``slot_time`` seconds)::

    orders/cancel/replace/commit   reveal          clearing      delivery         readings        settlement
    ───────────────────────────┤ gate ├────────┤ rd ├ ─ ─ ─ ┤ t·S ├─────────┤ (t+1)·S ├────────┤ sd ├
                               gate = t·S − gate_closure_s
                                           rd = gate + reveal_window_s  (<= t·S)
                                                                                    sd = (t+1)·S + settle_window_s

Everything happens in the first block whose ``slot_time`` reaches the boundary; blocks are
cut from the ordered log, so every validator sees the same boundaries.
"""

from __future__ import annotations

from typing import Any, Literal

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import InvalidBody
from gridledger.ledger import codec
from gridledger.ledger.modules.governance.types import Params
from gridledger.ledger.validate import require_int, require_str
from gridledger.market import MAX_ENERGY_WH, MAX_PRICE_MICRO_PER_KWH
from gridledger.market.rounding import ceil_micro

Side = Literal["buy", "sell"]
SIDES: tuple[str, ...] = ("buy", "sell")
MAX_SALT_LEN = 64
MAX_ENVELOPES_PER_TX = 256


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


def slot_of(slot_time: int, p: Params) -> int:
    """The slot a block time falls in (used for reputation bookkeeping)."""
    return slot_time // p.slot_seconds


def slot_of_day(slot: int, p: Params) -> int:
    """Index into the time-of-use fee table (0 when there is none)."""
    return slot % len(p.grid_fee_tou_micro_per_kwh) if p.grid_fee_tou_micro_per_kwh else 0


# -- bodies --------------------------------------------------------------------------------

def require_exact_fields(body: dict[str, Any], kind: str, names: set[str]) -> None:
    if set(body) != names:
        raise InvalidBody(f"{kind} has exactly the fields {', '.join(sorted(names))}")


def parse_slot(body: dict[str, Any]) -> int:
    return require_int(body, "slot", maximum=2**40)


def parse_side(body: dict[str, Any]) -> Side:
    side = require_str(body, "side", choices=SIDES)
    return "buy" if side == "buy" else "sell"


def parse_energy(body: dict[str, Any]) -> int:
    return require_int(body, "energy_wh", minimum=1, maximum=MAX_ENERGY_WH)


def parse_price(body: dict[str, Any]) -> int:
    return require_int(body, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH)


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
    """The highest grid-fee rate any trade can carry: flat + highest time-of-use entry +
    highest network-distance fee (so a buyer's escrow always covers its fee line)."""
    distance = max([p.grid_fee_default_distance_micro_per_kwh]
                   + [fee for _a, _b, fee in p.grid_fee_distance_micro_per_kwh])
    return p.grid_fee_flat_micro_per_kwh + max(p.grid_fee_tou_micro_per_kwh, default=0) + distance


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
