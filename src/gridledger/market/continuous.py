"""Continuous limit order book with price-time priority.

"Time" is the position of the order in ``orders``: the sequence of transactions in the
block(s), which consensus has already fixed, so the outcome is deterministic. Each arriving
order is matched against resting orders of the other side, best price first and, at equal
price, earliest first; each fill trades at the *resting* order's price (standard exchange
practice, e.g. the matching rules of Euronext/EPEX continuous intraday). Whatever remains of
an arriving order rests in the book. At gate closure resting orders are unmatched.

Unlike the sealed auctions, the result depends on the sequence by design.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

import numpy as np

from gridledger.market._book import I64, Envelope, admit_energy, build_result, to_book
from gridledger.market.fees import GridFees
from gridledger.market.types import ClearingResult, Order


def clear_continuous(
    orders: Sequence[Order],
    *,
    envelopes: Mapping[bytes, Envelope] | None = None,
    fees: GridFees | None = None,
    slot_of_day: int = 0,
) -> ClearingResult:
    """Run ``orders`` in sequence through a price-time priority order book.

    Args:
        orders: the slot's orders in consensus (block) order.
        envelopes, fees, slot_of_day: as ``clear_uniform``. Envelopes clip each owner's
            orders in price priority before matching (the same rule as the auctions).

    Returns:
        Trades in execution order; ``price_micro_per_kwh`` is ``None``.

    Raises:
        MarketInputError: malformed or out-of-range orders, envelopes or slot.
    """
    book = to_book(orders)
    admitted = admit_energy(book, envelopes)
    remaining = admitted.tolist()
    prices = book.price.tolist()
    is_buy = book.is_buy.tolist()
    # Heaps of (price key, sequence, index): the sequence number is unique, so ties in price
    # resolve by arrival and heap order never compares anything else.
    bids: list[tuple[int, int, int]] = []  # key -price: best (highest) bid on top
    asks: list[tuple[int, int, int]] = []  # key price: best (lowest) ask on top
    t_buy: list[int] = []
    t_sell: list[int] = []
    t_energy: list[int] = []
    t_price: list[int] = []
    for i in range(len(prices)):
        rem = remaining[i]
        if rem == 0:
            continue
        p = prices[i]
        if is_buy[i]:
            while rem and asks and asks[0][0] <= p:
                j = asks[0][2]
                q = min(rem, remaining[j])
                t_buy.append(i)
                t_sell.append(j)
                t_energy.append(q)
                t_price.append(prices[j])
                rem -= q
                remaining[j] -= q
                if remaining[j] == 0:
                    heapq.heappop(asks)
            if rem:
                heapq.heappush(bids, (-p, i, i))
        else:
            while rem and bids and -bids[0][0] >= p:
                j = bids[0][2]
                q = min(rem, remaining[j])
                t_buy.append(j)
                t_sell.append(i)
                t_energy.append(q)
                t_price.append(prices[j])
                rem -= q
                remaining[j] -= q
                if remaining[j] == 0:
                    heapq.heappop(bids)
            if rem:
                heapq.heappush(asks, (p, i, i))
        remaining[i] = rem

    def arr(xs: list[int]) -> I64:
        return np.array(xs, dtype=np.int64)

    return build_result(
        book,
        "continuous",
        None,
        admitted,
        arr(t_buy),
        arr(t_sell),
        arr(t_energy),
        arr(t_price),
        fees,
        slot_of_day,
    )
