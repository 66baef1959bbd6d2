"""Privacy mode in the demo (issue 19): pseudonyms on the real path, bad input through it.

A short privacy-mode run is driven step by step (``Engine.step``), so the tests can act as
clients between blocks with the keys the run's members, meters, trustees and DSO hold.
Every bad input is refused naming its rule, and nothing moves (balances and total money
unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gridledger.crypto.sig import SigningKey
from gridledger.errors import ConfigError, RejectedTx
from gridledger.ledger.modules.privacy.records import pool_address
from gridledger.ledger.tx import decode_tx, sign_tx
from gridledger.sim.attacks import CLEAR_MODE_ONLY, parse_attacks
from gridledger.sim.clock import SLOT_S
from gridledger.sim.community import EPOCH_SLOTS, POOL_ALLOWANCE_MICRO
from gridledger.sim.demo import scenario_from_flags
from gridledger.sim.engine import Engine
from gridledger.sim.features.privacy import PrivacyMode
from gridledger.sim.scenario import DEMO_PRIVACY, Scenario, check_scenario


START = 40     # 10:00: members trade
SLOTS = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A privacy-mode run stopped after its trading slots (stores open)."""
    sc = Scenario(participants=12, slots=SLOTS, validators=1, seed=7, start_slot_of_day=START,
                  privacy=True)
    eng = Engine(sc, check_scenario(sc), tmp_path_factory.mktemp("pmode"))
    for step in eng.ctx.clock.steps():
        eng.step(step)
    yield eng
    eng.ctx.close()


def test_the_demo_flag_chooses_the_mode() -> None:
    on = scenario_from_flags(30, 24, 4, "default", 7, None, privacy=True)
    assert on.privacy and not set(CLEAR_MODE_ONLY) & set(on.attacks)
    off = scenario_from_flags(30, 24, 4, "default", 7, None, privacy=False)
    assert not off.privacy and set(CLEAR_MODE_ONLY) <= set(off.attacks)
    assert scenario_from_flags(30, 24, 4, "default", 7, None).privacy is DEMO_PRIVACY


def test_attacks_with_nothing_to_act_on_under_privacy_mode() -> None:
    """The retail hold secures a household's own account: privacy mode's default set leaves
    ``balance-escape`` out with a note; naming it is refused. The certificate scenarios run
    under privacy mode (certificates are issued under the pseudonym class), and so does
    ``fake-flexibility`` (flexibility is bought from pseudonyms' stand-in cps)."""
    names, notes = parse_attacks("default", 4, privacy=True)
    assert not set(CLEAR_MODE_ONLY) & set(names) and len(notes) == len(CLEAR_MODE_ONLY)
    assert all("left out under privacy mode" in n for n in notes)
    assert set(CLEAR_MODE_ONLY) <= set(parse_attacks("default", 4, privacy=False)[0])
    assert {"double-claim", "phantom-generation", "fake-flexibility"} <= set(names)
    with pytest.raises(ConfigError, match="balance-escape needs --privacy off"):
        parse_attacks("fdi-meter,balance-escape", 4, privacy=True)


def _privacy(eng: Engine) -> PrivacyMode:
    f = eng.feature("privacy")
    assert isinstance(f, PrivacyMode)
    return f


def _outcome(eng: Engine, raw: bytes, at: int) -> tuple[str | None, dict[str, Any]]:
    """Submit one transaction and close a block: (rule or None, the receipt's events)."""
    ctx = eng.ctx
    try:
        res = ctx.submit([raw], at)
    except RejectedTx as exc:   # admission refuses a lone transaction by raising
        return exc.rule, {}
    if isinstance(res[0], RejectedTx):
        return res[0].rule, {}
    txid = decode_tx(raw).id
    for fb in ctx.tick(at):
        for r in fb.result.receipts:
            if r.tx_hash == txid:
                return (None if r.ok else r.rule), {"events": r.events}
    raise AssertionError("the transaction was neither refused nor executed")


def _money(eng: Engine) -> dict[bytes, int]:
    return eng.ctx.ledger.money()


