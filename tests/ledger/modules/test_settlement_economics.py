"""Settlement and reputation economics (issue 21 item 6), through the real execution path:
retail import secured by a hold a member cannot move away, debts carried and collected,
reputation earned by economic substance only. (Buyers compensated before the grid:
``test_money_rounding.test_two_buyers_are_compensated_before_the_grid``.)"""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.reputation import reputation_of
from gridledger.ledger.modules.reputation.keeper import get_record, put_record
from tests.ledger.modules.world import World, make_world, t_clear, t_order, t_read, t_settle

TAU = 250_000


def transfer(w: World, i: int, to: bytes, amount: int) -> bytes:
    return w.tx(w.users[i], "bank/transfer", {"to": to, "amount_micro": amount})


def meter_slot(w: World, slot: int, readings: dict[int, tuple[int, int]],
               extra: list[bytes] | None = None) -> dict[bytes, dict[str, Any]]:
    """Readings for ``slot``, then its settlement; ``extra`` txs go in the block between
    (after the previous settlement, before this one). Returns this slot's bills."""
    w.ok([w.reading(i, slot, *r) for i, r in sorted(readings.items())] + (extra or []), t_read(slot))
    out = w.ok([], t_settle(slot))
    return {e["addr"]: e for e in out.block_events if e["type"] == "bill"}


def run_escape(params: dict[str, Any]) -> tuple[World, dict[bytes, dict[str, Any]]]:
    """Member 2 imports 1 kWh per slot; after slot 3 is settled it moves its whole spendable
    balance to member 3, then slot 4 is settled."""
    w = make_world(params=params)
    meter_slot(w, 3, {2: (1_000, 0)})
    bills = meter_slot(w, 4, {2: (1_000, 0)},
                       extra=[transfer(w, 2, w.addr(3), w.bal(w.addr(2)))])
    return w, bills


def test_moving_the_balance_away_does_not_escape_retail() -> None:
    w, bills = run_escape({})
    bill = bills[w.addr(2)]
    assert bill["retail_net_micro"] == 1_000 * TAU // 1_000 and bill["unpaid_micro"] == 0
    assert w.events("unpaid") == []
    # the hold paid; it could not be topped up again, and the DSO is told so
    (short,) = w.events("retail_hold_short")
    assert short["addr"] == w.addr(2) and short["held_micro"] == 3 * TAU - TAU
    assert w.lock(w.addr(2)) == w.retail_hold(w.addr(2)) == 2 * TAU


def test_without_the_hold_the_same_escape_leaves_retail_unpaid() -> None:
    """Removal: with no hold (``retail_hold_slots`` 0) the grid is left with the bill."""
    w, bills = run_escape({"retail_hold_slots": 0})
    assert bills[w.addr(2)]["unpaid_micro"] == 1_000 * TAU // 1_000
    assert reputation_of(w.app.state, w.addr(2)) == 400  # non-payment sanctioned, money gone


def test_debt_is_carried_and_collected_when_money_returns() -> None:
    w = make_world(params={"retail_hold_slots": 0}, balances={2: 100_000})
    bills = meter_slot(w, 3, {2: (1_000, 0)})
    assert bills[w.addr(2)]["unpaid_micro"] == 150_000 and bills[w.addr(2)]["debt_micro"] == 150_000
    # money arrives; the next settlement collects the debt before anything else
    bills = meter_slot(w, 4, {2: (0, 0)}, extra=[transfer(w, 3, w.addr(2), 1_000_000)])
    bill = bills[w.addr(2)]
    assert bill["debt_paid_micro"] == 150_000 and bill["debt_micro"] == 0
    assert bill["total_micro"] == 150_000  # what left its account in this settlement
    assert w.total(w.addr(2)) == 100_000 + 1_000_000 - 250_000


def test_hold_follows_the_peak_and_is_released() -> None:
    w = make_world()
    meter_slot(w, 3, {2: (2_000, 0)})
    assert w.retail_hold(w.addr(2)) == 3 * 2_000 * TAU // 1_000
    for slot in range(4, 12):  # low import: the peak decays by an eighth per slot ...
        meter_slot(w, slot, {2: (100, 0)})
    peak = 2_000
    for _ in range(4, 12):
        peak -= peak // 8
    assert w.retail_hold(w.addr(2)) == 3 * max(peak, 500) * TAU // 1_000 < 3 * 2_000 * TAU // 1_000
    for slot in range(12, 30):  # ... down to the floor of retail_hold_min_wh (500 Wh a slot)
        meter_slot(w, slot, {2: (100, 0)})
    assert w.lock(w.addr(2)) == w.retail_hold(w.addr(2)) == 3 * 500 * TAU // 1_000


def set_score(w: World, addr: bytes, score: int) -> None:
    put_record(w.app.state, addr, {**get_record(w.app.state, addr), "score": score})


def trade_slot(w: World, slot: int, orders: list[tuple[int, str, int, int]],
               readings: dict[int, tuple[int, int]]) -> None:
    w.ok([w.order(i, slot, side, e, p) for i, side, e, p in orders], t_order(slot))
    w.ok([], t_clear(slot))
    meter_slot(w, slot, readings)


def test_one_wh_trades_at_price_zero_do_not_wash_a_score() -> None:
    """Two colluders trade 1 Wh at price 0, four times a slot, for six slots: the old rule
    gave +5 per trade (+120 each, out of 'watch'); no substance, no gain."""
    w = make_world(params={"grid_fee_flat_micro_per_kwh": 0})
    for i in (0, 1):
        set_score(w, w.addr(i), 300)
    for slot in range(3, 21, 3):
        trade_slot(w, slot, [(0, "sell", 1, 0)] * 4 + [(1, "buy", 1, 0)] * 4,
                   {0: (0, 4), 1: (4, 0)})
    assert reputation_of(w.app.state, w.addr(0)) == reputation_of(w.app.state, w.addr(1)) == 300


def test_gain_follows_substance_and_is_capped_per_slot() -> None:
    w = make_world()
    for i in (0, 1):
        set_score(w, w.addr(i), 300)
    # 400 Wh at 150 000: below one 500 Wh unit -> nothing
    trade_slot(w, 3, [(0, "sell", 400, 100_000), (1, "buy", 400, 200_000)], {0: (0, 400), 1: (400, 0)})
    assert reputation_of(w.app.state, w.addr(0)) == 300
    # 1 kWh: two units, +10; split into four trades it earns the same
    trade_slot(w, 6, [(0, "sell", 250, 100_000)] * 4 + [(1, "buy", 250, 200_000)] * 4,
               {0: (0, 1_000), 1: (1_000, 0)})
    assert reputation_of(w.app.state, w.addr(0)) == reputation_of(w.app.state, w.addr(1)) == 310
    # 10 kWh in one slot (20 units): capped at rep_gain_max_per_slot (15)
    trade_slot(w, 9, [(0, "sell", 10_000, 100_000), (1, "buy", 10_000, 200_000)],
               {0: (0, 10_000), 1: (10_000, 0)})
    assert reputation_of(w.app.state, w.addr(0)) == 325
