"""Reputation: scores, graduated sanctions, appeals (never a permanent ban)."""

from __future__ import annotations

from gridledger.ledger.modules.reputation import deposit_pct, reputation_of, tier_of
from gridledger.ledger.modules.reputation.keeper import get_record, put_record
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
    assert w.lock(w.addr(0)) == payment_micro(1_000, 350_000 * 150 // 100)
    assert deposit_pct(st, w.addr(0)) == 150
    set_score(w, w.addr(0), 200, 8)
    assert tier_of(st, w.addr(0)) == "restricted" and deposit_pct(st, w.addr(0)) == 300


def test_suspension_blocks_trading_until_appeal_after_clean_slots() -> None:
    w = make_world(params={"appeal_clean_slots": 4})
    set_score(w, w.addr(0), 40, penalty_slot=1)
    r = w.block([w.order(0, 4, "buy", 100, 1)], t_order(4))
    assert r.receipts[0].rule == "unauthorized" and "reputation-suspended" in r.receipts[0].detail
    # slot 3 at t_order(4): two slots since the penalty, four needed
    r = w.block([w.tx(w.users[0], "reputation/appeal", {})], t_order(4) + 1)
    assert r.receipts[0].rule == "appeal-too-early"
    r = w.ok([w.tx(w.users[0], "reputation/appeal", {})], 5 * S)
    assert reputation_of(w.app.state, w.addr(0)) == 400 and tier_of(w.app.state, w.addr(0)) == "good"
    w.ok([w.order(0, 8, "buy", 100, 1)], t_order(8))  # trading again
    # a participant in good standing has nothing to appeal, and appeals are rate-limited
    r = w.block([w.tx(w.users[0], "reputation/appeal", {})], t_order(8) + 1)
    assert r.receipts[0].rule == "appeal-not-sanctioned"
    set_score(w, w.addr(0), 40, penalty_slot=0)
    r = w.block([w.tx(w.users[0], "reputation/appeal", {})], t_order(8) + 2)
    assert r.receipts[0].rule == "appeal-too-early" and "since appeal" in r.receipts[0].detail


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
