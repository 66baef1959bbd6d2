"""Rounding money to whole micro-units without losing it one trade at a time.

The exact value of ``energy_wh`` at ``price_micro_per_kwh`` is ``energy_wh * price`` nano-units
(10^-9 of the currency, i.e. 1/1000 of a micro-unit). Flooring each trade on its own loses up
to one micro-unit per trade, so an order filled by 500 trades of 2 Wh could receive up to 500
micro-units less than its limit price times its energy. The rules here round each trade down
or up so that the total of every order over all its trades is also its exact total rounded
down or up: whatever the number of trades, no order's total is off by a micro-unit or more.

**Carry rule.** Trades are taken in a canonical sequence and a running remainder (the
nano-units not yet paid, 0..999) is carried from one to the next; a trade pays its floor plus
one micro-unit exactly when the remainder reaches a whole micro-unit. Along a sequence this is
cumulative rounding: the trades ``i..j`` together pay ``floor(R_j) - floor(R_{i-1})`` of the
running exact total ``R``, which differs from their exact sum by less than one.

* ``round_forest`` (payments between buy and sell orders): the trades of a slot form a forest
  whose nodes are orders (each trade exhausts at least one of its two orders, so no cycle can
  close, for every mechanism). The sequence is a depth-first walk: components in order of
  their first trade; the root is the end of that trade that has no other trade (the buy order
  if both or neither); each order takes its trades in trade order and every branch starts from
  the remainder its order had when the branch's trade was rounded. An order's trades then pay
  ``(remainder before its first trade) - (its final remainder)`` beyond their exact sum, a
  difference of two numbers in [0, 1): less than one micro-unit either way.
  For the sealed auctions the forest is a caterpillar walked in trade order, so the rule is
  plain cumulative rounding in trade order (``carry_round``, vectorised).
* ``round_grouped`` (payments from many orders to one account, e.g. grid fees): trades
  grouped by the paying order (groups in order of their first trade), one carry through the
  whole sequence. Each group's total is its exact total rounded down or up and the receiving
  account's total is the slot's exact total rounded down.

Consequences (docs/market-clearing.md, "Money"): a sell order receives at least
``floor(ask * energy / 1000)`` and a buy order pays at most ``ceil(bid * energy / 1000)``; a
rule giving both floors does not exist (two buyers of 1 Wh and one seller of 2 Wh, all at 500
micro/kWh: the seller is owed exactly 1 micro-unit, each buyer 0.5). Budget balance is exact:
every trade's amount is paid by its buyer to its seller.

Pure integer arithmetic, deterministic, independent of mapping iteration order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import NDArray

from gridledger.types import WH_PER_KWH

I64 = NDArray[np.int64]

NANO_PER_MICRO = WH_PER_KWH
"""``energy_wh * price_micro_per_kwh`` is in nano-units: 1000 per micro-unit."""


def _split(amount_nano: int) -> tuple[int, int]:
    if type(amount_nano) is not int or amount_nano < 0:
        raise ValueError(f"amount_nano must be a non-negative int, got {amount_nano!r}")
    return divmod(amount_nano, NANO_PER_MICRO)


def carry_round(amounts_nano: I64, carry_nano: int = 0) -> I64:
    """Cumulative rounding of ``amounts_nano`` in the given order, in micro-units.

    ``out[k] = amounts_nano[k] // 1000 + (1 if the running remainder crosses a whole
    micro-unit at k)``, starting from ``carry_nano`` (0..999). Vectorised; every contiguous run
    of trades pays its exact sum rounded down or up.

    Args:
        amounts_nano: non-negative int64 exact amounts (``energy_wh * rate``), each <= 3e18.
        carry_nano: the remainder carried in, 0..999.
    """
    if not 0 <= carry_nano < NANO_PER_MICRO:
        raise ValueError("carry_nano must be in [0, 1000)")
    whole, frac = np.divmod(amounts_nano, NANO_PER_MICRO)
    # <= 999 per trade and <= 1e7 trades: the running remainder stays far inside int64
    running = np.cumsum(frac) + carry_nano
    ups = np.diff(running // NANO_PER_MICRO, prepend=np.int64(0))
    out: I64 = (whole + ups).astype(np.int64)
    return out


def round_forest(ends: Sequence[tuple[Hashable, Hashable]], amounts_nano: Sequence[int]) -> list[int]:
    """Round trade amounts so every order's total is its exact total rounded down or up.

    Args:
        ends: per trade, the (buy order, sell order) it connects; node ids need only be
            hashable and distinct per order.
        amounts_nano: per trade, its exact amount in nano-units (non-negative ints).

    Returns:
        Per trade, micro-units: ``amount // 1000`` or one more (the carry rule of the module
        docstring). When ``ends`` contains a cycle (never the case for a slot's trades) every
        trade is still rounded down or up, but an order on the cycle may be off by more.

    Raises:
        ValueError: lengths differ, or an amount is negative or not an int.
    """
    n = len(amounts_nano)
    if len(ends) != n:
        raise ValueError("ends and amounts_nano differ in length")
    parts = [_split(a) for a in amounts_nano]
    adj: dict[Hashable, list[int]] = {}
    for k, (u, v) in enumerate(ends):
        adj.setdefault(u, []).append(k)
        adj.setdefault(v, []).append(k)
    out = [0] * n
    decided = [False] * n
    rem: dict[Hashable, int] = {}     # each order's running remainder (nano)
    pos: dict[Hashable, int] = {}     # next of its trades to look at
    carry = 0                         # remainder after the most recent trade
    for first in range(n):
        if decided[first]:
            continue
        u, v = ends[first]
        root = v if len(adj[v]) == 1 and len(adj[u]) != 1 else u
        rem[root], pos[root] = carry, 0
        stack = [root]
        while stack:
            x = stack[-1]
            trades, i = adj[x], pos[x]
            while i < len(trades) and decided[trades[i]]:
                i += 1
            if i == len(trades):
                stack.pop()
                continue
            pos[x] = i + 1
            k = trades[i]
            whole, frac = parts[k]
            running = rem[x] + frac
            up = 1 if running >= NANO_PER_MICRO else 0
            rem[x] = carry = running - up * NANO_PER_MICRO
            out[k] = whole + up
            decided[k] = True
            a, b = ends[k]
            y = b if a == x else a
            if y not in rem:  # a branch continues from this order's remainder
                rem[y], pos[y] = rem[x], 0
                stack.append(y)
    return out


def group_sequence(groups: Sequence[Hashable]) -> list[int]:
    """Trade indices grouped by ``groups[k]``, groups in order of their first trade, trades in
    index order within a group (the sequence ``round_grouped`` carries through)."""
    first: dict[Hashable, int] = {}
    for k, g in enumerate(groups):
        first.setdefault(g, k)
    return sorted(range(len(groups)), key=lambda k: (first[groups[k]], k))


def round_grouped(groups: Sequence[Hashable], amounts_nano: Sequence[int]) -> list[int]:
    """Round amounts that many payers owe one account (grid fees): carry through the trades
    grouped by payer, so each payer's total is its exact total rounded down or up and the sum
    is the exact sum rounded down.

    Args:
        groups: per trade, the paying order.
        amounts_nano: per trade, its exact amount in nano-units.

    Raises:
        ValueError: lengths differ, or an amount is negative or not an int.
    """
    if len(groups) != len(amounts_nano):
        raise ValueError("groups and amounts_nano differ in length")
    out = [0] * len(groups)
    carry = 0
    for k in group_sequence(groups):
        whole, frac = _split(amounts_nano[k])
        running = carry + frac
        up = 1 if running >= NANO_PER_MICRO else 0
        carry = running - up * NANO_PER_MICRO
        out[k] = whole + up
    return out


def ceil_micro(amount_nano: int) -> int:
    """``amount_nano`` rounded up to whole micro-units (what an escrow must cover)."""
    return -(-amount_nano // NANO_PER_MICRO)
