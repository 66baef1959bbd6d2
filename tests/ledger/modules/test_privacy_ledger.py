"""Pseudonymous trading on the ledger: pool tickets, batch certificates, settlement under
pseudonyms, claims, openings only for recorded disputes, secure-aggregation results."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest

from gridledger.crypto.kem import KemKey
from gridledger.crypto.shamir import encode_signed, split_secret
from gridledger.ledger.app import Application
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.ledger.modules.privacy.types import dispute_id_for_trade, pool_address
from gridledger.ledger.modules.reputation.keeper import put_record, reputation_of
from gridledger.privacy.aggregation import CTX_PARTIAL, partial_message
from gridledger.privacy.ledger_io import (
    OwnPseudonym,
    certify_batch,
    claim_amount,
    escrow_body,
    make_pseudonyms,
    register_bodies,
    release_body,
)
from gridledger.privacy.pseudonyms import TrusteeInfo, TrusteeKeys, TrusteeSet
from gridledger.sim.keys import sim_key
from tests.ledger.modules.world import (
    CHAIN,
    DSO_BALANCE,
    FW,
    GATE,
    REVEAL,
    S,
    SETTLE,
    USER_BALANCE,
    World,
    t_order,
    t_read,
)

EPOCH_SLOTS = 4
ALLOWANCE = 2_000_000
CLOSE_DELAY = 900
CLAIM_WINDOW = 900


def _rng(tag: str):
    state = {"n": 0}

    def rb(n: int) -> bytes:
        state["n"] += 1
        out = b""
        while len(out) < n:
            out += hashlib.sha3_256(f"{tag}/{state['n']}/{len(out)}".encode()).digest()
        return out[:n]
    return rb


@dataclass
class PWorld(World):
    trustee_keys: list[TrusteeKeys] = None  # type: ignore[assignment]
    trustee_set: TrusteeSet = None  # type: ignore[assignment]
    aggregators: list[Any] = None  # type: ignore[assignment]

    def p(self, ps: OwnPseudonym, kind: str, body: dict[str, Any]) -> bytes:
        return self.tx(ps.key, kind, body)


def make_pworld(n_users: int = 3, threshold: int = 2,
                roaming_partners: list[dict[str, Any]] | None = None) -> PWorld:
    seed = 11
    v = sim_key(seed, "validator", 0)
    dso = sim_key(seed, "dso", 0)
    users = [sim_key(seed, "user", i) for i in range(n_users)]
    meters = [sim_key(seed, "meter", i, alg="ml-dsa-44") for i in range(n_users)]
    tks = [TrusteeKeys(f"t{j}", sim_key(seed, "trustee", j, alg="ml-dsa-44"),
                       KemKey(hashlib.sha3_512(f"tk{j}".encode()).digest())) for j in range(3)]
    aggs = [sim_key(seed, "aggregator", j, alg="ml-dsa-44") for j in range(7)]
    parts: list[dict[str, Any]] = [
        {"alg": v.alg, "pk": v.public_key.raw, "roles": ["validator"], "name": "v0"},
        {"alg": dso.alg, "pk": dso.public_key.raw, "roles": ["dso"], "name": "dso",
         "balance_micro": DSO_BALANCE}]
    for i, k in enumerate(users):
        parts.append({"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"],
                      "name": f"u{i}", "cp": f"cp{i}", "balance_micro": USER_BALANCE})
    for i, m in enumerate(meters):
        parts.append({"alg": m.alg, "pk": m.public_key.raw, "roles": ["meter"],
                      "name": f"m{i}", "meter_of": f"cp{i}"})
    for t in tks:
        k = t.signing_key
        parts.append({"alg": k.alg, "pk": k.public_key.raw, "roles": ["trustee"], "name": t.trustee_id})
    for j, a in enumerate(aggs):
        parts.append({"alg": a.alg, "pk": a.public_key.raw, "roles": ["aggregator"], "name": f"a{j}"})
    privacy = {
        "community": "test-community", "threshold": threshold,
        "trustees": [{"id": t.trustee_id, "addr": t.signing_key.address,
                      "kem_pk": t.kem_key.public_key} for t in tks],
        "allowance_micro": ALLOWANCE, "max_tickets": 8, "epoch_slots": EPOCH_SLOTS,
        "close_delay_s": CLOSE_DELAY, "claim_window_s": CLAIM_WINDOW,
        "aggregators": [{"id": f"a{j}", "addr": a.address, "kem_pk": b"k"} for j, a in enumerate(aggs)],
        "aggregator_threshold": 3, "aggregate_min_contributors": 3,
        "feeders": [["f1", [f"cp{i}" for i in range(n_users)]]],
        "aggregate_tolerance_wh": 0}
    if roaming_partners is not None:
        privacy["roaming_partners"] = roaming_partners
    genesis = make_genesis(CHAIN, parts, {"slot_seconds": S, "gate_closure_s": GATE,
                                          "reveal_window_s": REVEAL, "settle_window_s": SETTLE},
                           sections={"privacy": privacy})
    ts = TrusteeSet("test-community", threshold,
                    tuple(TrusteeInfo(t.trustee_id, t.signing_key.public_key, t.kem_key.public_key)
                          for t in tks))
    return PWorld(Application(genesis), [v], dso, users, meters, trustee_keys=tks,
                  trustee_set=ts, aggregators=aggs)


def issue(w: PWorld, epoch: int, plan: dict[int, list[int]], at: int
          ) -> dict[int, list[OwnPseudonym]]:
    """Users join with one ticket per planned slot, trustees certify, a relay registers."""
    own = {i: make_pseudonyms(w.users[i], w.trustee_set, epoch, [(s, s) for s in slots], "f1",
                              random_bytes=_rng(f"u{i}e{epoch}")) for i, slots in plan.items()}
    w.ok([w.tx(w.users[i], "privacy/join", {"epoch": epoch, "tickets": len(slots)})
          for i, slots in plan.items()], at)
    batch = certify_batch(w.trustee_keys, w.trustee_set,
                          [p.entry for ps in own.values() for p in ps], epoch, EPOCH_SLOTS)
    txs = [w.tx(w.trustee_keys[0].signing_key, "privacy/certify", batch.certify_body)]
    txs += [w.tx(w.trustee_keys[1].signing_key, "privacy/register", b)
            for b in register_bodies(w.trustee_set, batch)]
    w.ok(txs, at + 1)
    return own


def reading(w: PWorld, ps: OwnPseudonym, slot: int, imp: int, exp: int) -> bytes:
    return w.p(ps, "privacy/reading", {"slot": slot, "import_wh": imp, "export_wh": exp,
                                       "firmware": FW})


def order(w: PWorld, ps: OwnPseudonym, slot: int, side: str, wh: int, price: int) -> bytes:
    return w.p(ps, "market/order", {"slot": slot, "side": side, "energy_wh": wh,
                                    "price_micro_per_kwh": price})


def run_epoch0(w: PWorld, deliver_wh: int = 1000) -> dict[int, list[OwnPseudonym]]:
    """Epoch 0 = slots 4..7 (slots 0..3 are before genesis trading): user 0 sells 1 kWh
    under its slot-5 pseudonym to user 1's slot-5 pseudonym, both read, slot 5 settles."""
    own = issue(w, 1, {0: [5, 6], 1: [5]}, at=t_order(5) - 200)
    s0, b1 = own[0][0], own[1][0]
    w.ok([order(w, s0, 5, "sell", 1000, 150_000), order(w, b1, 5, "buy", 1000, 200_000)],
         t_order(5))
    w.ok([], 5 * S - GATE + REVEAL)  # clear
    w.ok([reading(w, s0, 5, 0, deliver_wh), reading(w, b1, 5, 1000, 0)], t_read(5))
    w.ok([reading(w, own[0][1], 6, 300, 0)], t_read(6))
    return own


