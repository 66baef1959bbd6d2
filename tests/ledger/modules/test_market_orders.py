"""Orders, escrow, gate closure, cancel/replace, sealed bids, clearing, envelopes."""

from __future__ import annotations

import pytest

from gridledger.ledger.app import Application
from gridledger.ledger.modules.market.keeper import get_order, slot_record, trades_of_slot
from gridledger.types import payment_micro
from tests.conftest import apply
from tests.ledger.modules.world import (
    World,
    check_locks,
    make_world,
    t_clear,
    t_order,
    t_reveal,
)

FEE = 30_000       # default flat grid fee, micro per kWh
DEPOSIT = 350_000  # default deposit rate, micro per kWh


def rules(result) -> list[str]:
    return [r.rule if not r.ok else "ok" for r in result.receipts]


def test_escrow_locked_on_order_and_released_on_cancel() -> None:
    w = make_world()
    r = w.ok([w.order(0, 3, "buy", 2_000, 150_000), w.order(1, 3, "sell", 1_500, 90_000)], t_order(3))
    buy_id, sell_id = r.receipts[0].tx_hash, r.receipts[1].tx_hash
    assert w.lock(w.addr(0)) == payment_micro(2_000, 150_000) + payment_micro(2_000, FEE)
    assert w.lock(w.addr(1)) == payment_micro(1_500, DEPOSIT)
    w.ok([w.tx(w.users[0], "market/cancel", {"slot": 3, "order_id": buy_id})], t_order(3) + 1)
    assert w.lock(w.addr(0)) == 0 and w.bal(w.addr(0)) == 10_000_000
    assert get_order(w.app.state, 3, buy_id) is None
    # replace: new terms, new id, escrow re-locked
    r = w.ok([w.tx(w.users[1], "market/replace", {"slot": 3, "order_id": sell_id, "energy_wh": 500,
                                                   "price_micro_per_kwh": 80_000})], t_order(3) + 2)
    new_id = r.receipts[0].tx_hash
    assert get_order(w.app.state, 3, sell_id) is None
    assert get_order(w.app.state, 3, new_id).energy_wh == 500
    assert w.lock(w.addr(1)) == payment_micro(500, DEPOSIT)


def test_fake_bids_without_means_are_refused() -> None:
    """THREATS row 6 fake-bids: an order needs its escrow or deposit up front."""
    w = make_world(balances={2: 50_000})
    before = w.money()
    r = w.block([w.order(2, 3, "buy", 100_000, 500_000),   # 100 kWh with 0.05 units
                 w.order(2, 3, "sell", 100_000, 1),         # a deposit it cannot post
                 w.order(0, 3, "buy", 1, 0)], t_order(3))
    assert rules(r) == ["insufficient-funds", "insufficient-funds", "ok"]
    assert w.total(w.addr(2)) == 50_000 and w.lock(w.addr(2)) == 0 and w.money() == before


@pytest.mark.parametrize("case, rule, detail", [
    ("gate", "gate-closed", "closed at"),
    ("horizon", "beyond-horizon", "more than 96 slots ahead"),
    ("two-sides", "one-side-per-slot", "already buying"),
    ("too-many", "max-orders-per-slot", "at most 4"),
    ("consumer-sells", "sell-needs-prosumer", "consumers can only buy"),
    ("no-cp", "unauthorized", "needs one of the roles"),
    ("not-owner", "not-owner", "owner"),
    ("extra-field", "invalid-body", "market/order has exactly"),
    ("bad-side", "invalid-body", "side"),
])
def test_order_rules(case: str, rule: str, detail: str) -> None:
    w = make_world(consumers=(3,))
    setup: list[bytes] = []
    at = t_order(3)
    if case == "gate":
        at = t_order(3) + 101  # exactly at gate closure
        tx = w.order(0, 3, "buy", 100, 1)
    elif case == "horizon":
        tx = w.order(0, 3 + 97, "buy", 100, 1)
    elif case == "two-sides":
        setup = [w.order(0, 3, "buy", 100, 1)]
        tx = w.order(0, 3, "sell", 100, 1)
    elif case == "too-many":
        setup = [w.order(0, 3, "buy", 100, 1) for _ in range(4)]
        tx = w.order(0, 3, "buy", 100, 1)
    elif case == "consumer-sells":
        tx = w.order(3, 3, "sell", 100, 1)
    elif case == "no-cp":
        tx = w.tx(w.validator, "market/order", {"slot": 3, "side": "buy", "energy_wh": 1,
                                                "price_micro_per_kwh": 1})
    elif case == "not-owner":
        setup = [w.order(0, 3, "buy", 100, 1)]
        tx = b""
    elif case == "extra-field":
        tx = w.tx(w.users[0], "market/order", {"slot": 3, "side": "buy", "energy_wh": 1,
                                               "price_micro_per_kwh": 1, "memo": "x"})
    else:
        tx = w.tx(w.users[0], "market/order", {"slot": 3, "side": "bid", "energy_wh": 1,
                                               "price_micro_per_kwh": 1})
    if setup:
        r0 = w.ok(setup, at - 1)
        if case == "not-owner":
            tx = w.tx(w.users[1], "market/cancel", {"slot": 3, "order_id": r0.receipts[0].tx_hash})
    locks = [w.lock(w.addr(i)) for i in range(4)]
    r = w.block([tx], at)
    assert rules(r) == [rule] and detail in (r.receipts[0].detail or r.receipts[0].rule)
    assert [w.lock(w.addr(i)) for i in range(4)] == locks


