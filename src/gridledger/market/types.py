"""Orders, trades and clearing results: the market's data, integers only.

Units follow ``gridledger.types``: energy in Wh, prices in micro-units per kWh, money in
micro-units, every amount of money computed by ``payment_micro``.

The bounds below keep every intermediate of the vectorised clearing inside int64
(``energy_wh * price`` <= 1e18, sort keys ``price * n_orders`` <= 1e16, fee rates summed over
three components <= 3e9, so ``energy_wh * fee`` <= 3e18 < 2**63 ~ 9.22e18). They are far
beyond any physical slot (1 GWh in 15 minutes is a 4 GW connection point), so an order that
breaks them is a bug or an attack and is rejected with a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from gridledger.errors import GridLedgerError

Side = Literal["buy", "sell"]
Mechanism = Literal["uniform", "pay_as_bid", "continuous"]

ORDER_ID_LEN = 32
"""Order ids are 32-byte hashes; their byte order is the deterministic tie-break."""
MAX_ENERGY_WH = 10**9
"""Largest energy of one order (1 GWh per slot)."""
MAX_PRICE_MICRO_PER_KWH = 10**9
"""Largest limit price, and largest value of each grid-fee component (1000 units/kWh)."""
MAX_ORDERS = 10_000_000
"""Largest order book one clearing accepts."""
MAX_ADDRESS_LEN = 64
"""Longest owner address accepted (GridLedger addresses are 32 bytes)."""


class MarketInputError(GridLedgerError, ValueError):
    """An order, order book, envelope, fee or tariff is malformed or out of range."""


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    # bool is an int subclass and numpy integers are not ints: both are refused so results
    # are plain Python ints and ``True`` never slips in as 1 Wh.
    if type(value) is not int:
        raise MarketInputError(f"{name} must be int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise MarketInputError(f"{name}={value} outside [{lo}, {hi}]")


def check_order(order: Order) -> None:
    """Check one order's fields and bounds.

    Raises:
        MarketInputError: naming the first bad field. The ledger module can call this at
            ``check_tx`` time so nothing that would fail clearing ever enters a block.
    """
    oid = order.order_id
    if type(oid) is not bytes or len(oid) != ORDER_ID_LEN:
        raise MarketInputError(f"order_id must be {ORDER_ID_LEN} bytes")
    owner = order.owner
    if type(owner) is not bytes or not 0 < len(owner) <= MAX_ADDRESS_LEN:
        raise MarketInputError(f"owner must be 1..{MAX_ADDRESS_LEN} bytes")
    if order.side not in ("buy", "sell"):
        raise MarketInputError(f"side must be 'buy' or 'sell', got {order.side!r}")
    _check_int("energy_wh", order.energy_wh, 1, MAX_ENERGY_WH)
    _check_int("price_micro_per_kwh", order.price_micro_per_kwh, 0, MAX_PRICE_MICRO_PER_KWH)


@dataclass(frozen=True, slots=True)
class Order:
    """A limit order for one slot: buy or sell up to ``energy_wh`` at ``price_micro_per_kwh``.

    A buy limit is the most the buyer pays per kWh, a sell limit the least the seller accepts.
    """

    order_id: bytes
    owner: bytes
    side: Side
    energy_wh: int
    price_micro_per_kwh: int

    def __post_init__(self) -> None:
        check_order(self)


class Trade(NamedTuple):
    """One bilateral fill: ``buyer`` pays ``payment_micro`` to ``seller`` plus ``grid_fee_micro``
    to the DSO (``grid_fee_micro_per_kwh`` is the fee rate of this pair and slot).

    Both amounts are the exact ``energy_wh * rate / 1000`` rounded down or up by the carry
    rule of ``gridledger.market.rounding``: each order's total over its trades is its exact
    total rounded down or up, so many small trades never add up to a rounding loss.

    A NamedTuple rather than a dataclass: a 1M-order book yields up to ~1M trades and tuple
    construction is several times cheaper; it is just as immutable.
    """

    buy_order_id: bytes
    sell_order_id: bytes
    buyer: bytes
    seller: bytes
    energy_wh: int
    price_micro_per_kwh: int
    payment_micro: int
    grid_fee_micro: int
    grid_fee_micro_per_kwh: int = 0


class WhByOrder(Mapping[bytes, int]):
    """Read-only ``order_id -> Wh``, iterated in order-id byte order.

    Backed by two sorted numpy columns instead of a dict: a dict of 1M random 32-byte keys
    costs most of a second to build, this costs nothing, and a lookup is a binary search.
    Compares equal to any mapping with the same items.
    """

    __slots__ = ("_ids", "_wh")

    def __init__(self, sorted_ids: NDArray[np.bytes_], wh: NDArray[np.int64]) -> None:
        # sorted_ids: 'S32' column in byte order (all ids exactly 32 bytes); wh: aligned.
        sorted_ids.flags.writeable = False
        wh.flags.writeable = False
        self._ids = sorted_ids
        self._wh = wh

    @staticmethod
    def _key(raw: bytes) -> bytes:
        # numpy drops trailing NUL bytes of 'S' items; every id is exactly 32 bytes, so
        # padding back restores it.
        return bytes(raw).ljust(ORDER_ID_LEN, b"\0")

    def __getitem__(self, key: bytes) -> int:
        if type(key) is bytes and len(key) == ORDER_ID_LEN and len(self._ids):
            i = int(np.searchsorted(self._ids, key))
            if i < len(self._ids) and self._key(self._ids[i]) == key:
                return int(self._wh[i])
        raise KeyError(key)

    def __iter__(self) -> Iterator[bytes]:
        return map(self._key, self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        items = ", ".join(f"{k.hex()[:12]}..: {v}" for k, v in list(self.items())[:4])
        more = ", ..." if len(self) > 4 else ""
        return f"WhByOrder({{{items}{more}}}, n={len(self)})"


def _empty_mapping() -> Mapping[bytes, int]:
    return WhByOrder(np.zeros(0, dtype=f"S{ORDER_ID_LEN}"), np.zeros(0, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class ClearingResult:
    """The outcome of clearing one slot.

    Attributes:
        mechanism: which mechanism produced it.
        price_micro_per_kwh: the uniform clearing price; ``None`` when nothing traded or the
            mechanism prices each trade separately (pay-as-bid, continuous).
        trades: bilateral fills, in merit order (auctions) or execution order (continuous).
        filled_wh_by_order: every order id -> Wh filled (0 if none), in order-id order.
        unmatched: the unfilled remainder of every order that is not fully filled (after
            envelope clipping), as an ``Order`` with the remaining ``energy_wh``, in order-id
            order. This is what the retail fallback settles.
        clipped_wh_by_order: Wh removed by operating envelopes, only orders clipped > 0. The
            clipped energy cannot flow at all, so it is neither traded nor retail-settled.
    """

    mechanism: Mechanism
    price_micro_per_kwh: int | None
    trades: tuple[Trade, ...]
    filled_wh_by_order: Mapping[bytes, int]
    unmatched: tuple[Order, ...]
    clipped_wh_by_order: Mapping[bytes, int] = field(default_factory=_empty_mapping)

    @property
    def volume_wh(self) -> int:
        """Energy traded in the market (each Wh counted once)."""
        return sum(t.energy_wh for t in self.trades)

    @property
    def payment_total_micro(self) -> int:
        """Money paid by buyers to sellers for energy."""
        return sum(t.payment_micro for t in self.trades)

    @property
    def grid_fee_total_micro(self) -> int:
        """Network charges owed to the DSO."""
        return sum(t.grid_fee_micro for t in self.trades)