def epoch_end(w: PWorld) -> int:
    """Block time at which epoch 1 (slots 4..7) closes."""
    return 8 * S + SETTLE + CLOSE_DELAY


def test_pseudonymous_trade_settles_and_claims_pay_each_member_its_due() -> None:
    w = make_pworld()
    money = w.money()
    own = run_epoch0(w)
    s0, b1 = own[0][0], own[1][0]
    # nothing the members sent names a pseudonym: join by the member, the rest by a relay
    trades = w.events("trade")
    assert not any(e.get("buyer") in (w.addr(0), w.addr(1)) for e in trades)
    w.ok([], epoch_end(w))
    closed = w.events("epoch_closed")
    assert closed and closed[0]["epoch"] == 1
    finals = {a: pv.get_pseudonym(w.app.state, a)["final_micro"]
              for a in (s0.address, b1.address, own[0][1].address)}
    assert finals[s0.address] > ALLOWANCE > finals[b1.address]  # seller earned, buyer paid
    c0 = claim_amount(2, ALLOWANCE, [finals[s0.address], finals[own[0][1].address]])
    c1 = claim_amount(1, ALLOWANCE, [finals[b1.address]])
    before = (w.bal(w.addr(0)), w.bal(w.addr(1)))
    t = epoch_end(w) + 10
    w.ok([w.tx(w.users[0], "privacy/claim", {"epoch": 1, "amount_micro": c0}),
          w.tx(w.users[1], "privacy/claim", {"epoch": 1, "amount_micro": c1})], t)
    w.ok([], t + CLAIM_WINDOW)
    assert w.events("pool_paid")[0]["paid_micro"] == c0 + c1
    assert (w.bal(w.addr(0)) - before[0], w.bal(w.addr(1)) - before[1]) == (c0, c1)
    assert w.bal(pool_address(1)) == 0 and w.money() == money
    assert pv.get_epoch(w.app.state, 1)["status"] == "paid"


