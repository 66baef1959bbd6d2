"""Pay-as-bid and the continuous order book: individual rationality, conservation,
determinism; the continuous book against a naive price-time reference."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.market import (
    Order,
    clear_continuous,
    clear_pay_as_bid,
    clear_slot,
    clear_uniform,
)
from tests.market.books import (
    OWNERS,
    books,
    by_id,
    check_money,
    oid,
    reference_continuous,
    welfare,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(books(), st.data())
def test_pay_as_bid_same_allocation_pair_midpoints(orders: list[Order], data: st.DataObject) -> None:
    r = clear_pay_as_bid(orders)
    u = clear_uniform(orders)
    ix = by_id(orders)
    assert r.price_micro_per_kwh is None
    assert r.filled_wh_by_order == u.filled_wh_by_order
    assert [(t.buy_order_id, t.sell_order_id, t.energy_wh) for t in r.trades] == [
        (t.buy_order_id, t.sell_order_id, t.energy_wh) for t in u.trades
    ]
    for t in r.trades:
        b, a = ix[t.buy_order_id].price_micro_per_kwh, ix[t.sell_order_id].price_micro_per_kwh
        assert a <= t.price_micro_per_kwh == (a + b) // 2 <= b
    check_money(orders, r)
    assert clear_pay_as_bid(data.draw(st.permutations(orders))) == r


@FAST
@given(books(max_orders=25))
def test_continuous_matches_naive_price_time_reference(orders: list[Order]) -> None:
    r = clear_continuous(orders)
    got = [(t.buy_order_id, t.sell_order_id, t.energy_wh, t.price_micro_per_kwh) for t in r.trades]
    assert got == reference_continuous(orders)


@FAST
@given(books(max_orders=25))
def test_continuous_rational_conserving_deterministic(orders: list[Order]) -> None:
    r = clear_continuous(orders)
    ix = by_id(orders)
    for t in r.trades:
        assert ix[t.sell_order_id].price_micro_per_kwh <= t.price_micro_per_kwh
        assert t.price_micro_per_kwh <= ix[t.buy_order_id].price_micro_per_kwh
    check_money(orders, r)
    bought = sum(r.filled_wh_by_order[o.order_id] for o in orders if o.side == "buy")
    sold = sum(r.filled_wh_by_order[o.order_id] for o in orders if o.side == "sell")
    assert bought == sold == r.volume_wh
    # Sequence-dependent matching can trade MORE volume than the auction (a high bid may
    # meet a high ask first) but never more welfare: the auction's is the maximum.
    def gains(res: object) -> int:
        return welfare(orders, [(t.buy_order_id, t.sell_order_id, t.energy_wh) for t in res.trades])  # type: ignore[attr-defined]

    assert gains(r) <= gains(clear_uniform(orders))
    # At gate closure the resting book is not crossed.
    rest = r.unmatched
    best_bid = max((o.price_micro_per_kwh for o in rest if o.side == "buy"), default=-1)
    best_ask = min((o.price_micro_per_kwh for o in rest if o.side == "sell"), default=10**12)
    assert best_bid < best_ask
    assert clear_continuous(list(orders)) == r


def test_continuous_price_time_priority_hand_example() -> None:
    s1 = Order(oid(1), OWNERS[0], "sell", 1000, 30)  # arrives first
    s2 = Order(oid(2), OWNERS[1], "sell", 1000, 30)  # same price, later
    s3 = Order(oid(3), OWNERS[2], "sell", 1000, 20)  # better price, latest
    b = Order(oid(4), OWNERS[3], "buy", 2500, 40)
    r = clear_slot([s1, s2, s3, b], "continuous")
    # best price first (s3 @20), then time priority among equal prices (s1 before s2);
    # each fill at the resting order's price.
    assert [(t.sell_order_id, t.energy_wh, t.price_micro_per_kwh) for t in r.trades] == [
        (oid(3), 1000, 20),
        (oid(1), 1000, 30),
        (oid(2), 500, 30),
    ]
    # An arriving sell that crosses the resting remainder trades at the resting bid (40).
    r2 = clear_continuous([b, s3])
    assert r2.trades[0].price_micro_per_kwh == 40
