"""Hypothesis strategies and independent references for the market tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from hypothesis import strategies as st

from gridledger.market import ClearingResult, GridFees, Order

OWNERS = [bytes([0xA0 + i]) * 4 for i in range(6)]


def oid(i: int, salt: bytes = b"") -> bytes:
    """A deterministic 32-byte order id."""
    return hashlib.sha3_256(salt + i.to_bytes(8, "big")).digest()


@st.composite
def books(
    draw: st.DrawFn,
    max_orders: int = 14,
    max_energy_wh: int = 5_000,
    max_price: int = 40,
    owners: Sequence[bytes] = OWNERS,
) -> list[Order]:
    """A random order book. Prices come from a small range so that equal prices (and so the
    order-id tie-break) are common; ids are arbitrary distinct 32-byte strings."""
    n = draw(st.integers(0, max_orders))
    ids = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=n, max_size=n, unique=True))
    out = []
    for i in range(n):
        out.append(
            Order(
                order_id=ids[i],
                owner=draw(st.sampled_from(list(owners))),
                side=draw(st.sampled_from(["buy", "sell"])),
                energy_wh=draw(st.integers(1, max_energy_wh)),
                price_micro_per_kwh=draw(st.integers(0, max_price)),
            )
        )
    return out


def by_id(orders: Sequence[Order]) -> dict[bytes, Order]:
    return {o.order_id: o for o in orders}


def welfare(orders: Sequence[Order], trades: Sequence[tuple[bytes, bytes, int]]) -> int:
    """Gains from trade sum(energy_wh * (bid - ask)), in micro-units * Wh / kWh (exact)."""
    ix = by_id(orders)
    return sum(
        e * (ix[b].price_micro_per_kwh - ix[s].price_micro_per_kwh) for b, s, e in trades
    )


def reference_uniform(orders: Sequence[Order]) -> tuple[int | None, list[tuple[bytes, bytes, int]]]:
    """Independent pure-Python uniform-price auction: a greedy walk down the merit orders.

    Trades unit by unit while the current bid >= the current ask, then prices at the
    midpoint (floor) of [max(last ask, next bid), min(last bid, next ask)]. Written from the
    spec in docs/market-clearing.md, sharing no code with gridledger.market.
    """
    bids = sorted((o for o in orders if o.side == "buy"), key=lambda o: (-o.price_micro_per_kwh, o.order_id))
    asks = sorted((o for o in orders if o.side == "sell"), key=lambda o: (o.price_micro_per_kwh, o.order_id))
    i = j = 0
    rb = bids[0].energy_wh if bids else 0
    ra = asks[0].energy_wh if asks else 0
    trades: list[tuple[bytes, bytes, int]] = []
    last_b = last_a = None
    while i < len(bids) and j < len(asks) and bids[i].price_micro_per_kwh >= asks[j].price_micro_per_kwh:
        q = min(rb, ra)
        trades.append((bids[i].order_id, asks[j].order_id, q))
        last_b, last_a = bids[i].price_micro_per_kwh, asks[j].price_micro_per_kwh
        rb -= q
        ra -= q
        if rb == 0:
            i += 1
            rb = bids[i].energy_wh if i < len(bids) else 0
        if ra == 0:
            j += 1
            ra = asks[j].energy_wh if j < len(asks) else 0
    if not trades:
        return None, []
    assert last_b is not None and last_a is not None
    lo, hi = last_a, last_b
    if i < len(bids):
        lo = max(lo, bids[i].price_micro_per_kwh)
    if j < len(asks):
        hi = min(hi, asks[j].price_micro_per_kwh)
    return (lo + hi) // 2, trades


def reference_continuous(orders: Sequence[Order]) -> list[tuple[bytes, bytes, int, int]]:
    """Naive O(n^2) price-time priority book: scan the resting list for the best match."""
    resting: list[list[object]] = []  # [seq, order, remaining]
    out: list[tuple[bytes, bytes, int, int]] = []
    for seq, o in enumerate(orders):
        rem = o.energy_wh
        while rem:
            best = None
            for r in resting:
                ro: Order = r[1]  # type: ignore[assignment]
                if r[2] == 0 or ro.side == o.side:
                    continue
                crosses = (
                    o.price_micro_per_kwh >= ro.price_micro_per_kwh
                    if o.side == "buy"
                    else o.price_micro_per_kwh <= ro.price_micro_per_kwh
                )
                if not crosses:
                    continue
                key = (ro.price_micro_per_kwh if o.side == "buy" else -ro.price_micro_per_kwh, r[0])
                if best is None or key < best[0]:
                    best = (key, r)
            if best is None:
                break
            r = best[1]
            ro = r[1]  # type: ignore[assignment]
            q = min(rem, r[2])  # type: ignore[call-overload]
            b, s = (o, ro) if o.side == "buy" else (ro, o)
            out.append((b.order_id, s.order_id, q, ro.price_micro_per_kwh))
            rem -= q
            r[2] -= q  # type: ignore[operator]
        if rem:
            resting.append([seq, o, rem])
    return out


def rounded(micro: int, exact_nano: int) -> bool:
    """``micro`` is ``exact_nano`` (energy_wh * rate) rounded down or up to micro-units."""
    return exact_nano // 1000 <= micro <= -(-exact_nano // 1000)


def check_money(orders: Sequence[Order], r: ClearingResult, fees: GridFees | None = None,
                slot_of_day: int = 0) -> None:
    """The rounding contract of docs/market-clearing.md ("Money"), from first principles:
    every trade and every order's total over its trades is its exact amount rounded down or
    up; so a sell order gets at least floor(ask * filled / 1000), a buy order pays at most
    ceil(bid * filled / 1000); the DSO gets the slot's exact fees rounded down."""
    ix = by_id(orders)
    exact: dict[tuple[str, bytes], int] = {}
    got: dict[tuple[str, bytes], int] = {}

    def add(key: tuple[str, bytes], nano: int, micro: int) -> None:
        exact[key] = exact.get(key, 0) + nano
        got[key] = got.get(key, 0) + micro

    for t in r.trades:
        rate = fees.rate_micro_per_kwh(t.buyer, t.seller, slot_of_day) if fees else 0
        assert t.grid_fee_micro_per_kwh == rate
        pay_nano, fee_nano = t.energy_wh * t.price_micro_per_kwh, t.energy_wh * rate
        assert rounded(t.payment_micro, pay_nano) and rounded(t.grid_fee_micro, fee_nano)
        assert type(t.payment_micro) is int and type(t.grid_fee_micro) is int
        add(("pay", t.buy_order_id), pay_nano, t.payment_micro)
        add(("pay", t.sell_order_id), pay_nano, t.payment_micro)
        add(("fee", t.buy_order_id), fee_nano, t.grid_fee_micro)
    for (what, oid), nano in exact.items():
        assert rounded(got[(what, oid)], nano), (what, oid.hex(), got[(what, oid)], nano)
        if what == "pay":
            o, filled = ix[oid], r.filled_wh_by_order[oid]
            if o.side == "sell":  # at least its limit x energy (rounded down)
                assert got[(what, oid)] >= filled * o.price_micro_per_kwh // 1000
            else:                 # at most its limit x energy (rounded up)
                assert got[(what, oid)] <= -(-filled * o.price_micro_per_kwh // 1000)
    fee_nano = sum(v for (what, _), v in exact.items() if what == "fee")
    assert r.grid_fee_total_micro == fee_nano // 1000


def tiny_books(max_orders: int = 120) -> st.SearchStrategy[list[Order]]:
    """Books of many tiny orders (1-5 Wh) at prices whose products are rarely whole
    micro-units: where flooring each trade on its own loses most."""
    return books(max_orders=max_orders, max_energy_wh=5, max_price=400_000)
