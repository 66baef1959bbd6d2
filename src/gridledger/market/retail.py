"""Retail fallback and bills: market outcome vs the no-market status quo.

Whatever the market did not match is settled with the grid (the retail supplier): unmatched
buy energy is imported at the retail tariff, unmatched sell energy exported at the feed-in
price. This is unconditional, whatever the order's limit: the household still consumes and
its panels still export; the limit only governs peer-to-peer trades. Energy clipped by an
operating envelope cannot flow and is settled nowhere.

The baseline bill puts the same energy (market + retail) entirely at tariff / feed-in, so
``savings_micro = baseline_total_micro - total_micro`` isolates what the market changed. The
retail tariff is taken as all-inclusive (energy + network), as on retail bills, so the
market bill's separate grid-fee line is part of the comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gridledger.market.types import MAX_PRICE_MICRO_PER_KWH, ClearingResult, _check_int
from gridledger.types import payment_micro


@dataclass(frozen=True, slots=True)
class RetailTariff:
    """The grid's prices for energy the market did not match."""

    import_micro_per_kwh: int
    """Retail tariff a consumer pays per kWh imported (all-inclusive)."""
    feed_in_micro_per_kwh: int
    """Price a producer receives per kWh exported to the grid."""

    def __post_init__(self) -> None:
        top = MAX_PRICE_MICRO_PER_KWH
        _check_int("import_micro_per_kwh", self.import_micro_per_kwh, 0, top)
        _check_int("feed_in_micro_per_kwh", self.feed_in_micro_per_kwh, 0, top)


@dataclass(frozen=True, slots=True)
class Bill:
    """One participant's bill for one slot. Positive totals are owed by the participant."""

    owner: bytes
    market_bought_wh: int
    market_sold_wh: int
    market_energy_cost_micro: int
    """Paid to sellers for energy bought in the market."""
    market_energy_revenue_micro: int
    """Received from buyers for energy sold in the market."""
    grid_fee_micro: int
    """Network charge on market purchases, owed to the DSO (a separate bill line)."""
    retail_bought_wh: int
    retail_cost_micro: int
    retail_sold_wh: int
    retail_revenue_micro: int
    total_micro: int
    """Net amount owed with the market: costs + fees - revenues."""
    baseline_total_micro: int
    """Net amount owed if all of the same energy had traded with the grid."""

    @property
    def savings_micro(self) -> int:
        """What the market saved this participant (negative: it lost)."""
        return self.baseline_total_micro - self.total_micro


def compute_bills(result: ClearingResult, tariff: RetailTariff) -> Mapping[bytes, Bill]:
    """Bill every participant of a cleared slot, with the retail fallback and the baseline.

    Args:
        result: a clearing result (any mechanism).
        tariff: retail import tariff and feed-in price.

    Returns:
        owner -> ``Bill``, in owner byte order, for every owner that traded or has
        unmatched energy.
    """
    # Per owner: [bought, sold, cost, revenue, fee, retail_bought, retail_sold]
    acc: dict[bytes, list[int]] = {}
    for t in result.trades:
        b = acc.setdefault(t.buyer, [0] * 7)
        b[0] += t.energy_wh
        b[2] += t.payment_micro
        b[4] += t.grid_fee_micro
        s = acc.setdefault(t.seller, [0] * 7)
        s[1] += t.energy_wh
        s[3] += t.payment_micro
    for o in result.unmatched:
        a = acc.setdefault(o.owner, [0] * 7)
        a[5 if o.side == "buy" else 6] += o.energy_wh
    bills: dict[bytes, Bill] = {}
    imp, feed = tariff.import_micro_per_kwh, tariff.feed_in_micro_per_kwh
    for owner in sorted(acc):
        bought, sold, cost, revenue, fee, r_bought, r_sold = acc[owner]
        r_cost = payment_micro(r_bought, imp)
        r_rev = payment_micro(r_sold, feed)
        baseline = payment_micro(bought + r_bought, imp) - payment_micro(sold + r_sold, feed)
        bills[owner] = Bill(
            owner=owner,
            market_bought_wh=bought,
            market_sold_wh=sold,
            market_energy_cost_micro=cost,
            market_energy_revenue_micro=revenue,
            grid_fee_micro=fee,
            retail_bought_wh=r_bought,
            retail_cost_micro=r_cost,
            retail_sold_wh=r_sold,
            retail_revenue_micro=r_rev,
            total_micro=cost + fee + r_cost - revenue - r_rev,
            baseline_total_micro=baseline,
        )
    return MappingProxyType(bills)
