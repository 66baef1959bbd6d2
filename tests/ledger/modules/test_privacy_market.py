"""Surveillance findings under pseudonyms (issue 14.1, threat row 6): a finding that names a
pseudonym is a recorded dispute; k trustees open its escrow through the ordinary path and
the sanction reaches the owner — and, through its tier, the pseudonyms it may hold next.
Four validators, certified blocks (``tests.privacy.net``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.ledger.modules.privacy.market import MarketDisputes
from gridledger.ledger.modules.privacy.records import dispute_id_for_finding
from gridledger.ledger.modules.reputation.keeper import reputation_of, tier_of
from gridledger.ledger.modules.surveillance import hooks
from gridledger.privacy.ledger_io import escrow_body, release_body
from tests.privacy.net import (
    ALLOWANCE,
    FW,
    SETTLE,
    Issued,
    PrivacyNet,
    issue,
    order,
    pool_net,
    read,
    t_clear,
    t_order,
    t_read,
)


def market_net(tmp: Path) -> tuple[PrivacyNet, Issued]:
    """Surveillance on; epoch 1 issued: user 0 holds ONE pseudonym for slots 5 and 6, users
    1 and 2 one each for slot 5."""
    w = pool_net(tmp, sections={"surveillance": {}})
    iss = issue(w, 1, {0: [(5, 6)], 1: [5], 2: [5]}, at=t_order(5) - 200,
                tickets={0: 2, 1: 1, 2: 1})
    return w, iss


def withhold(w: PrivacyNet, iss: Issued, slot: int) -> None:
    """User 0's pseudonym asks 400 000 µ/kWh (above 120 % of retail) for 2 kWh while a
    buyer bids 200 000 for 1 kWh; in slot 5 user 2 sells 500 Wh at 90 000, and user 3
    (trading under its own name) withholds 1 kWh as well."""
    s0 = iss.own[0][0]
    txs = [order(w, s0, slot, "sell", 2000, 400_000)]
    if slot == 5:
        txs += [order(w, iss.own[1][0], 5, "buy", 1000, 200_000),
                order(w, iss.own[2][0], 5, "sell", 500, 90_000),
                w.tx(w.users[3], "market/order", {"slot": 5, "side": "sell", "energy_wh": 1000,
                                                  "price_micro_per_kwh": 400_000})]
    else:
        txs.append(w.tx(w.users[4], "market/order", {"slot": slot, "side": "buy",
                                                     "energy_wh": 1000,
                                                     "price_micro_per_kwh": 200_000}))
    w.ok(txs, t_order(slot))
    w.ok([], t_clear(slot))


def open_escrow(w: PrivacyNet, iss: Issued, did: bytes, at: int) -> None:
    s0 = iss.own[0][0]
    w.ok([w.tx(w.trustee_keys[2].signing_key, "privacy/escrow", escrow_body(did, s0.escrow))],
         at)
    w.ok([w.tx(tk.signing_key, "privacy/release",
               release_body(tk, w.trustee_set, did, [s0.escrow]))
          for tk in w.trustee_keys[:2]], at + 10)


def test_a_finding_against_a_pseudonym_opens_its_escrow_and_sanctions_the_owner(
        tmp_path: Path) -> None:
    w, iss = market_net(tmp_path)
    s0, owner = iss.own[0][0].address, w.users[0].address
    withhold(w, iss, 5)
    (f,) = w.events("market_abuse")
    assert f["kind"] == "withholding" and set(f["subjects"]) == {s0, w.users[3].address}
    did = dispute_id_for_finding(f["id"])
    (req,) = w.events("opening_requested")
    # the clear member was sanctioned by surveillance; only the pseudonym is disputed
    assert req == {"type": "opening_requested", "dispute": did, "kind": "market",
                   "pseudonyms": [s0], "slot": 5, "finding": f["id"],
                   "finding_kind": "withholding"}
    rec = pv.get_dispute(w.state, did)
    assert rec is not None and rec.finding == f["id"] and rec.targets == (s0,)
    assert reputation_of(w.state, s0) == 350 and reputation_of(w.state, owner) == 500

    t = t_clear(5) + 10
    # the ordinary rules of an opening hold for a market dispute
    out = w.run([w.tx(w.trustee_keys[0].signing_key, "privacy/release",
                      release_body(w.trustee_keys[0], w.trustee_set, did,
                                   [iss.own[0][0].escrow]))], t)
    assert out[0].rule == "escrow-not-posted"
    out = w.run([w.tx(w.trustee_keys[2].signing_key, "privacy/escrow",
                      escrow_body(did, iss.own[1][0].escrow))], t + 5)
    assert out[0].rule == "not-disputed"  # the buyer's pseudonym is not named
    w.ok([w.tx(w.trustee_keys[2].signing_key, "privacy/escrow",
               escrow_body(did, iss.own[0][0].escrow))], t + 10)
    w.ok([w.tx(w.trustee_keys[0].signing_key, "privacy/release",
               release_body(w.trustee_keys[0], w.trustee_set, did, [iss.own[0][0].escrow]))],
         t + 20)
    assert pv.get_opening(w.state, s0) is None  # one share of k = 2
    w.ok([w.tx(w.trustee_keys[1].signing_key, "privacy/release",
               release_body(w.trustee_keys[1], w.trustee_set, did, [iss.own[0][0].escrow]))],
         t + 30)
    (opened,) = w.events("identity_opened")
    assert opened["kind"] == "market" and opened["identity"] == owner
    assert opened["via"] == "escrow" and opened["trustees"] == ["t0", "t1"]
    # the owner takes what its pseudonym lost: the same 150 a clear member loses
    assert reputation_of(w.state, owner) == 350 and tier_of(w.state, owner) == "watch"
    penalty = [e for e in w.events("reputation") if e["reason"] == "pseudonym_penalty"]
    assert penalty == [{"type": "reputation", "addr": owner, "reason": "pseudonym_penalty",
                        "delta": -150, "score": 350, "slot": penalty[0]["slot"],
                        "pseudonym": s0}]
    assert pv.get_opening(w.state, iss.own[1][0].address) is None  # nobody else opened

    # the same pseudonym withholds again in its second slot: its owner is known, so this
    # finding's sanction reaches the owner in the block that makes it
    withhold(w, iss, 6)
    f2 = w.events("market_abuse")[-1]
    assert f2["subjects"] == [s0]
    assert pv.get_dispute(w.state, dispute_id_for_finding(f2["id"])) is not None
    assert reputation_of(w.state, owner) == 200 and tier_of(w.state, owner) == "restricted"

    # ... and the pseudonyms it may hold from now on: none (it trades under its own name,
    # where a clear member's sanctions apply)
    out = w.run([w.tx(w.users[0], "privacy/join", {"epoch": 2, "tickets": 1})], w.now + 10)
    assert out[0].rule == "ticket-cap" and "restricted" in out[0].detail
    w.ok([w.tx(w.users[1], "privacy/join", {"epoch": 2, "tickets": 2})], w.now + 10)


def test_without_the_market_dispute_the_sanction_ends_with_the_pseudonym(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removal: findings are not recorded as disputes. The pseudonym is sanctioned and
    thrown away; its owner keeps a good score and a full set of pseudonyms, and the
    trustees have no dispute to open it for."""
    monkeypatch.setattr(MarketDisputes, "step", lambda self, state, ctx, events: None)
    w, iss = market_net(tmp_path)
    owner = w.users[0].address
    withhold(w, iss, 5)
    withhold(w, iss, 6)
    found = w.events("market_abuse")
    assert len(found) == 2 and not w.events("opening_requested")
    assert reputation_of(w.state, iss.own[0][0].address) == 200
    assert reputation_of(w.state, owner) == 500 and tier_of(w.state, owner) == "good"
    out = w.run([w.tx(w.trustee_keys[2].signing_key, "privacy/escrow",
                      escrow_body(dispute_id_for_finding(found[0]["id"]),
                                  iss.own[0][0].escrow))], w.now + 10)
    assert out[0].rule == "no-dispute"
    w.ok([w.tx(w.users[0], "privacy/join", {"epoch": 2, "tickets": 2})], w.now + 10)