def test_registration_needs_a_certified_leaf_and_tickets() -> None:
    w = make_pworld()
    own = make_pseudonyms(w.users[0], w.trustee_set, 1, [(5, 5), (6, 6)], "f1",
                          random_bytes=_rng("x"))
    w.ok([w.tx(w.users[0], "privacy/join", {"epoch": 1, "tickets": 1})], t_order(5) - 200)
    batch = certify_batch(w.trustee_keys, w.trustee_set, [p.entry for p in own], 1, EPOCH_SLOTS)
    r = w.block([w.tx(w.trustee_keys[0].signing_key, "privacy/certify", batch.certify_body)],
                t_order(5) - 150)
    assert r.receipts[0].rule == "invalid-body" and "tickets-exceeded" in r.receipts[0].detail
    one = certify_batch(w.trustee_keys[:1], w.trustee_set, [own[0].entry], 1, EPOCH_SLOTS)
    r = w.block([w.tx(w.trustee_keys[0].signing_key, "privacy/certify", one.certify_body)],
                t_order(5) - 140)
    assert "batch-endorsements: 1 valid" in r.receipts[0].detail  # k = 2
    good = certify_batch(w.trustee_keys, w.trustee_set, [own[0].entry], 1, EPOCH_SLOTS)
    w.ok([w.tx(w.trustee_keys[0].signing_key, "privacy/certify", good.certify_body)],
         t_order(5) - 130)
    forged = register_bodies(w.trustee_set, good)[0]
    forged["leaves"][0]["pk"] = own[1].key.public_key.raw  # not the certified key
    r = w.block([w.tx(w.users[2], "privacy/register", forged)], t_order(5) - 120)
    assert "not-certified" in r.receipts[0].detail
    w.ok([w.tx(w.users[2], "privacy/register", register_bodies(w.trustee_set, good)[0])],
         t_order(5) - 110)
    # a pseudonym trades only in its slot, cannot move money out, cannot endorse
    r = w.block([order(w, own[0], 6, "buy", 100, 100_000)], t_order(6))
    assert "pseudonym-slot" in r.receipts[0].detail
    r = w.block([w.p(own[0], "bank/transfer", {"to": w.addr(0), "amount_micro": 1})], t_order(6) + 1)
    assert r.receipts[0].rule == "pseudonym-transfer"


def test_ticket_cap_follows_the_members_reputation() -> None:
    w = make_pworld()
    put_record(w.app.state, w.addr(2), {"score": 300, "last_penalty_slot": 0,
                                        "last_appeal_slot": -1, "approvals": []})  # watch
    r = w.block([w.tx(w.users[2], "privacy/join", {"epoch": 1, "tickets": 5})], t_order(5) - 200)
    assert r.receipts[0].rule == "unauthorized" and "ticket-cap" in r.receipts[0].detail
    w.ok([w.tx(w.users[2], "privacy/join", {"epoch": 1, "tickets": 4})], t_order(5) - 190)


