"""Cross-check against a published market library, pymarket 0.7.6 (Kiedanki, PyPI).

pymarket's mechanisms are *different* mechanisms from ours, so only what theory says must
hold between them is compared, on the same books (quantities = Wh, prices = micro/kWh, as
floats; all values are small integers, exact in float64):

* ``pymarket.statistics.maximum_aggregated_utility`` solves the bilateral welfare LP
  (pulp/CBC). Our uniform auction is efficient, so its welfare must EQUAL that optimum.
* ``pymarket.statistics.maximum_traded_volume`` maximises volume over compatible pairs
  (bid >= ask) regardless of welfare, so it is an UPPER bound on our volume.
* ``huang`` (Huang, Scheller-Wolf & Sycara 2002) is a strategy-proof, budget-surplus
  mechanism that excludes the price-setting orders (trade reduction), so its traded volume
  and welfare are LOWER bounds on ours.
``muda`` and ``p2p`` draw random numbers, so they are not compared.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings

from gridledger.market import Order, clear_uniform
from tests.market.books import books, welfare

pm = pytest.importorskip("pymarket", reason="pip install 'pymarket>=0.7.6'")

PEER = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def to_pymarket(orders: list[Order]) -> pm.BidManager:
    bm = pm.BidManager()
    for user, o in enumerate(orders):
        bm.add_bid(float(o.energy_wh), float(o.price_micro_per_kwh), user, o.side == "buy")
    return bm


def ours(orders: list[Order]) -> tuple[int, int]:
    r = clear_uniform(orders)
    return r.volume_wh, welfare(orders, [(t.buy_order_id, t.sell_order_id, t.energy_wh) for t in r.trades])


def two_sided(orders: list[Order]) -> bool:
    return any(o.side == "buy" for o in orders) and any(o.side == "sell" for o in orders)


@PEER
@given(books(max_orders=10, max_price=1_000))
def test_welfare_equals_pymarket_maximum_aggregated_utility(orders: list[Order]) -> None:
    if not two_sided(orders):
        return
    _, w = ours(orders)
    status, objective, _ = pm.statistics.maximum_aggregated_utility(to_pymarket(orders).get_df())
    assert status == "Optimal"
    objective = objective or 0.0  # pulp reports None for an empty objective (no pair)
    assert abs(w - objective) <= 1e-6 * max(1.0, abs(objective))


@PEER
@given(books(max_orders=10, max_price=1_000))
def test_volume_at_most_pymarket_maximum_traded_volume(orders: list[Order]) -> None:
    if not two_sided(orders):
        return
    v, _ = ours(orders)
    status, objective, _ = pm.statistics.maximum_traded_volume(to_pymarket(orders).get_df())
    assert status == "Optimal"
    assert v <= (objective or 0.0) + 1e-6


@PEER
@given(books(max_orders=14, max_price=1_000))
def test_huang_trades_no_more_and_no_better_than_us(orders: list[Order]) -> None:
    mkt = pm.Market()
    for user, o in enumerate(orders):
        mkt.accept_bid(float(o.energy_wh), float(o.price_micro_per_kwh), user, o.side == "buy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trans, _ = mkt.run("huang")
    df = trans.get_df()
    ix = list(orders)
    # Huang pays buyers' and sellers' sides at two prices; its welfare (gains from trade at
    # true = bid values) is sum over buyer rows q*b minus seller rows q*a.
    bought = sum(q for bid, q in zip(df.bid, df.quantity) if ix[bid].side == "buy")
    sold = sum(q for bid, q in zip(df.bid, df.quantity) if ix[bid].side == "sell")
    w_huang = sum(
        q * ix[bid].price_micro_per_kwh * (1 if ix[bid].side == "buy" else -1)
        for bid, q in zip(df.bid, df.quantity)
    )
    v, w = ours(orders)
    assert abs(bought - sold) <= 1e-6 * max(1.0, bought)
    assert bought <= v + 1e-6
    assert w_huang <= w + 1e-6 * max(1.0, abs(w))