def test_cancel_after_gate_is_refused() -> None:
    w = make_world()
    r = w.ok([w.order(0, 3, "buy", 100, 1)], t_order(3))
    r = w.block([w.tx(w.users[0], "market/cancel", {"slot": 3, "order_id": r.receipts[0].tx_hash})],
                t_reveal(3))
    assert rules(r) == ["gate-closed"]


def test_clearing_records_trades_and_releases_unused_escrow() -> None:
    w = make_world()
    w.ok([w.order(0, 3, "sell", 1_000, 100_000), w.order(1, 3, "sell", 1_000, 140_000),
          w.order(2, 3, "buy", 1_500, 200_000), w.order(3, 3, "buy", 500, 120_000)], t_order(3))
    r = w.ok([], t_clear(3) - 1)
    assert r.block_events == []  # not yet: the reveal window is still open
    r = w.ok([], t_clear(3))
    trades = [e for e in r.block_events if e["type"] == "trade"]
    cleared = [e for e in r.block_events if e["type"] == "slot_cleared"]
    assert sum(t["energy_wh"] for t in trades) == cleared[0]["volume_wh"] == 1_500
    assert {t["price_micro_per_kwh"] for t in trades} == {cleared[0]["price_micro_per_kwh"]}
    p = cleared[0]["price_micro_per_kwh"]
    assert 100_000 <= p <= 200_000
    for t in trades:
        assert set(t) == {"type", "slot", "index", "buyer", "seller", "energy_wh",
                          "price_micro_per_kwh", "payment_micro", "grid_fee_micro"}
        assert t["payment_micro"] == payment_micro(t["energy_wh"], p)
        assert t["grid_fee_micro"] == payment_micro(t["energy_wh"], FEE)
    rec = slot_record(w.app.state, 3)
    assert rec is not None and rec.bought_wh == rec.sold_wh == 1_500
    # the buyer keeps locked exactly what its trades can cost; the loser is fully released
    bought = [t for t in trades if t["buyer"] == w.addr(2)]
    assert w.lock(w.addr(2)) == sum(t["payment_micro"] + t["grid_fee_micro"] for t in bought)
    assert w.lock(w.addr(3)) == 0
    sold = {a: sum(t["energy_wh"] for t in trades if t["seller"] == a) for a in (w.addr(0), w.addr(1))}
    assert w.lock(w.addr(0)) == payment_micro(sold[w.addr(0)], DEPOSIT)


def _signed_book(w: World) -> list[bytes]:
    # equal-priority orders: three asks at the same price, one bid that takes two of them
    return [w.order(0, 3, "sell", 400, 100_000), w.order(1, 3, "sell", 400, 100_000),
            w.order(2, 3, "sell", 400, 100_000), w.order(3, 3, "buy", 800, 100_000)]


def test_clearing_independent_of_submission_order() -> None:
    w = make_world()
    txs = _signed_book(w)
    outcomes = []
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        app = Application(w.app.genesis)
        order = [txs[i] for i in perm]
        # split across two blocks too: arrival order differs, the outcome may not
        apply(app, order[:2], t_order(3))
        apply(app, order[2:], t_order(3) + 1)
        _, res = apply(app, [], t_clear(3))
        outcomes.append(([e for e in res.block_events], trades_of_slot(app.state, 3)))
    assert outcomes[0] == outcomes[1] == outcomes[2]
    # ties break by order id (the tx hash), never by who came first
    from gridledger.ledger.tx import decode_tx

    sellers = {e["seller"] for e in outcomes[0][0] if e["type"] == "trade"}
    by_id = sorted((decode_tx(txs[i]).id, w.users[i].address) for i in range(3))
    assert sellers == {by_id[0][1], by_id[1][1]}


