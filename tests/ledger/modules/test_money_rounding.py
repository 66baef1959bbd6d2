"""Money to the micro-unit through the real execution path (issue 18 item 9): at clearing and
at settlement every order's money over its trades is its exact amount rounded down or up,
so many small trades never cost a seller its limit, a buyer never pays above it (beyond the
sub-micro remainder), budget balance is exact and the grid gets its exact fees."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.ledger.modules.market.keeper import trades_of_slot
from tests.ledger.modules.world import (
    World,
    make_world,
    t_clear,
    t_order,
    t_read,
    t_settle,
)

SLOT = 3
FEE = 30_000


def floor_div(x: int) -> int:
    return x // 1000


def ceil_div(x: int) -> int:
    return -(-x // 1000)


def settle(w: World, txs: list[bytes], readings: dict[int, tuple[int, int]]) -> None:
    w.ok(txs, t_order(SLOT))
    w.ok([], t_clear(SLOT))
    w.ok([w.reading(i, SLOT, *rw) for i, rw in sorted(readings.items())], t_read(SLOT))
    w.ok([], t_settle(SLOT))


def limits(w: World) -> dict[bytes, dict[str, Any]]:
    """Every order's side and limit, from the ``order_placed`` events."""
    return {e["order_id"]: e for e in w.events("order_placed")}


def check_settled_orders(w: World, rate_micro_per_kwh: int = FEE) -> None:
    """The contract of docs/market.md "Money", checked per order on the settled trades."""
    orders = limits(w)
    trades = trades_of_slot(w.app.state, SLOT)
    got: dict[bytes, int] = {}
    delivered: dict[bytes, int] = {}
    exact: dict[bytes, int] = {}
    fee_exact: dict[bytes, int] = {}
    fee_got: dict[bytes, int] = {}
    for t in trades:
        for oid in (t.buy_order, t.sell_order):
            got[oid] = got.get(oid, 0) + t.paid_micro
            delivered[oid] = delivered.get(oid, 0) + t.delivered_wh
            exact[oid] = exact.get(oid, 0) + t.delivered_wh * t.price_micro_per_kwh
        b = t.buy_order
        fee_exact[b] = fee_exact.get(b, 0) + t.delivered_wh * rate_micro_per_kwh
        fee_got[b] = fee_got.get(b, 0) + t.fee_paid_micro
    for oid, micro in got.items():
        assert floor_div(exact[oid]) <= micro <= ceil_div(exact[oid])
        limit = orders[oid]["price_micro_per_kwh"] * delivered[oid]
        if orders[oid]["side"] == "sell":
            assert micro >= floor_div(limit)   # at least its limit x delivered energy
        else:
            assert micro <= ceil_div(limit)    # at most its limit x delivered energy
    for oid, micro in fee_got.items():
        assert floor_div(fee_exact[oid]) <= micro <= ceil_div(fee_exact[oid])
    assert sum(fee_got.values()) == floor_div(sum(fee_exact.values()))  # the grid's exact fees


def test_seller_of_504_small_trades_is_paid_its_limit() -> None:
    """One seller, 1 kWh at 100 499 micro/kWh, bought 2 Wh at a time by 8 buyers with 63
    orders each. Flooring every trade paid 504 x 200 micro for what is worth 100 499."""
    w = make_world(n_users=9, params={"max_orders_per_slot": 63})
    ask = 100_499
    txs = [w.order(0, SLOT, "sell", 1_008, ask)]
    txs += [w.order(b, SLOT, "buy", 2, ask) for b in range(1, 9) for _ in range(63)]
    seller0, grid0 = w.total(w.addr(0)), w.total(w.dso.address)
    settle(w, txs, {0: (0, 1_008), **dict.fromkeys(range(1, 9), (126, 0))})
    trades = trades_of_slot(w.app.state, SLOT)
    assert len(trades) == 504
    assert w.total(w.addr(0)) - seller0 == ask * 1_008 // 1_000 == 101_302  # not 504 x 200
    (bill,) = [e for e in w.events("bill") if e["addr"] == w.addr(0)]
    assert bill["market_revenue_micro"] == 101_302
    buyers = [e for e in w.events("bill") if e["addr"] != w.addr(0) and e["market_bought_wh"]]
    assert sum(b["market_cost_micro"] for b in buyers) == 101_302        # budget balanced
    assert w.total(w.dso.address) - grid0 == FEE * 1_008 // 1_000        # exact fees
    check_settled_orders(w)


