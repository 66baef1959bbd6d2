"""Grid fees on every trade and bills with the retail fallback vs the no-market baseline."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.market import (
    GridFees,
    MarketInputError,
    Order,
    RetailTariff,
    clear_slot,
    compute_bills,
)
from gridledger.types import payment_micro
from tests.market.books import OWNERS, books, check_money, oid

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZONES = {OWNERS[0]: "feeder-a", OWNERS[1]: "feeder-a", OWNERS[2]: "feeder-b", OWNERS[3]: "feeder-b", OWNERS[4]: "mv"}
FEES = GridFees(
    flat_micro_per_kwh=3,
    tou_micro_per_kwh=(1, 7, 2, 5),
    zone_by_owner=ZONES,
    distance_micro_per_kwh={("feeder-a", "feeder-a"): 0, ("feeder-b", "feeder-b"): 0, ("feeder-a", "feeder-b"): 4},
    default_distance_micro_per_kwh=11,  # across the transformer, or owner without a zone
)
MECHS = st.sampled_from(["uniform", "pay_as_bid", "continuous"])


def test_rate_table() -> None:
    a, a2, b, mv, nozone = OWNERS[0], OWNERS[1], OWNERS[2], OWNERS[4], OWNERS[5]
    assert FEES.rate_micro_per_kwh(a, a2, 0) == 3 + 1 + 0  # same feeder
    assert FEES.rate_micro_per_kwh(a, b, 1) == 3 + 7 + 4  # neighbouring feeder
    assert FEES.rate_micro_per_kwh(b, a, 1) == 3 + 7 + 4  # symmetric
    assert FEES.rate_micro_per_kwh(a, mv, 2) == 3 + 2 + 11  # pair not in table
    assert FEES.rate_micro_per_kwh(nozone, a, 3) == 3 + 5 + 11  # no zone
    with pytest.raises(MarketInputError):
        FEES.rate_micro_per_kwh(a, b, 4)  # slot_of_day outside the ToU table


@FAST
@given(books(), MECHS, st.integers(0, 3))
def test_every_trade_carries_its_fee(orders: list[Order], mech: str, slot: int) -> None:
    r = clear_slot(orders, mech, fees=FEES, slot_of_day=slot)  # type: ignore[arg-type]
    check_money(orders, r, FEES, slot)
    # fees never change who trades or at what price
    plain = clear_slot(orders, mech)  # type: ignore[arg-type]
    assert [t[:7] for t in r.trades] == [t[:7] for t in plain.trades]


TARIFF = RetailTariff(import_micro_per_kwh=30, feed_in_micro_per_kwh=8)


@FAST
@given(books(), MECHS)
def test_bills_conserve_money(orders: list[Order], mech: str) -> None:
    r = clear_slot(orders, mech, fees=FEES, slot_of_day=1)  # type: ignore[arg-type]
    bills = compute_bills(r, TARIFF)
    paid = sum(b.market_energy_cost_micro for b in bills.values())
    received = sum(b.market_energy_revenue_micro for b in bills.values())
    fees = sum(b.grid_fee_micro for b in bills.values())
    assert paid == received == r.payment_total_micro  # buyers pay exactly what sellers get
    assert fees == r.grid_fee_total_micro  # ... plus the network charge, to the DSO
    assert sum(b.market_bought_wh for b in bills.values()) == sum(b.market_sold_wh for b in bills.values())
    for b in bills.values():
        assert b.total_micro == (
            b.market_energy_cost_micro + b.grid_fee_micro + b.retail_cost_micro
            - b.market_energy_revenue_micro - b.retail_revenue_micro
        )
        assert b.baseline_total_micro == payment_micro(
            b.market_bought_wh + b.retail_bought_wh, TARIFF.import_micro_per_kwh
        ) - payment_micro(b.market_sold_wh + b.retail_sold_wh, TARIFF.feed_in_micro_per_kwh)
    # retail fallback settles exactly the unmatched energy
    assert sum(b.retail_bought_wh + b.retail_sold_wh for b in bills.values()) == sum(
        u.energy_wh for u in r.unmatched
    )
    assert list(bills) == sorted(bills)


def test_bill_hand_example() -> None:
    buyer, seller = OWNERS[0], OWNERS[2]
    orders = [
        Order(oid(1), buyer, "buy", 2000, 25),
        Order(oid(3), buyer, "buy", 1000, 5),  # below every ask -> retail at 30
        Order(oid(2), seller, "sell", 2000, 10),
    ]
    r = clear_slot(orders, fees=FEES, slot_of_day=0)
    assert r.price_micro_per_kwh == 17  # lo = max(ask 10, next bid 5), hi = bid 25
    bills = compute_bills(r, TARIFF)
    b, s = bills[buyer], bills[seller]
    assert (b.market_energy_cost_micro, b.grid_fee_micro, b.retail_cost_micro) == (34, 2 * (3 + 1 + 4), 30)
    assert b.total_micro == 34 + 16 + 30 and b.baseline_total_micro == 90 and b.savings_micro == 10
    assert s.total_micro == -34 and s.baseline_total_micro == -16 and s.savings_micro == 18


def test_fee_schedule_validation() -> None:
    with pytest.raises(MarketInputError):
        GridFees(flat_micro_per_kwh=-1)
    with pytest.raises(MarketInputError):
        GridFees(distance_micro_per_kwh={("a", "b"): 1, ("b", "a"): 2})
    with pytest.raises(MarketInputError):
        GridFees(tou_micro_per_kwh=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(MarketInputError):
        RetailTariff(import_micro_per_kwh=1.5, feed_in_micro_per_kwh=0)  # type: ignore[arg-type]