def _open_trade_dispute(w: PWorld, own: dict[int, list[OwnPseudonym]]) -> bytes:
    s0, b1 = own[0][0], own[1][0]
    trade = 0
    w.ok([w.p(b1, "disputes/claim", {"slot": 5, "trade": trade, "claim": "non-delivery"})],
         6 * S + SETTLE + 100)
    assert w.events("dispute_decided")[-1]["outcome"] == "upheld"
    return dispute_id_for_trade(5, trade, "non-delivery")


def test_identity_opens_only_for_a_recorded_dispute_and_the_owner_is_sanctioned() -> None:
    w = make_pworld()
    own = run_epoch0(w, deliver_wh=0)  # the seller's pseudonym delivers nothing
    s0 = own[0][0]
    did = dispute_id_for_trade(5, 0, "non-delivery")
    t = 6 * S + SETTLE + 50
    r = w.block([w.tx(w.trustee_keys[0].signing_key, "privacy/release",
                      release_body(w.trustee_keys[0], w.trustee_set, did, [s0.escrow]))], t)
    assert "no-dispute" in r.receipts[0].detail  # nothing recorded yet: trustees cannot act
    assert _open_trade_dispute(w, own) == did
    score_before = reputation_of(w.app.state, w.addr(0))
    t = 6 * S + SETTLE + 200
    w.ok([w.tx(w.users[2], "privacy/request_opening", {"slot": 5, "trade": 0, "claim": "non-delivery"}),
          w.tx(w.trustee_keys[2].signing_key, "privacy/escrow", escrow_body(did, s0.escrow)),
          w.tx(w.trustee_keys[0].signing_key, "privacy/release",
               release_body(w.trustee_keys[0], w.trustee_set, did, [s0.escrow]))], t)
    assert pv.get_opening(w.app.state, s0.address) is None  # 1 share of k = 2: still closed
    w.ok([w.tx(w.trustee_keys[1].signing_key, "privacy/release",
               release_body(w.trustee_keys[1], w.trustee_set, did, [s0.escrow]))], t + 1)
    ev = w.events("identity_opened")
    assert len(ev) == 1 and ev[0]["dispute"] == did and ev[0]["identity"] == w.addr(0)
    assert ev[0]["trustees"] == ["t0", "t1"] and ev[0]["pseudonym"] == s0.address
    # the pseudonym lost score for non-delivery; its owner takes that and the dispute's sanction
    assert reputation_of(w.app.state, w.addr(0)) < score_before - 100
    # the other pseudonyms stay closed
    assert pv.get_opening(w.app.state, own[0][1].address) is None
    assert pv.get_opening(w.app.state, own[1][0].address) is None


def test_an_over_claim_freezes_the_pool_and_openings_pay_true_dues() -> None:
    w = make_pworld()
    money = w.money()
    own = run_epoch0(w)
    w.ok([], epoch_end(w))
    finals = {p.address: pv.get_pseudonym(w.app.state, p.address)["final_micro"]
              for ps in own.values() for p in ps}
    c1 = claim_amount(1, ALLOWANCE, [finals[own[1][0].address]])
    t = epoch_end(w) + 10
    before = (w.bal(w.addr(0)), w.bal(w.addr(1)))
    w.ok([w.tx(w.users[0], "privacy/claim", {"epoch": 1, "amount_micro": 9 * ALLOWANCE}),
          w.tx(w.users[1], "privacy/claim", {"epoch": 1, "amount_micro": c1})], t)
    w.ok([], t + CLAIM_WINDOW)
    disputed = w.events("pool_disputed")
    assert disputed and pv.get_epoch(w.app.state, 1)["status"] == "disputed"
    did = disputed[0]["dispute"]
    escrows = [p.escrow for ps in own.values() for p in ps]
    txs = [w.tx(w.trustee_keys[2].signing_key, "privacy/escrow", escrow_body(did, e)) for e in escrows]
    txs += [w.tx(tk.signing_key, "privacy/release", release_body(tk, w.trustee_set, did, escrows))
            for tk in w.trustee_keys[:2]]
    w.ok(txs, t + CLAIM_WINDOW + 10)
    assert len(w.events("identity_opened")) == 3
    over = w.events("pool_overclaim")
    assert [e["member"] for e in over] == [w.addr(0)]
    due0 = claim_amount(2, ALLOWANCE, [finals[own[0][0].address], finals[own[0][1].address]])
    assert (w.bal(w.addr(0)) - before[0], w.bal(w.addr(1)) - before[1]) == (due0, c1)
    assert w.money() == money and w.bal(pool_address(1)) == 0


