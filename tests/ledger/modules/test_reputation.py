"""Reputation: scores, graduated sanctions, appeals (never a permanent ban)."""

from __future__ import annotations

import pytest

from gridledger.ledger.modules.market.handlers import Handlers
from gridledger.ledger.modules.reputation import deposit_pct, reputation_of, tier_of
from gridledger.ledger.modules.reputation.keeper import appeal_wait, get_record, put_record, record
from gridledger.ledger.params import load_params
from gridledger.types import payment_micro
from tests.ledger.modules.world import S, World, make_world, t_clear, t_order, t_read, t_settle


def fail_delivery(w: World, slot: int) -> None:
    w.ok([w.order(0, slot, "sell", 1_000, 100_000), w.order(1, slot, "buy", 1_000, 200_000)],
         t_order(slot))
    w.ok([], t_clear(slot))
    w.ok([w.reading(0, slot, 0, 0), w.reading(1, slot, 1_000, 0)], t_read(slot))
    w.ok([], t_settle(slot))


def set_score(w: World, addr: bytes, score: int, penalty_slot: int) -> None:
    rec = get_record(w.app.state, addr)
    put_record(w.app.state, addr, {**rec, "score": score, "last_penalty_slot": penalty_slot})


def test_neutral_default_and_sanction_tiers() -> None:
    w = make_world()
    assert reputation_of(w.app.state, w.addr(0)) == 500 and tier_of(w.app.state, w.addr(0)) == "good"
    fail_delivery(w, 3)
    fail_delivery(w, 6)
    st = w.app.state
    assert reputation_of(st, w.addr(0)) == 300 and tier_of(st, w.addr(0)) == "watch"
    # graduated sanction: a watched seller posts 150 % of the base deposit
    w.ok([w.order(0, 10, "sell", 1_000, 100_000)], t_order(10))
    assert w.lock(w.addr(0)) - w.retail_hold(w.addr(0)) == payment_micro(1_000, 350_000 * 150 // 100)
    assert deposit_pct(st, w.addr(0)) == 150
    set_score(w, w.addr(0), 200, 8)
    assert tier_of(st, w.addr(0)) == "restricted" and deposit_pct(st, w.addr(0)) == 300


def appeal(w: World, at: int):
    return w.block([w.tx(w.users[0], "reputation/appeal", {})], at).receipts[0]


def test_suspension_blocks_trading_until_graduated_appeals() -> None:
    """Issue 21 item 6: an appeal used to restore a suspended seller to good standing after
    a few clean slots. Now each appeal lifts one tier, and each wait doubles."""
    w = make_world(params={"appeal_clean_slots": 4})
    set_score(w, w.addr(0), 40, penalty_slot=1)
    r = w.block([w.order(0, 4, "buy", 100, 1)], t_order(4))
    assert r.receipts[0].rule == "reputation-suspended"
    # slot 3 at t_order(4): two slots since the penalty, four needed
    rc = appeal(w, t_order(4) + 1)
    assert rc.rule == "appeal-too-early" and "of 4" in rc.detail
    assert appeal(w, 5 * S).ok
    st = w.app.state
    assert reputation_of(st, w.addr(0)) == 100 and tier_of(st, w.addr(0)) == "restricted"
    w.ok([w.order(0, 8, "buy", 100, 1)], t_order(8))  # trading again, under restriction
    # the next step waits twice as long: 8 clean slots since the first appeal (slot 5)
    p = load_params(st)
    assert appeal_wait(record(st, w.addr(0)), 12, p) == 8
    assert appeal(w, 13 * S).ok and reputation_of(st, w.addr(0)) == 250  # watch
    assert appeal_wait(record(st, w.addr(0)), 28, p) == 16
    assert appeal(w, 29 * S).ok and tier_of(st, w.addr(0)) == "good"
    assert reputation_of(st, w.addr(0)) == 400  # 3 steps over 24 clean slots, not 4
    assert appeal(w, 60 * S).rule == "appeal-not-sanctioned"
    # a repeat offence soon after waits longer than the first time (32, capped by the max)
    set_score(w, w.addr(0), 40, penalty_slot=61)
    rc = appeal(w, (61 + 8) * S)
    assert rc.rule == "appeal-too-early" and "8 of 32" in rc.detail
    assert appeal(w, (61 + 32) * S).ok and reputation_of(st, w.addr(0)) == 100


def test_appeal_memory_fades_after_a_long_clean_record() -> None:
    w = make_world(params={"appeal_clean_slots": 4, "appeal_clean_slots_max": 16})
    set_score(w, w.addr(0), 200, penalty_slot=0)
    assert appeal(w, 4 * S).ok and reputation_of(w.app.state, w.addr(0)) == 250
    rc = appeal(w, 10 * S)   # one recent appeal: the wait doubled
    assert rc.rule == "appeal-too-early" and "of 8" in rc.detail
    set_score(w, w.addr(0), 200, penalty_slot=0)
    # 4 x appeal_clean_slots_max = 64 slots after the last appeal, the count is forgotten
    assert appeal(w, (4 + 64) * S).ok
    assert get_record(w.app.state, w.addr(0))["appeals"] == 1


def test_validator_quorum_restores_without_waiting() -> None:
    w = make_world(n_validators=3)
    set_score(w, w.addr(2), 10, penalty_slot=0)
    r = w.ok([w.tx(w.validators[0], "reputation/approve_appeal", {"addr": w.addr(2)})], 100)
    assert reputation_of(w.app.state, w.addr(2)) == 10
    r = w.block([w.tx(w.validators[0], "reputation/approve_appeal", {"addr": w.addr(2)}),
                 w.tx(w.users[1], "reputation/approve_appeal", {"addr": w.addr(2)}),
                 w.tx(w.validators[1], "reputation/approve_appeal", {"addr": w.addr(2)})], 200)
    assert [x.rule or "ok" for x in r.receipts] == ["appeal-already-approved", "unauthorized", "ok"]
    assert reputation_of(w.app.state, w.addr(2)) == 400
    assert get_record(w.app.state, w.addr(2))["approvals"] == []


def test_scores_stay_in_range_and_recover_with_trades() -> None:
    w = make_world()
    set_score(w, w.addr(0), 998, penalty_slot=-1)
    w.ok([w.order(0, 3, "sell", 1_000, 100_000), w.order(1, 3, "buy", 1_000, 200_000)], t_order(3))
    w.ok([], t_clear(3))
    w.ok([w.reading(0, 3, 0, 1_000), w.reading(1, 3, 1_000, 0)], t_read(3))
    w.ok([], t_settle(3))
    assert reputation_of(w.app.state, w.addr(0)) == 1000


def suspended_offer(w: World, slot: int, ask: int) -> None:
    """User 0 (suspended) offers 1 kWh at ``ask``, user 1 bids 200 000 for it; the slot
    clears, both meters read, the slot settles."""
    w.ok([w.order(0, slot, "sell", 1_000, ask), w.order(1, slot, "buy", 1_000, 200_000)],
         t_order(slot))
    w.ok([], t_clear(slot))
    w.ok([w.reading(0, slot, 0, 1_000), w.reading(1, slot, 1_000, 0)], t_read(slot))
    w.ok([], t_settle(slot))


def test_a_suspended_member_must_offer_its_supply_at_the_reference_level() -> None:
    """Market-power mitigation with a must-offer obligation, not exclusion: a suspended
    member's sell is admitted, mitigated to the feed-in tariff (surveillance's sell
    reference), so the sanction takes its price-setting, never its supply off the market;
    it may not buy, replace or commit, and its sales earn no reputation (an appeal is the
    way back)."""
    w = make_world()
    set_score(w, w.addr(0), 40, penalty_slot=1)
    feed_in = load_params(w.app.state).feed_in_micro_per_kwh
    refused = w.block([w.order(0, 4, "buy", 100, 100_000), w.commit(0, 4, "sell", 100, 1)[0]],
                      t_order(4))
    assert [r.rule for r in refused.receipts] == ["reputation-suspended"] * 2
    score = reputation_of(w.app.state, w.addr(0))   # 40 less the refused transactions
    suspended_offer(w, 5, 600_000)   # withholding-level ask: 2.4 x the retail tariff
    [m] = w.events("offer_mitigated")
    assert (m["owner"], m["asked_micro_per_kwh"], m["price_micro_per_kwh"],
            m["reason"]) == (w.addr(0), 600_000, feed_in, "reputation-suspended")
    placed = [e for e in w.events("order_placed") if e["owner"] == w.addr(0)]
    assert [e["price_micro_per_kwh"] for e in placed] == [feed_in]
    [t] = w.events("trade")
    assert t["seller"] == w.addr(0) and t["energy_wh"] == 1_000
    assert reputation_of(w.app.state, w.addr(0)) == score   # delivered, but no gain
    # an ask already at or below the reference is left as it is
    suspended_offer(w, 8, feed_in - 1)
    assert len(w.events("offer_mitigated")) == 1 and len(w.events("trade")) == 2


def test_without_the_must_offer_mitigation_the_suspended_supply_is_withheld(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Removal: a suspended member's sell admitted at its own ask (no mitigation) keeps its
    supply off the market — the honest buyer's 200 000 bid meets nothing."""
    monkeypatch.setattr(Handlers, "_must_offer_price",
                        lambda self, state, ctx, p, slot, oid, side, price: price)
    w = make_world()
    set_score(w, w.addr(0), 40, penalty_slot=1)
    suspended_offer(w, 5, 600_000)
    assert not w.events("trade") and not w.events("offer_mitigated")
