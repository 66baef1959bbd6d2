"""A grid-fee change by the DSO reaches the trades and bills of the slots it names (issue
13.3): the market prices each slot with the fees in force for it when it clears, and buy
escrows are sized for the highest fee the DSO may set, so an order placed before a rise is
still covered."""

from __future__ import annotations

from gridledger.ledger.modules.market.keeper import trades_of_slot
from gridledger.market.rounding import ceil_micro
from gridledger.types import payment_micro
from tests.ledger.modules.world import make_world, t_clear, t_order, t_read, t_settle

BOUNDS = {"grid_fee_min_micro_per_kwh": 10_000, "grid_fee_max_micro_per_kwh": 90_000}
V3 = {"versions": {"governance": 3}}
SLOT = 5


def _fees(w, from_slot: int, flat: int, at: int):
    return w.ok([w.tx(w.dso, "governance/set_grid_fees", {
        "from_slot": from_slot, "flat_micro_per_kwh": flat, "tou_micro_per_kwh": []})], at)


def test_fee_raised_after_an_order_is_charged_and_covered():
    w = make_world(params=BOUNDS, sections=V3)
    limit = 200_000
    w.ok([w.order(0, SLOT, "sell", 1_000, 100_000), w.order(1, SLOT, "buy", 1_000, limit)],
         t_order(SLOT))
    # the buyer's escrow already covers the highest fee the DSO may set
    assert w.lock(w.addr(1)) == ceil_micro(1_000 * limit) + ceil_micro(1_000 * 90_000)
    _fees(w, SLOT, 75_000, t_order(SLOT) + 10)  # the gate is still open
    assert w.app.query(f"governance/grid_fees/{SLOT}")["rate_micro_per_kwh"] == 75_000
    w.ok([], t_clear(SLOT))
    (t,) = trades_of_slot(w.app.state, SLOT)
    assert t.grid_fee_micro_per_kwh == 75_000
    w.ok([w.reading(0, SLOT, 0, 1_000), w.reading(1, SLOT, 1_000, 0)], t_read(SLOT))
    settled = w.ok([], t_settle(SLOT))
    bill = next(e for e in settled.block_events if e["type"] == "bill" and e["addr"] == w.addr(1))
    assert bill["grid_fee_micro"] == payment_micro(1_000, 75_000)
    assert w.money() == w.app.query("bank/money")["supply_micro"]


def test_slots_before_the_change_keep_the_old_fee():
    w = make_world(params=BOUNDS, sections=V3)
    _fees(w, SLOT + 1, 75_000, t_order(SLOT))
    w.ok([w.order(0, SLOT, "sell", 500, 100_000), w.order(1, SLOT, "buy", 500, 200_000)],
         t_order(SLOT) + 1)
    w.ok([], t_clear(SLOT))
    (t,) = trades_of_slot(w.app.state, SLOT)
    assert t.grid_fee_micro_per_kwh == 30_000


def test_without_bounds_escrows_are_unchanged():
    w = make_world()
    w.ok([w.order(1, SLOT, "buy", 1_000, 200_000)], t_order(SLOT))
    assert w.lock(w.addr(1)) == ceil_micro(1_000 * 200_000) + ceil_micro(1_000 * 30_000)