def _after_run(eng: Engine) -> int:
    """A block time after the run's tail (strictly increasing per call)."""
    ctx = eng.ctx
    t = max(SLOT_S * (ctx.first + ctx.clock.slots + 6), ctx.net.entry.app.slot_time + 1)
    return t


def test_every_household_trades_and_meters_under_pseudonyms(run: Engine) -> None:
    ctx, pm = run.ctx, _privacy(run)
    assert pm.on and pm.ids.count == 12 * SLOTS
    for m in ctx.members:
        for s in ctx.trading_slots():
            h = pm.ids.of(m, s)
            assert h is not None and ctx.ledger.pseudonym(h.address) is not None
            assert ctx.identities.trading_key(m, s).address == h.address
            assert ctx.identities.ledger_cp(m, s) == h.cp != m.cp
    # every bill of the run is a pseudonym's, and resolves to its member
    bills = [a for by in ctx.data.bills.values() for a in by]
    own = {m.address for m in ctx.members}
    assert bills and all(a not in own and pm.ids.owner(a) is not None for a in bills)
    assert all(pm.ids.owner_of_cp(ctx.identities.ledger_cp(m, s)) is m
               for m in ctx.members for s in ctx.trading_slots())


def _held(run: Engine, slot: int) -> Any:
    pm = _privacy(run)
    m = run.ctx.members[0]
    h = pm.ids.of(m, slot)
    assert h is not None
    return m, h


def test_a_pseudonym_outside_its_slot_is_refused(run: Engine) -> None:
    ctx = run.ctx
    first = ctx.first
    _m, h = _held(run, first)
    money = _money(run)
    # an order for the next slot under the first slot's pseudonym
    nxt = ctx.first + ctx.clock.slots + 8
    order = ctx.tx(h.own.key, "market/order", {"slot": nxt, "side": "buy", "energy_wh": 100,
                                                "price_micro_per_kwh": 100_000})
    t = SLOT_S * nxt - 600
    rule, _ = _outcome(run, order, max(t, _after_run(run)))
    assert rule == "pseudonym-slot"
    # a reading of another slot from the pseudonym's meter key
    slot = ctx.first + ctx.clock.slots + 2
    reading = ctx.tx(h.reading_key, "metering/reading", {
        "slot": slot, "import_wh": 10, "export_wh": 0, "firmware": bytes(32)})
    rule, _ = _outcome(run, reading, _after_run(run))
    assert rule == "pseudonym-slot"
    assert _money(run) == money


def test_an_uncertified_pseudonym_cannot_read_or_order(run: Engine) -> None:
    ctx = run.ctx
    money = _money(run)
    rogue = SigningKey.generate("ml-dsa-44")      # never certified, never registered
    slot = ctx.first + ctx.clock.slots + 9
    for kind, body in (("market/order", {"slot": slot, "side": "sell", "energy_wh": 100,
                                         "price_micro_per_kwh": 80_000}),
                       ("metering/reading", {"slot": ctx.first, "import_wh": 0,
                                             "export_wh": 500, "firmware": bytes(32)})):
        rule, _ = _outcome(run, ctx.tx(rogue, kind, body), _after_run(run))
        assert rule == "unknown-sender", kind
    # a relay registering a leaf no trustee certified (the root exists, the leaf is not in it)
    pm = _privacy(run)
    epoch = ctx.first // EPOCH_SLOTS
    relay = ctx.community.privacy_keys.trustee_keys[1].signing_key  # type: ignore[union-attr]
    _m, h = _held(run, ctx.first)
    rec = ctx.ledger.pseudonym(h.address)
    assert rec is not None and rec["epoch"] == epoch
    fake = SigningKey.generate("ml-dsa-44")
    leaf = {"alg": fake.alg, "pk": fake.public_key.raw, "escrow_digest": bytes(32),
            "first_slot": ctx.first, "last_slot": ctx.first, "feeder": "feeder-1", "index": 0,
            "path": [], "reading_alg": fake.alg, "reading_pk": fake.public_key.raw,
            "reading_root": rec["root"], "reading_index": 0, "reading_path": []}
    rule, _ = _outcome(run, ctx.tx(relay, "privacy/register", {"root": rec["root"],
                                                               "leaves": [leaf]}),
                       _after_run(run))
    assert rule == "not-certified"
    assert _money(run) == money and pm.ids.count == 12 * SLOTS


