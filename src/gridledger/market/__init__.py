"""Market clearing: pure, deterministic, integer-only functions run inside block execution.

Public surface (everything else is private)::

    Order, Trade, ClearingResult, MarketInputError, check_order     (types)
    clear_slot(orders, mechanism="uniform", *, envelopes, fees, slot_of_day)
    clear_uniform / clear_pay_as_bid / clear_continuous              (same keyword args)
    GridFees                                                         (network charges)
    RetailTariff, Bill, compute_bills                                (fallback and savings)
    round_forest, round_grouped, carry_round, ceil_micro             (money to the micro-unit)

No clock, no randomness, no floats in results, no dependence on mapping iteration order; the
sealed auctions do not depend on the order of ``orders`` either. One implementation (numpy
int64) serves the ledger and the benchmarks. See docs/market-clearing.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gridledger.market._book import Envelope
from gridledger.market.auction import clear_pay_as_bid, clear_uniform
from gridledger.market.continuous import clear_continuous
from gridledger.market.fees import GridFees
from gridledger.market.retail import Bill, RetailTariff, compute_bills
from gridledger.market.rounding import (
    carry_round,
    ceil_micro,
    round_forest,
    round_grouped,
)
from gridledger.market.types import (
    MAX_ENERGY_WH,
    MAX_ORDERS,
    MAX_PRICE_MICRO_PER_KWH,
    ClearingResult,
    MarketInputError,
    Mechanism,
    Order,
    Side,
    Trade,
    check_order,
)

__all__ = [
    "MAX_ENERGY_WH",
    "MAX_ORDERS",
    "MAX_PRICE_MICRO_PER_KWH",
    "Bill",
    "ClearingResult",
    "Envelope",
    "GridFees",
    "MarketInputError",
    "Mechanism",
    "Order",
    "RetailTariff",
    "Side",
    "Trade",
    "carry_round",
    "ceil_micro",
    "check_order",
    "clear_continuous",
    "clear_pay_as_bid",
    "clear_slot",
    "clear_uniform",
    "compute_bills",
    "round_forest",
    "round_grouped",
]

_MECHANISMS = {
    "uniform": clear_uniform,
    "pay_as_bid": clear_pay_as_bid,
    "continuous": clear_continuous,
}


def clear_slot(
    orders: Sequence[Order],
    mechanism: Mechanism = "uniform",
    *,
    envelopes: Mapping[bytes, Envelope] | None = None,
    fees: GridFees | None = None,
    slot_of_day: int = 0,
) -> ClearingResult:
    """Clear one slot's orders with ``mechanism`` (see the ``clear_*`` functions).

    Raises:
        MarketInputError: unknown mechanism, or bad orders / envelopes / slot.
    """
    fn = _MECHANISMS.get(mechanism)
    if fn is None:
        raise MarketInputError(f"unknown mechanism {mechanism!r}")
    return fn(orders, envelopes=envelopes, fees=fees, slot_of_day=slot_of_day)