def test_partial_delivery_of_small_trades_keeps_the_limit() -> None:
    """Settlement rounds again, on delivered energy: a seller that delivers 777 of 1 008 Wh
    is paid its limit on 777 Wh, not 777 Wh floored trade by trade."""
    w = make_world(n_users=9, params={"max_orders_per_slot": 63})
    ask = 100_499
    txs = [w.order(0, SLOT, "sell", 1_008, ask)]
    txs += [w.order(b, SLOT, "buy", 2, ask + 1) for b in range(1, 9) for _ in range(63)]
    settle(w, txs, {0: (0, 777), **dict.fromkeys(range(1, 9), (126, 0))})
    (bill,) = [e for e in w.events("bill") if e["addr"] == w.addr(0)]
    assert bill["market_sold_wh"] == 777
    assert bill["market_revenue_micro"] >= 777 * ask // 1_000
    check_settled_orders(w)


def test_two_buyers_are_compensated_before_the_grid() -> None:
    """Issue 21 item 6: with the deposit rate equal to the retail price, a seller who fails
    two buyers used to pay the first buyer's compensation, then the grid's penalty, and
    leave the second buyer short. Buyers now come first; both are made whole."""
    tau = 250_000
    w = make_world(params={"deposit_micro_per_kwh": tau})
    txs = [w.order(0, SLOT, "sell", 2_000, 0), w.order(1, SLOT, "buy", 1_000, 1_000),
           w.order(2, SLOT, "buy", 1_000, 1_000)]
    settle(w, txs, {0: (0, 0), 1: (1_000, 0), 2: (1_000, 0)})
    nd = w.events("non_delivery")
    assert len(nd) == 2
    price = trades_of_slot(w.app.state, SLOT)[0].price_micro_per_kwh
    for e in nd:  # each buyer: (τ - price) on the energy it had to take from the grid
        assert e["compensation_micro"] == 1_000 * (tau - price) // 1_000
    for i in (1, 2):  # so each pays the trade price for its 1 kWh, not the retail price
        (b,) = [e for e in w.events("bill") if e["addr"] == w.addr(i)]
        assert b["total_micro"] == b["retail_net_micro"] - b["compensation_micro"] == 1_000 * price // 1_000
    (s,) = [e for e in w.events("bill") if e["addr"] == w.addr(0)]
    assert s["penalty_micro"] == 2_000 * tau // 1_000 - 2 * (tau - price)  # the deposit's rest
    check_settled_orders(w)


# (seller or buyer, energy_wh 1..6, price offset): many tiny orders of four sellers and
# four buyers, prices chosen so the products are rarely whole micro-units.
tiny = st.tuples(st.integers(0, 7), st.integers(1, 6), st.integers(0, 99_999))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=st.lists(tiny, min_size=4, max_size=48),
       exports=st.lists(st.integers(0, 30), min_size=4, max_size=4),
       imports=st.lists(st.integers(0, 30), min_size=4, max_size=4),
       mechanism=st.sampled_from(["uniform", "pay_as_bid", "continuous"]))
def test_tiny_orders_keep_limits_through_settlement(orders: list[tuple[int, int, int]],
                                                    exports: list[int], imports: list[int],
                                                    mechanism: str) -> None:
    w = make_world(n_users=8, params={"mechanism": mechanism, "max_orders_per_slot": 12})
    money0 = w.money()
    counts = [0] * 8
    txs = []
    for user, energy, offset in orders:
        if counts[user] == 12:
            continue
        counts[user] += 1
        side, price = ("sell", 100_000 + offset) if user < 4 else ("buy", 150_000 + offset)
        txs.append(w.order(user, SLOT, side, energy, price))
    readings = {i: (0, exports[i]) for i in range(4)}
    readings |= {4 + i: (imports[i], 0) for i in range(4)}
    settle(w, txs, readings)
    assert w.money() == money0
    check_settled_orders(w)
    # with full delivery the settled amounts are the cleared ones (one rule, both places)
    for t in trades_of_slot(w.app.state, SLOT):
        if t.delivered_wh == t.energy_wh and not any(
                x.delivered_wh < x.energy_wh for x in trades_of_slot(w.app.state, SLOT)):
            assert t.paid_micro == t.payment_micro
            assert t.fee_paid_micro == t.grid_fee_micro
