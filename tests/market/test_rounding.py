"""Money to the micro-unit (issue 18 item 9): many small trades never add up to a rounding
loss against an order's limit, budget balance stays exact, and the vectorised path of the
auctions is the general carry rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.market import (
    GridFees,
    Order,
    carry_round,
    ceil_micro,
    clear_slot,
    round_forest,
    round_grouped,
)
from tests.market.books import OWNERS, check_money, oid, rounded, tiny_books

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MECHS = st.sampled_from(["uniform", "pay_as_bid", "continuous"])
FEES = GridFees(flat_micro_per_kwh=30_001, tou_micro_per_kwh=(0, 7_777),
                zone_by_owner={OWNERS[0]: "a", OWNERS[1]: "b"},
                distance_micro_per_kwh={("a", "b"): 4_999}, default_distance_micro_per_kwh=1_233)


@pytest.mark.parametrize("mech", ["uniform", "pay_as_bid", "continuous"])
def test_seller_of_500_small_trades_gets_its_limit(mech: str) -> None:
    """The case of the issue: 1 kWh sold to 500 buyers of 2 Wh at a price whose 2-Wh amount
    is not a whole micro-unit. Flooring each trade paid 500 x 200 = 100 000 for 100 499."""
    ask = 100_499
    orders = [Order(oid(0), OWNERS[0], "sell", 1_000, ask)]
    orders += [Order(oid(i), OWNERS[1 + i % 5], "buy", 2, ask) for i in range(1, 501)]
    r = clear_slot(orders, mech, fees=FEES, slot_of_day=1)  # type: ignore[arg-type]
    assert len(r.trades) == 500 and r.volume_wh == 1_000
    received = sum(t.payment_micro for t in r.trades)
    assert received == ask * 1_000 // 1_000 == 100_499  # exact: not 500 x floor(200.998)
    # each buyer pays its 2 Wh at the price, rounded down or up; the sum is the seller's
    assert {t.payment_micro for t in r.trades} <= {200, 201}
    assert r.grid_fee_total_micro == sum(t.energy_wh * t.grid_fee_micro_per_kwh for t in r.trades) // 1000
    check_money(orders, r, FEES, 1)


def test_no_rule_gives_both_sides_their_floor() -> None:
    """Why buyers are bounded by the ceiling: two buyers of 1 Wh and one seller of 2 Wh, all
    at 500 micro/kWh. The seller is owed exactly 1 micro-unit, each buyer 0.5."""
    orders = [Order(oid(0), OWNERS[0], "sell", 2, 500), Order(oid(1), OWNERS[1], "buy", 1, 500),
              Order(oid(2), OWNERS[2], "buy", 1, 500)]
    r = clear_slot(orders)
    assert r.payment_total_micro == 1  # the seller's floor; one buyer pays its ceiling
    assert sorted(t.payment_micro for t in r.trades) == [0, 1]


@FAST
@given(tiny_books(), MECHS, st.integers(0, 1))
def test_tiny_books_keep_every_limit(orders: list[Order], mech: str, slot: int) -> None:
    r = clear_slot(orders, mech, fees=FEES, slot_of_day=slot)  # type: ignore[arg-type]
    check_money(orders, r, FEES, slot)
    assert r.payment_total_micro == sum(t.payment_micro for t in r.trades)  # budget balanced


def _is_forest(edges: list[tuple[bytes, bytes]]) -> bool:
    parent: dict[bytes, bytes] = {}

    def find(x: bytes) -> bytes:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra == rb:
            return False
        parent[ra] = rb
    return True


@FAST
@given(tiny_books(), MECHS)
def test_vectorised_amounts_are_the_general_rule(orders: list[Order], mech: str) -> None:
    """Every mechanism's trades form a forest of orders (the carry rule's premise), and the
    amounts are exactly ``round_forest`` / ``round_grouped`` on the trades: the vectorised
    auctions and the ledger's settlement (which calls the general functions) agree."""
    r = clear_slot(orders, mech, fees=FEES, slot_of_day=1)  # type: ignore[arg-type]
    ends = [(t.buy_order_id, t.sell_order_id) for t in r.trades]
    assert _is_forest(ends)
    assert [t.payment_micro for t in r.trades] == round_forest(
        ends, [t.energy_wh * t.price_micro_per_kwh for t in r.trades])
    assert [t.grid_fee_micro for t in r.trades] == round_grouped(
        [t.buy_order_id for t in r.trades], [t.energy_wh * t.grid_fee_micro_per_kwh for t in r.trades])


@st.composite
def forests(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[int]]:
    """A random forest of trades between buy nodes (even) and sell nodes (odd), edges in a
    random order, amounts with arbitrary sub-micro parts."""
    n = draw(st.integers(1, 60))
    edges: list[tuple[int, int]] = []
    for v in range(1, n):
        if draw(st.booleans()):
            u = draw(st.integers(0, v - 1))
            edges.append((u, v))
    edges = [(2 * a, 2 * b + 1) for a, b in edges]  # bipartite labels, still a forest
    edges = draw(st.permutations(edges))
    amounts = draw(st.lists(st.integers(0, 10**7), min_size=len(edges), max_size=len(edges)))
    return edges, amounts


@FAST
@given(forests())
def test_round_forest_rounds_every_node(case: tuple[list[tuple[int, int]], list[int]]) -> None:
    edges, amounts = case
    out = round_forest(edges, amounts)
    exact: dict[int, int] = {}
    got: dict[int, int] = {}
    for (a, b), x, m in zip(edges, amounts, out, strict=True):
        assert rounded(m, x)
        for v in (a, b):
            exact[v] = exact.get(v, 0) + x
            got[v] = got.get(v, 0) + m
    assert all(rounded(got[v], exact[v]) for v in exact)
    assert round_forest(edges, amounts) == out  # deterministic


@FAST
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5_000_000)), max_size=80))
def test_round_grouped_rounds_every_group_and_the_total(items: list[tuple[int, int]]) -> None:
    groups, amounts = [g for g, _ in items], [a for _, a in items]
    out = round_grouped(groups, amounts)
    for g in set(groups):
        assert rounded(sum(m for h, m in zip(groups, out, strict=True) if h == g),
                       sum(a for h, a in zip(groups, amounts, strict=True) if h == g))
    assert sum(out) == sum(amounts) // 1000
    arr = np.array(amounts, dtype=np.int64)
    if groups == sorted(groups):  # already grouped: the vectorised carry is the same rule
        assert carry_round(arr).tolist() == out


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        round_forest([(1, 2)], [-1])
    with pytest.raises(ValueError, match="length"):
        round_grouped([1], [])
    with pytest.raises(ValueError, match="carry"):
        carry_round(np.zeros(1, dtype=np.int64), 1_000)
    assert ceil_micro(1) == 1 and ceil_micro(1_000) == 1 and ceil_micro(0) == 0