def test_envelope_caps_respected() -> None:
    w = make_world()
    env = w.envelope(3, [["cp0", 0, 300], ["cp2", 200, 0]])
    w.ok([env, w.order(0, 3, "sell", 1_000, 50_000), w.order(1, 3, "sell", 1_000, 60_000),
          w.order(2, 3, "buy", 1_000, 200_000), w.order(3, 3, "buy", 1_000, 200_000)], t_order(3))
    r = w.ok([], t_clear(3))
    trades = [e for e in r.block_events if e["type"] == "trade"]
    by = lambda key, a: sum(t["energy_wh"] for t in trades if t[key] == a)  # noqa: E731
    assert by("seller", w.addr(0)) <= 300
    assert by("buyer", w.addr(2)) <= 200
    cleared = [e for e in r.block_events if e["type"] == "slot_cleared"][0]
    assert cleared["clipped_wh"] == 700 + 800
    # the clipped part of the seller's deposit is released at clearing
    assert w.lock(w.addr(0)) == payment_micro(by("seller", w.addr(0)), DEPOSIT)


def test_envelope_only_by_dso_and_before_clearing() -> None:
    w = make_world()
    r = w.block([w.tx(w.users[0], "market/envelope", {"slot": 3, "envelopes": [["cp0", 1, 1]]})],
                t_order(3))
    assert rules(r) == ["unauthorized"]
    r = w.block([w.envelope(3, [["cp0", 1, 1]])], t_clear(3))
    assert rules(r) == ["envelope-late"]


def test_sealed_bid_commit_reveal_and_trade() -> None:
    w = make_world()
    c_buy, reveal_buy = w.commit(0, 3, "buy", 1_000, 200_000)
    c_sell, reveal_sell = w.commit(1, 3, "sell", 1_000, 100_000)
    r = w.ok([c_buy, c_sell], t_order(3))
    commit_ids = [x.tx_hash for x in r.receipts]
    assert w.lock(w.addr(0)) == w.lock(w.addr(1)) == 20_000
    # reveals before gate closure would leak the bid early: refused
    early = w.block([w.tx(w.users[0], "market/reveal", {**reveal_buy, "commit_id": commit_ids[0]})],
                    t_order(3) + 1)
    assert rules(early) == ["outside-reveal-window"]
    wrong = {**reveal_sell, "commit_id": commit_ids[1], "price_micro_per_kwh": 99_999}
    r = w.block([w.tx(w.users[0], "market/reveal", {**reveal_buy, "commit_id": commit_ids[0]}),
                 w.tx(w.users[1], "market/reveal", wrong),
                 w.tx(w.users[1], "market/reveal", {**reveal_sell, "commit_id": commit_ids[1]})],
                t_reveal(3))
    assert rules(r) == ["ok", "commitment-mismatch", "ok"]
    assert w.lock(w.addr(0)) == payment_micro(1_000, 200_000) + payment_micro(1_000, FEE)
    r = w.ok([], t_clear(3))
    trades = [e for e in r.block_events if e["type"] == "trade"]
    assert len(trades) == 1 and trades[0]["energy_wh"] == 1_000
    assert w.events("commitment_forfeited") == []


def test_unrevealed_commitment_forfeits_to_grid() -> None:
    w = make_world()
    c, _ = w.commit(0, 3, "buy", 1_000, 200_000)
    c2, _ = w.commit(1, 3, "buy", 1_000, 200_000)
    r = w.ok([c, c2], t_order(3))
    # the second committer cancels in time and gets its deposit back
    w.ok([w.tx(w.users[1], "market/cancel", {"slot": 3, "order_id": r.receipts[1].tx_hash})],
         t_order(3) + 1)
    grid0, money0 = w.bal(w.dso.address), w.money()
    r = w.ok([], t_clear(3))
    forfeits = [e for e in r.block_events if e["type"] == "commitment_forfeited"]
    assert len(forfeits) == 1 and forfeits[0]["owner"] == w.addr(0)
    assert w.total(w.addr(0)) == 10_000_000 - 20_000 and w.total(w.addr(1)) == 10_000_000
    assert w.bal(w.dso.address) == grid0 + 20_000 and w.money() == money0
    rep = [e for e in r.block_events if e["type"] == "reputation"]
    assert rep[0]["reason"] == "commitment_forfeited" and rep[0]["score"] < 500
    check_locks(w)


def test_reveal_without_funds_forfeits() -> None:
    w = make_world(balances={0: 30_000})
    c, reveal = w.commit(0, 3, "buy", 10_000, 500_000)
    r = w.ok([c], t_order(3))
    r = w.block([w.tx(w.users[0], "market/reveal", {**reveal, "commit_id": r.receipts[0].tx_hash})],
                t_reveal(3))
    assert rules(r) == ["insufficient-funds"]
    w.ok([], t_clear(3))
    assert w.total(w.addr(0)) == 10_000 and len(w.events("commitment_forfeited")) == 1
