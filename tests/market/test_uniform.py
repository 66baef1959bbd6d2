"""Uniform-price double auction: equilibrium properties, exact agreement with an independent
reference, and welfare equal to an LP optimum (scipy HiGHS)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from gridledger.market import ClearingResult, Order, clear_uniform
from tests.market.books import (
    OWNERS,
    books,
    by_id,
    check_money,
    oid,
    reference_uniform,
    welfare,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pairs(r: ClearingResult) -> list[tuple[bytes, bytes, int]]:
    return [(t.buy_order_id, t.sell_order_id, t.energy_wh) for t in r.trades]


@FAST
@given(books())
def test_individually_rational_and_balanced(orders: list[Order]) -> None:
    r = clear_uniform(orders)
    ix = by_id(orders)
    for t in r.trades:
        assert t.price_micro_per_kwh == r.price_micro_per_kwh
        assert ix[t.buy_order_id].price_micro_per_kwh >= t.price_micro_per_kwh  # buyer <= limit
        assert ix[t.sell_order_id].price_micro_per_kwh <= t.price_micro_per_kwh  # seller >= limit
        assert ix[t.buy_order_id].side == "buy" and ix[t.sell_order_id].side == "sell"
        assert (t.buyer, t.seller) == (ix[t.buy_order_id].owner, ix[t.sell_order_id].owner)
        assert t.energy_wh > 0
        assert t.grid_fee_micro == 0
        assert type(t.payment_micro) is int and type(t.energy_wh) is int
    check_money(orders, r)
    bought = sum(r.filled_wh_by_order[o.order_id] for o in orders if o.side == "buy")
    sold = sum(r.filled_wh_by_order[o.order_id] for o in orders if o.side == "sell")
    assert bought == sold == r.volume_wh
    # every order is accounted for: filled + unmatched remainder == submitted
    rest = {u.order_id: u.energy_wh for u in r.unmatched}
    for o in orders:
        assert r.filled_wh_by_order[o.order_id] + rest.get(o.order_id, 0) == o.energy_wh
    assert list(r.filled_wh_by_order) == sorted(o.order_id for o in orders)
    assert [u.order_id for u in r.unmatched] == sorted(rest)
    if not r.trades:
        assert r.price_micro_per_kwh is None


@FAST
@given(books())
def test_competitive_equilibrium(orders: list[Order]) -> None:
    """Strictly in-the-money orders fill fully, out-of-the-money ones not at all, and at most
    one order per side (the marginal one) is partially filled."""
    r = clear_uniform(orders)
    if r.price_micro_per_kwh is None:
        return
    p = r.price_micro_per_kwh
    partial = {"buy": 0, "sell": 0}
    for o in orders:
        f = r.filled_wh_by_order[o.order_id]
        better = o.price_micro_per_kwh > p if o.side == "buy" else o.price_micro_per_kwh < p
        worse = o.price_micro_per_kwh < p if o.side == "buy" else o.price_micro_per_kwh > p
        if better:
            assert f == o.energy_wh
        if worse:
            assert f == 0
        if 0 < f < o.energy_wh:
            partial[o.side] += 1
    assert partial["buy"] <= 1 and partial["sell"] <= 1


def ce_prices(orders: list[Order]) -> list[int]:
    """Brute force: every integer price at which supply can meet demand."""
    top = max((o.price_micro_per_kwh for o in orders), default=0) + 1
    out = []
    for p in range(top + 1):
        d_gt = sum(o.energy_wh for o in orders if o.side == "buy" and o.price_micro_per_kwh > p)
        d_ge = sum(o.energy_wh for o in orders if o.side == "buy" and o.price_micro_per_kwh >= p)
        s_lt = sum(o.energy_wh for o in orders if o.side == "sell" and o.price_micro_per_kwh < p)
        s_le = sum(o.energy_wh for o in orders if o.side == "sell" and o.price_micro_per_kwh <= p)
        if max(d_gt, s_lt) <= min(d_ge, s_le):
            out.append(p)
    return out


@FAST
@given(books())
def test_price_is_midpoint_of_brute_force_equilibrium_interval(orders: list[Order]) -> None:
    r = clear_uniform(orders)
    if r.price_micro_per_kwh is None:
        return
    ps = ce_prices(orders)
    assert ps == list(range(ps[0], ps[-1] + 1))  # an interval
    assert r.price_micro_per_kwh == (ps[0] + ps[-1]) // 2


@FAST
@given(books(max_energy_wh=6))
def test_volume_is_largest_efficient_volume_unit_brute_force(orders: list[Order]) -> None:
    """Expand every order into 1-Wh units: trade the k best units while value >= cost."""
    values = sorted((o.price_micro_per_kwh for o in orders if o.side == "buy" for _ in range(o.energy_wh)), reverse=True)
    costs = sorted(o.price_micro_per_kwh for o in orders if o.side == "sell" for _ in range(o.energy_wh))
    k = 0
    while k < min(len(values), len(costs)) and values[k] >= costs[k]:
        k += 1
    r = clear_uniform(orders)
    assert r.volume_wh == k
    assert welfare(orders, pairs(r)) * 1 == sum(values[i] - costs[i] for i in range(k))


@FAST
@given(books(max_orders=30, max_price=10_000))
def test_matches_independent_reference_exactly(orders: list[Order]) -> None:
    price, ref = reference_uniform(orders)
    r = clear_uniform(orders)
    assert r.price_micro_per_kwh == price
    assert pairs(r) == ref


@FAST
@given(books(), st.data())
def test_permutation_invariant(orders: list[Order], data: st.DataObject) -> None:
    perm = data.draw(st.permutations(orders))
    assert clear_uniform(perm) == clear_uniform(orders)


def lp_max_welfare(orders: list[Order]) -> float:
    """max sum b_i x_i - sum a_j y_j  s.t.  sum x = sum y, 0 <= x_i, y_j <= q  (HiGHS)."""
    n = len(orders)
    if n == 0:
        return 0.0
    sign = np.array([1 if o.side == "buy" else -1 for o in orders], dtype=float)
    price = np.array([o.price_micro_per_kwh for o in orders], dtype=float)
    res = linprog(
        c=-(sign * price),
        A_eq=sign.reshape(1, n),
        b_eq=[0.0],
        bounds=[(0, o.energy_wh) for o in orders],
        method="highs",
    )
    assert res.status == 0, res.message
    return float(-res.fun)


@settings(max_examples=100, deadline=None)
@given(books(max_orders=20, max_price=1_000))
def test_welfare_equals_lp_optimum(orders: list[Order]) -> None:
    r = clear_uniform(orders)
    # Data are integers and the constraint matrix is totally unimodular, so the LP optimum
    # is an integer; HiGHS returns it to within float rounding.
    assert abs(welfare(orders, pairs(r)) - lp_max_welfare(orders)) <= 1e-6 * max(1.0, lp_max_welfare(orders))


def test_hand_example_with_tie_break_by_order_id() -> None:
    lo_id, hi_id = oid(1), oid(2)
    if lo_id > hi_id:
        lo_id, hi_id = hi_id, lo_id
    orders = [
        Order(hi_id, OWNERS[0], "buy", 1000, 50),
        Order(lo_id, OWNERS[1], "buy", 1000, 50),
        Order(oid(3), OWNERS[2], "sell", 1500, 20),
    ]
    r = clear_uniform(orders)
    # demand 2000 @50, supply 1500 @20: bids at 50 are marginal, so lo = 50 (rejected bid),
    # hi = 50 (marginal bid) -> price 50; the lower order id is served first.
    assert r.price_micro_per_kwh == 50
    assert pairs(r) == [(lo_id, oid(3), 1000), (hi_id, oid(3), 500)]
    assert r.trades[0].payment_micro == 50  # 1 kWh * 50 micro/kWh


def test_interval_midpoint_rounds_down() -> None:
    orders = [Order(oid(1), OWNERS[0], "buy", 1000, 31), Order(oid(2), OWNERS[1], "sell", 1000, 10)]
    r = clear_uniform(orders)
    assert r.price_micro_per_kwh == (10 + 31) // 2 == 20


def test_no_cross_no_trade() -> None:
    orders = [Order(oid(1), OWNERS[0], "buy", 1000, 9), Order(oid(2), OWNERS[1], "sell", 1000, 10)]
    r = clear_uniform(orders)
    assert r.trades == () and r.price_micro_per_kwh is None
    assert {u.order_id for u in r.unmatched} == {oid(1), oid(2)}
    assert clear_uniform([]).trades == ()