# -- physical withholding under pseudonyms ---------------------------------------------------
PLANT_EXPORT_WH = 30_000
"""A PV plant's export in one slot: far more than a pseudonym's allowance backs."""


def plant_slot(w: PrivacyNet, iss: Issued, slot: int) -> dict[str, Any]:
    """User 0's pseudonym exports ``PLANT_EXPORT_WH`` and offers all its allowance can back
    as delivery deposit (an offer of 97 % of the export is refused ``insufficient-funds``);
    user 3, under its own name, bids for 10 kWh, so the slot is short. Returns the refused
    order's receipt."""
    ps = iss.own[0][0]
    backed_wh = ALLOWANCE * 1000 // 350_000       # the default deposit rate, tier good
    too_big = w.run([order(w, ps, slot, "sell", PLANT_EXPORT_WH * 97 // 100, 80_000)],
                    t_order(slot))
    w.ok([order(w, ps, slot, "sell", backed_wh, 80_000),
          w.tx(w.users[3], "market/order", {"slot": slot, "side": "buy", "energy_wh": 10_000,
                                            "price_micro_per_kwh": 200_000})], t_order(slot) + 5)
    w.ok([], t_clear(slot))
    w.ok([read(w, iss, ps, slot, 0, PLANT_EXPORT_WH),
          w.tx(w.meters[3], "metering/reading", {"slot": slot, "import_wh": 10_000,
                                                 "export_wh": 0, "firmware": FW})],
         t_read(slot))
    w.ok([], (slot + 1) * 900 + SETTLE + 10)      # settles
    w.ok([], (slot + 1) * 900 + SETTLE + 70)      # surveillance reads the settled slot
    return {"rule": too_big[0].rule, "traded": sum(t["energy_wh"] for t in w.events("trade"))}


def test_an_honest_pseudonym_offering_all_its_allowance_backs_is_not_withholding(
        tmp_path: Path) -> None:
    """Issue 14 (the honest privacy-mode day: 2 physical-withholding findings against honest
    pseudonyms, and the trustees opened 2 honest households' identities). A per-slot
    pseudonym's money is its pool allowance; the delivery deposit of a sell bounds what it
    can offer, whatever its PV exports. Offering all that is no withholding: what it could
    offer is its export within its envelope AND within what its money backs."""
    w = pool_net(tmp_path, sections={"surveillance": {}})
    iss = issue(w, 1, {0: [5]}, at=t_order(5) - 200)
    out = plant_slot(w, iss, 5)
    assert out["rule"] == "insufficient-funds"     # what the honest client sent before
    assert 0 < out["traded"] < 10_000              # short: the buyer's rest went unmet
    assert w.events("market_abuse") == [] and w.events("opening_requested") == []
    # it settled a real sale (+15), less the refused order (-2): no sanction
    assert reputation_of(w.state, iss.own[0][0].address) == 513
    assert not [e for e in w.events("reputation") if e["reason"] == "market_abuse"]


def test_without_the_deposit_bound_the_honest_pseudonym_is_found_and_disputed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removal: what a holder could offer ignores what its money backs. The pseudonym that
    offered its whole allowance's worth (19 % of the plant's export) is found withholding,
    and the finding is a recorded dispute: the trustees would open an honest household."""
    detect = hooks.physical_withholding
    monkeypatch.setattr(hooks, "physical_withholding", lambda supply, exports, traded, cfg:
                        detect(replace(supply, backing=()), exports, traded, cfg))
    w = pool_net(tmp_path, sections={"surveillance": {}})
    iss = issue(w, 1, {0: [5]}, at=t_order(5) - 200)
    plant_slot(w, iss, 5)
    (f,) = w.events("market_abuse")
    assert f["kind"] == "physical-withholding" and f["subjects"] == [iss.own[0][0].address]
    (req,) = w.events("opening_requested")
    assert req["pseudonyms"] == [iss.own[0][0].address]
