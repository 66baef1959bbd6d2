"""Sealed double auctions: uniform price (default) and pay-as-bid, on one merit-order match.

Both mechanisms accept the same, welfare-maximising volume (the competitive equilibrium
quantity of the stepwise supply and demand curves) and fill orders in merit order; they
differ only in the price of each bilateral trade.

* **Uniform price**: every trade at one price ``p`` from the equilibrium price interval
  ``[lo, hi]``; the rule picks the midpoint, rounded down, ``p = (lo + hi) // 2`` (the
  k = 1/2 double auction of Chatterjee & Samuelson 1983 / Rustichini, Satterthwaite &
  Williams 1994, Econometrica 62(5)).
* **Pay-as-bid** (discriminatory): each matched pair trades at the midpoint of its own two
  limits, ``(bid + ask) // 2``, so each side pays/receives a price derived from its own bid
  while buyer and seller still see the same amount (budget balanced; no auctioneer surplus).

See docs/market-clearing.md for the equilibrium interval and the proofs of the properties
the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gridledger.market._book import (
    I64,
    Book,
    Envelope,
    admit_energy,
    build_result,
    to_book,
)
from gridledger.market.fees import GridFees
from gridledger.market.types import ClearingResult, Order


@dataclass(frozen=True, slots=True)
class MeritMatch:
    """Bilateral fills of the efficient volume, in merit order (private result)."""

    t_buy: I64
    t_sell: I64
    t_energy: I64
    volume_wh: int
    price_lo: int | None
    """Lowest competitive-equilibrium price; None when nothing trades."""
    price_hi: int | None
    """Highest competitive-equilibrium price; None when nothing trades."""


_EMPTY = np.zeros(0, dtype=np.int64)


def match_merit_order(book: Book, admitted: I64) -> MeritMatch:
    """Match the efficient volume and pair fills in merit order.

    Bids sorted by price descending, asks ascending, ties by order id. With cumulative
    demand ``D_i`` and supply ``S_j`` the traded volume is ``Q = max_i min(D_i, S(b_i))``
    where ``S(p)`` is the supply offered at or below ``p``: the largest ``Q`` whose marginal
    unit has bid >= ask, i.e. every unit with non-negative surplus trades (maximum welfare,
    and among welfare maxima the largest volume).
    """
    live = admitted > 0
    buy = np.flatnonzero(book.is_buy & live)
    sell = np.flatnonzero(~book.is_buy & live)
    if buy.size == 0 or sell.size == 0:
        return MeritMatch(_EMPTY, _EMPTY, _EMPTY, 0, None, None)
    buy = buy[np.argsort(book.merit_key[buy], kind="stable")]
    sell = sell[np.argsort(book.merit_key[sell], kind="stable")]
    pb, pa = book.price[buy], book.price[sell]
    d_cum, s_cum = np.cumsum(admitted[buy]), np.cumsum(admitted[sell])

    n_asks_at_or_below = np.searchsorted(pa, pb, side="right")
    supply_at_bid = np.where(
        n_asks_at_or_below > 0, s_cum[np.maximum(n_asks_at_or_below - 1, 0)], 0
    )
    volume = int(np.minimum(d_cum, supply_at_bid).max())
    if volume == 0:
        return MeritMatch(_EMPTY, _EMPTY, _EMPTY, 0, None, None)

    # Marginal accepted bid/ask hold unit Q; first rejected bid/ask hold unit Q+1. Any price
    # in [max(a_m, b_r), min(b_m, a_r)] clears: accepted sides are within their limits and no
    # rejected order (or rejected part of a marginal order) would trade at it. The interval
    # is non-empty because unit Q has b_m >= a_m and unit Q+1 has b_r < a_r.
    b_m = int(pb[np.searchsorted(d_cum, volume, side="left")])
    a_m = int(pa[np.searchsorted(s_cum, volume, side="left")])
    lo, hi = a_m, b_m
    if volume < int(d_cum[-1]):
        lo = max(lo, int(pb[np.searchsorted(d_cum, volume + 1, side="left")]))
    if volume < int(s_cum[-1]):
        hi = min(hi, int(pa[np.searchsorted(s_cum, volume + 1, side="left")]))

    # Pairing: cut [0, Q] at every cumulative breakpoint of either side; segment k is one
    # trade between the bid and the ask that hold its last unit.
    ends = np.sort(np.concatenate((d_cum[d_cum < volume], s_cum[s_cum < volume], [volume])))
    keep = np.ones(len(ends), dtype=np.bool_)
    keep[1:] = ends[1:] != ends[:-1]  # a breakpoint shared by both sides cuts once
    ends = ends[keep]
    energy = np.diff(ends, prepend=np.int64(0))
    t_buy = buy[np.searchsorted(d_cum, ends, side="left")]
    t_sell = sell[np.searchsorted(s_cum, ends, side="left")]
    return MeritMatch(t_buy, t_sell, energy, volume, lo, hi)


def clear_uniform(
    orders: Sequence[Order],
    *,
    envelopes: Mapping[bytes, Envelope] | None = None,
    fees: GridFees | None = None,
    slot_of_day: int = 0,
) -> ClearingResult:
    """Clear a sealed book as a uniform-price double auction.

    Args:
        orders: the slot's orders; their order does not matter.
        envelopes: owner -> ``(import_max_wh, export_max_wh)``, applied before clearing
            (see ``admit_energy``).
        fees: network charges added to each trade (paid by the buyer to the DSO).
        slot_of_day: index into ``fees.tou_micro_per_kwh``.

    Returns:
        The result; ``price_micro_per_kwh`` is ``(lo + hi) // 2`` of the equilibrium price
        interval, or ``None`` when nothing trades.

    Raises:
        MarketInputError: malformed or out-of-range orders, envelopes or slot.
    """
    book = to_book(orders)
    admitted = admit_energy(book, envelopes)
    m = match_merit_order(book, admitted)
    price = None if m.price_lo is None or m.price_hi is None else (m.price_lo + m.price_hi) // 2
    t_price = np.full(len(m.t_energy), price if price is not None else 0, dtype=np.int64)
    return build_result(
        book, "uniform", price, admitted, m.t_buy, m.t_sell, m.t_energy, t_price, fees, slot_of_day
    )


def clear_pay_as_bid(
    orders: Sequence[Order],
    *,
    envelopes: Mapping[bytes, Envelope] | None = None,
    fees: GridFees | None = None,
    slot_of_day: int = 0,
) -> ClearingResult:
    """Clear a sealed book pay-as-bid: merit-order matching, each pair at its own midpoint.

    Same volume and fills as ``clear_uniform``; trade ``k`` is priced
    ``(bid_k + ask_k) // 2`` (floor), between the two limits. ``price_micro_per_kwh`` of the
    result is ``None``. Arguments and errors as ``clear_uniform``.
    """
    book = to_book(orders)
    admitted = admit_energy(book, envelopes)
    m = match_merit_order(book, admitted)
    t_price = (book.price[m.t_buy] + book.price[m.t_sell]) // 2
    return build_result(
        book, "pay_as_bid", None, admitted, m.t_buy, m.t_sell, m.t_energy, t_price, fees, slot_of_day
    )