def test_a_pseudonym_cannot_transfer_money(run: Engine) -> None:
    ctx = run.ctx
    _m, h = _held(run, ctx.first + 1)
    money = _money(run)
    tx = ctx.tx(h.own.key, "bank/transfer", {"to": ctx.members[1].address,
                                             "amount_micro": 1_000})
    rule, _ = _outcome(run, tx, _after_run(run))
    assert rule == "pseudonym-transfer"
    assert _money(run) == money


def test_a_claim_above_what_the_epoch_owes_is_refused(run: Engine) -> None:
    """After the epoch closes: a member claiming more than its deposit is refused; the honest
    claims are paid and the community's net result settles with the grid account."""
    ctx, pm = run.ctx, _privacy(run)
    epoch = ctx.first // EPOCH_SLOTS
    p = ctx.params
    close = (epoch + 1) * EPOCH_SLOTS * SLOT_S + p.settle_window_s + max(1800,
                                                                         p.dispute_window_s)
    ctx.tick(max(close, _after_run(run)))
    assert ctx.ledger.epoch(epoch)["status"] == "claims"
    deferred = ctx.take_deferred()      # the members' claims, signed when the epoch closed
    m = ctx.members[0]
    money = _money(run)
    n = ctx.net.mempool.expected_nonce(m.address)
    deposit = SLOTS * POOL_ALLOWANCE_MICRO
    greedy = sign_tx(m.key, ctx.sc.chain_id, n, "privacy/claim",
                     {"epoch": epoch, "amount_micro": deposit + 1})
    t = ctx.net.entry.app.slot_time + 10
    rule, _ = _outcome(run, greedy, t)
    assert rule == "claim-above-due"
    assert _money(run) == money
    # the member's correct claim still goes through (the refused one consumed its nonce)
    good = sign_tx(m.key, ctx.sc.chain_id, n + 1, "privacy/claim",
                   {"epoch": epoch, "amount_micro": deposit})
    ctx.submit([r for r in deferred if decode_tx(r).sender != m.address] + [good], t + 10)
    ctx.tick(t + 10)
    deadline = ctx.ledger.epoch(epoch)["claims_deadline"]
    ctx.tick(deadline + 1)
    assert ctx.ledger.epoch(epoch)["status"] == "paid"
    assert ctx.ledger.balance(pool_address(epoch)) == (0, 0)
    issue = pm.epochs[epoch]
    assert issue.paid and pm._epoch_summary(issue)["bills_match_pool"]


def test_a_signer_whose_nonce_went_to_the_side_file_takes_its_next_one(run: Engine) -> None:
    """An epoch's pseudonyms and reading keys leave the simulator's nonce table when they
    retire (``SimContext.forget_nonces``: two signers a member and slot, issue 17); one that
    signs again takes its next nonce, alone or in a batch signed on the pool."""
    ctx = run.ctx
    h = _privacy(run).ids.of(ctx.members[5], ctx.first + SLOTS - 1)
    assert h is not None
    key = h.own.key
    body = {"to": ctx.members[1].address, "amount_micro": 1}
    n = decode_tx(ctx.tx(key, "bank/transfer", body)).nonce
    ctx.forget_nonces([key.address, b"\x01" * 32])      # one never seen: nothing to keep
    assert key.address not in ctx._nonces
    assert decode_tx(ctx.tx(key, "bank/transfer", body)).nonce == n + 1
    ctx.forget_nonces([key.address])
    assert [decode_tx(r).nonce for r in ctx.txs([(key, "bank/transfer", body)] * 2)] == [n + 2, n + 3]
    assert ctx._nonces[key.address] == n + 4
