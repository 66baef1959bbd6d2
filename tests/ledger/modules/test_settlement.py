"""Settlement against meter readings, retail fallback, non-delivery, disputes."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.market.keeper import slot_record, trade
from gridledger.ledger.modules.metering.keeper import readings_for_slot
from gridledger.ledger.modules.reputation import reputation_of
from gridledger.types import payment_micro
from tests.ledger.modules.world import (
    World,
    make_world,
    t_clear,
    t_order,
    t_read,
    t_settle,
)

TAU, PHI, PI, FEE = 250_000, 80_000, 350_000, 30_000  # default tariff, feed-in, imbalance, fee
SLOT = 3


def run_slot(w: World, orders: list[tuple[int, str, int, int]],
             readings: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """Orders -> clearing -> readings -> settlement; returns trades, bills and balances."""
    before = {i: w.total(w.addr(i)) for i in range(len(w.users))}
    grid0 = w.total(w.dso.address)
    w.ok([w.order(i, SLOT, side, e, p) for i, side, e, p in orders], t_order(SLOT))
    cleared = w.ok([], t_clear(SLOT))
    w.ok([w.reading(i, SLOT, imp, exp) for i, (imp, exp) in sorted(readings.items())], t_read(SLOT))
    settled = w.ok([], t_settle(SLOT))
    bills = {e["addr"]: e for e in settled.block_events if e["type"] == "bill"}
    for i in range(len(w.users)):
        # a bill is exactly what the participant's money did in this slot
        bill = bills.get(w.addr(i))
        assert w.total(w.addr(i)) - before[i] == (-bill["total_micro"] if bill else 0)
        assert w.lock(w.addr(i)) == w.retail_hold(w.addr(i))
    return {"trades": [e for e in cleared.block_events if e["type"] == "trade"],
            "events": settled.block_events, "bills": bills, "before": before,
            "grid_delta": w.total(w.dso.address) - grid0}


def test_honest_slot_pays_seller_fee_and_retail() -> None:
    w = make_world()
    money = w.money()
    out = run_slot(w, [(0, "sell", 1_000, 100_000), (1, "buy", 1_000, 200_000)],
                   {0: (0, 1_000), 1: (1_200, 0), 2: (500, 0)})
    (t,) = out["trades"]
    price = t["price_micro_per_kwh"]
    seller, buyer, other = (out["bills"][w.addr(i)] for i in range(3))
    assert seller["total_micro"] == -payment_micro(1_000, price)
    assert buyer["total_micro"] == (payment_micro(1_000, price) + payment_micro(1_000, FEE)
                                    + payment_micro(200, TAU))
    assert buyer["retail_import_wh"] == 200 and buyer["shortfall_wh"] == 0
    # a participant outside the market is billed at retail, same as its baseline
    assert other["total_micro"] == other["baseline_total_micro"] == payment_micro(500, TAU)
    assert buyer["total_micro"] < buyer["baseline_total_micro"]  # the market saved money
    assert seller["total_micro"] < seller["baseline_total_micro"]
    assert out["grid_delta"] == payment_micro(1_000, FEE) + payment_micro(700, TAU)
    assert w.money() == money
    # 1 kWh paid 150 000: two units of substance (500 Wh and 25 000 micro each), +5 each
    assert reputation_of(w.app.state, w.addr(0)) == reputation_of(w.app.state, w.addr(1)) == 510
    rec = slot_record(w.app.state, SLOT)
    assert rec is not None and rec.status == "settled" and rec.delivered_wh == 1_000


def test_non_delivery_buyer_made_whole_seller_pays_from_deposit() -> None:
    """THREATS row 6 non-delivery: buyer loss 0, cheater gain <= 0, cheater sanctioned."""
    w = make_world()
    out = run_slot(w, [(0, "sell", 1_000, 100_000), (1, "buy", 1_000, 200_000)],
                   {0: (0, 0), 1: (1_000, 0)})
    price = out["trades"][0]["price_micro_per_kwh"]
    buyer, seller = out["bills"][w.addr(1)], out["bills"][w.addr(0)]
    honest_cost = payment_micro(1_000, price) + payment_micro(1_000, FEE)
    # the buyer's energy came from the grid at retail, topped up by the seller's deposit
    assert buyer["total_micro"] <= honest_cost  # buyer loss 0
    assert buyer["compensation_micro"] == payment_micro(1_000, TAU) - payment_micro(1_000, price)
    assert seller["total_micro"] == payment_micro(1_000, PI)  # gain < 0
    (nd,) = [e for e in out["events"] if e["type"] == "non_delivery"]
    assert nd["shortfall_wh"] == 1_000 and nd["compensation_micro"] + nd["penalty_micro"] == payment_micro(1_000, PI)
    assert reputation_of(w.app.state, w.addr(0)) == 400
    assert trade(w.app.state, SLOT, 0).delivered_wh == 0


def test_partial_delivery_and_over_export() -> None:
    w = make_world()
    out = run_slot(w, [(0, "sell", 1_000, 100_000), (1, "buy", 1_000, 200_000)],
                   {0: (0, 600), 1: (1_000, 0)})
    price = out["trades"][0]["price_micro_per_kwh"]
    seller = out["bills"][w.addr(0)]
    assert seller["market_sold_wh"] == 600 and seller["shortfall_wh"] == 400
    assert seller["total_micro"] == -payment_micro(600, price) + payment_micro(400, PI)
    w2 = make_world()
    out = run_slot(w2, [(0, "sell", 1_000, 100_000), (1, "buy", 1_000, 200_000)],
                   {0: (0, 1_500), 1: (1_000, 0)})
    seller = out["bills"][w2.addr(0)]
    assert seller["retail_export_wh"] == 500  # the extra export is fed in at φ
    assert seller["total_micro"] == -payment_micro(1_000, out["trades"][0]["price_micro_per_kwh"]) - payment_micro(500, PHI)


def test_missing_readings_rules() -> None:
    w = make_world()
    out = run_slot(w, [(0, "sell", 1_000, 100_000), (1, "buy", 1_000, 200_000),
                       (2, "sell", 1_000, 100_000), (3, "buy", 1_000, 200_000)],
                   {1: (1_000, 0), 2: (0, 1_000)})  # seller 0 and buyer 3 send nothing
    bills = out["bills"]
    assert bills[w.addr(0)]["estimated"] and bills[w.addr(0)]["shortfall_wh"] == 1_000
    assert bills[w.addr(3)]["estimated"] and bills[w.addr(3)]["retail_import_wh"] == 0
    # the buyer without a reading pays for what was delivered to it: withholding never pays
    delivered_to_3 = bills[w.addr(3)]["market_bought_wh"]
    assert bills[w.addr(3)]["market_cost_micro"] > 0 or delivered_to_3 == 0
    reasons = {(e["addr"], e["reason"]) for e in out["events"] if e["type"] == "reputation"}
    assert (w.addr(0), "missing_reading") in reasons and (w.addr(0), "non_delivery") in reasons
    assert (w.addr(3), "missing_reading") in reasons


def test_buyer_who_does_not_take_energy_sells_surplus_at_feed_in() -> None:
    w = make_world()
    out = run_slot(w, [(0, "sell", 1_000, 100_000), (1, "buy", 1_000, 200_000)],
                   {0: (0, 1_000), 1: (400, 0)})
    buyer = out["bills"][w.addr(1)]
    price = out["trades"][0]["price_micro_per_kwh"]
    assert buyer["retail_export_wh"] == 600
    assert buyer["total_micro"] == (payment_micro(1_000, price) + payment_micro(1_000, FEE)
                                    - payment_micro(600, PHI))
    assert trade(w.app.state, SLOT, 0).received_wh == 400


def test_retail_non_payment_is_partial_and_sanctioned() -> None:
    w = make_world(balances={2: 10_000})
    out = run_slot(w, [], {2: (1_000, 0)})  # owes 250_000 at retail, holds 10_000
    (unpaid,) = [e for e in out["events"] if e["type"] == "unpaid"]
    assert unpaid["amount_micro"] == payment_micro(1_000, TAU) - 10_000
    assert w.total(w.addr(2)) == 0 and reputation_of(w.app.state, w.addr(2)) == 400


def _settled_trade(w: World, seller_export: int, buyer_import: int) -> None:
    run_slot(w, [(0, "sell", 1_000, 100_000), (1, "buy", 1_000, 200_000)],
             {0: (0, seller_export), 1: (buyer_import, 0)})


def _claim(w: World, i: int, claim: str, trade: int = 0, slot: int = SLOT):
    return w.tx(w.users[i], "disputes/claim", {"slot": slot, "trade": trade, "claim": claim})


def test_false_non_receipt_claim_is_lost() -> None:
    """THREATS row 6 false-non-receipt: claim lost, buyer gain <= 0, sanctioned."""
    w = make_world()
    _settled_trade(w, seller_export=1_000, buyer_import=1_000)
    buyer0, seller0 = w.total(w.addr(1)), w.total(w.addr(0))
    rep0 = reputation_of(w.app.state, w.addr(1))
    r = w.ok([_claim(w, 1, "non-receipt")], t_settle(SLOT) + 10)
    (d,) = [e for e in r.receipts[0].events if e["type"] == "dispute_decided"]
    assert d["outcome"] == "rejected" and d["evidence"]["buyer_import_wh"] == 1_000
    assert w.total(w.addr(1)) - buyer0 == -50_000 <= 0  # the fee: gain <= 0
    assert w.total(w.addr(0)) - seller0 == 50_000          # paid to the wrongly accused
    assert reputation_of(w.app.state, w.addr(1)) == rep0 - 150


def test_true_non_delivery_claim_upheld_at_no_cost() -> None:
    w = make_world()
    _settled_trade(w, seller_export=0, buyer_import=1_000)
    buyer0 = w.total(w.addr(1))
    r = w.ok([_claim(w, 1, "non-delivery"), _claim(w, 1, "non-receipt")], t_settle(SLOT) + 10)
    ds = [e for rc in r.receipts for e in rc.events if e["type"] == "dispute_decided"]
    assert [d["outcome"] for d in ds] == ["upheld", "upheld"]
    assert ds[0]["remedy_micro"] == trade(w.app.state, SLOT, 0).compensation_micro > 0
    assert w.total(w.addr(1)) == buyer0 and ds[0]["fee_micro"] == 0


def test_claim_rules() -> None:
    w = make_world()
    w.ok([w.order(0, SLOT, "sell", 1_000, 100_000), w.order(1, SLOT, "buy", 1_000, 200_000)],
         t_order(SLOT))
    w.ok([], t_clear(SLOT))
    r = w.block([_claim(w, 1, "non-delivery")], t_clear(SLOT) + 1)
    assert r.receipts[0].rule == "not-settled"
    w.ok([w.reading(0, SLOT, 0, 1_000), w.reading(1, SLOT, 1_000, 0)], t_read(SLOT))
    w.ok([], t_settle(SLOT))
    r = w.block([_claim(w, 0, "non-delivery"), _claim(w, 1, "non-delivery", trade=7),
                 _claim(w, 1, "non-delivery"), _claim(w, 1, "non-delivery"),
                 _claim(w, 1, "bogus")], t_settle(SLOT) + 1)
    assert [x.rule for x in r.receipts] == ["not-party", "no-trade", "", "already-decided",
                                            "invalid-body"]
    r = w.block([_claim(w, 1, "non-receipt")], t_settle(SLOT) + 86_400)
    assert r.receipts[0].rule == "dispute-window-closed"
    # that block also pruned the slot: state keeps only what can still be disputed
    assert trade(w.app.state, SLOT, 0) is None and slot_record(w.app.state, SLOT) is None
    assert readings_for_slot(w.app.state, SLOT) == []
    r = w.block([_claim(w, 1, "non-receipt")], t_settle(SLOT) + 86_401)
    assert r.receipts[0].rule == "no-trade"


def test_reading_rules() -> None:
    w = make_world()
    r = w.block([w.reading(0, SLOT, 1, 1)], t_read(SLOT) - 20)  # the slot has not ended
    assert r.receipts[0].rule == "reading-early"
    r = w.block([w.reading(0, SLOT, 1, 1), w.reading(0, SLOT, 2, 2),
                 w.tx(w.users[0], "metering/reading", {"slot": SLOT, "import_wh": 1,
                                                       "export_wh": 1, "firmware": bytes(32)})],
                t_read(SLOT))
    assert [x.rule or "ok" for x in r.receipts] == ["ok", "one-reading-per-slot", "unauthorized"]
    r = w.block([w.reading(1, SLOT, 1, 1)], t_settle(SLOT))
    assert r.receipts[0].rule == "reading-late"


def test_fake_bids_with_means_do_not_pay() -> None:
    """THREATS row 6 fake-bids with escrow posted: a fake ask (no generation) that drags the
    price down and a fake bid (no consumption) both cost their authors; victims lose 0."""
    w = make_world()
    out = run_slot(w, [(0, "sell", 1_000, 100_000), (2, "sell", 2_000, 0),   # u2: fake ask
                       (1, "buy", 2_000, 200_000), (3, "buy", 1_000, 400_000)],  # u3: fake bid
                   {0: (0, 1_000), 1: (2_000, 0), 2: (0, 0), 3: (0, 0)})
    bills = out["bills"]
    assert bills[w.addr(2)]["shortfall_wh"] > 0
    assert bills[w.addr(2)]["total_micro"] > 0 and bills[w.addr(3)]["total_micro"] >= 0  # gain <= 0
    # the honest buyer pays no more than its trades' prices + fees, and less than retail
    honest = [t for t in out["trades"] if t["buyer"] == w.addr(1)]
    bought = sum(t["energy_wh"] for t in honest)
    cap = (sum(t["payment_micro"] + t["grid_fee_micro"] for t in honest)
           + payment_micro(2_000 - bought, TAU))
    assert bills[w.addr(1)]["total_micro"] <= cap
    assert bills[w.addr(1)]["total_micro"] <= bills[w.addr(1)]["baseline_total_micro"]
    # the honest seller is paid for everything it delivered
    assert bills[w.addr(0)]["shortfall_wh"] == 0


def test_distance_grid_fee_shows_on_each_bill():
    """Same feeder vs across the transformer: the network charge differs per trade."""
    params = {"grid_fee_flat_micro_per_kwh": 10_000,
              "grid_fee_zones": [["cp0", "feeder-a"], ["cp1", "feeder-a"], ["cp2", "feeder-b"]],
              "grid_fee_distance_micro_per_kwh": [["feeder-a", "feeder-a", 5_000],
                                                  ["feeder-a", "feeder-b", 40_000]],
              "grid_fee_default_distance_micro_per_kwh": 60_000}
    w = make_world(4, params)
    # seller 0 (feeder a) sells to buyer 1 (same feeder) and buyer 2 (other feeder)
    out = run_slot(w, [(0, "sell", 2_000, 100_000), (1, "buy", 1_000, 200_000),
                       (2, "buy", 1_000, 200_000)],
                   {0: (0, 2_000), 1: (1_000, 0), 2: (1_000, 0)})
    fee_by_buyer = {t["buyer"]: t["grid_fee_micro"] for t in out["trades"]}
    assert fee_by_buyer[w.addr(1)] == payment_micro(1_000, 10_000 + 5_000)
    assert fee_by_buyer[w.addr(2)] == payment_micro(1_000, 10_000 + 40_000)