def _partials(values: dict[str, int], bad: int | None = None) -> list[list[int]]:
    """Shamir shares (t = 3 of 7) of each meter's net reading, summed per aggregator."""
    sums = [0] * 7
    for i, (cp, v) in enumerate(sorted(values.items())):
        shares = split_secret(encode_signed(v), 3, 7, random_bytes=_rng(cp))
        for s in shares:
            sums[s.x - 1] = (sums[s.x - 1] + s.y) % (2**127 - 1)
    if bad is not None:
        sums[bad] = (sums[bad] + 12345) % (2**127 - 1)
    return [[j, v] for j, v in enumerate(sums)]


def test_aggregate_leaves_out_a_lying_aggregator_and_flags_a_lying_pseudonym() -> None:
    w = make_pworld()
    own = issue(w, 1, {0: [5, 6], 1: [5]}, at=t_order(5) - 200)
    inc = hashlib.sha3_256(b"round").digest()

    def partial_txs(slot: int, truth: dict[str, int], bad: int | None = None) -> list[bytes]:
        out = []
        for j, v in _partials(truth, bad):
            sig = w.aggregators[j].sign(partial_message("f1", 0, slot, j, inc, 3, v), CTX_PARTIAL)
            out.append(w.tx(w.aggregators[j], "privacy/partial",
                            {"slot": slot, "feeder": "f1", "epoch": 0, "inclusion": inc,
                             "meters": 3, "value": v, "sig": sig}))
        return out

    # slot 5, net import per household: u0 -1000 (pseudonym), u1 +1000 (pseudonym), u2 +200
    w.ok([reading(w, own[0][0], 5, 0, 1000), reading(w, own[1][0], 5, 1000, 0),
          w.tx(w.meters[2], "metering/reading", {"slot": 5, "import_wh": 200, "export_wh": 0,
                                                  "firmware": FW})]
         + partial_txs(5, {"cp0": -1000, "cp1": 1000, "cp2": 200}, bad=4), t_read(5))
    w.ok([], 6 * S + SETTLE)
    rej = w.events("aggregator_rejected")
    assert [(e["aggregator"], e["reason"]) for e in rej] == [("a4", "off-polynomial")]
    agg = w.events("aggregate")[0]
    assert agg["total_wh"] == 200 and agg["reported_wh"] == 200 and agg["ok"]
    # slot 6: user 0's pseudonym reports 300 Wh import, but the household exported 500
    w.ok([reading(w, own[0][1], 6, 300, 0)]
         + [w.tx(w.meters[i], "metering/reading", {"slot": 6, "import_wh": 0, "export_wh": 0,
                                                   "firmware": FW}) for i in (1, 2)]
         + partial_txs(6, {"cp0": -500, "cp1": 0, "cp2": 0}), t_read(6))
    w.ok([], 7 * S + SETTLE)
    mm = w.events("aggregate_mismatch")
    assert len(mm) == 1 and mm[0]["pseudonyms"] == [own[0][1].address]
    did = mm[0]["dispute"]
    assert pv.get_dispute(w.app.state, did)["kind"] == "feeder"
    # the mismatch is a recorded dispute: the trustees may open that pseudonym, only that one
    e = own[0][1].escrow
    t = 7 * S + SETTLE + 10
    r = w.block([w.tx(w.trustee_keys[0].signing_key, "privacy/release",
                      release_body(w.trustee_keys[0], w.trustee_set, did, [own[1][0].escrow]))], t)
    assert "not-disputed" in r.receipts[0].detail
    w.ok([w.tx(w.trustee_keys[2].signing_key, "privacy/escrow", escrow_body(did, e))]
         + [w.tx(tk.signing_key, "privacy/release", release_body(tk, w.trustee_set, did, [e]))
            for tk in w.trustee_keys[:2]], t + 1)
    assert w.events("identity_opened")[0]["identity"] == w.addr(0)
