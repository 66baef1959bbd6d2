"""Flexibility non-delivery under pseudonyms (issue 15 x 19, threat rows 6/7): the sanction
follows the owner. A pseudonym that fails an ordered delivery (shortfall beyond tolerance,
and a claim its meter does not show) is charged ``non_delivery`` at its request's final
settlement; in that block the charge becomes a recorded dispute of kind ``flex``; k of the n
trustees open it by the ordinary escrow path and the owner takes what its pseudonym lost.
Removal: without the dispute step the loss ends with the throwaway pseudonym. Four
validators, certified blocks (``tests.privacy.net``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.ledger.modules.privacy.flexibility import FlexDisputes
from gridledger.ledger.modules.privacy.records import dispute_id_for_flex
from gridledger.ledger.modules.reputation.keeper import reputation_of, tier_of
from gridledger.ledger.params import load_params
from gridledger.privacy.ledger_io import escrow_body, release_body
from tests.ledger.modules.test_flex_pseudonyms import NEED_WH, POWER_WH, REF_WH, SLOT, _ordered
from tests.privacy.net import (
    SETTLE,
    Issued,
    PrivacyNet,
    S,
    issue,
    pool_net,
    read,
    t_order,
    t_read,
)


def _fails(tmp: Path) -> tuple[PrivacyNet, Issued, bytes, bytes, bytes]:
    """The request of ``test_flex_pseudonyms``: user 0's slot-5 pseudonym delivers its 800
    Wh; user 1's delivers nothing of its 200 Wh and claims all of it. Returns (net, issued,
    request, delivered offer, failed offer) once the request has settled."""
    w = pool_net(tmp, sections={"flex": {}})
    iss, rid, cheap, dear = _ordered(w)
    s0, b1 = iss.own[0][0], iss.own[1][0]
    w.ok([read(w, iss, s0, SLOT, -REF_WH - POWER_WH, 0), read(w, iss, b1, SLOT, -REF_WH, 0)],
         t_read(SLOT))
    w.ok([w.tx(b1.key, "flex/report", {"request": rid, "offer": dear, "slot": SLOT,
                                       "delivered_wh": NEED_WH - POWER_WH})], w.now + 10)
    w.ok([], (SLOT + 1) * S + SETTLE)
    return w, iss, rid, cheap, dear


def test_a_failed_flex_delivery_opens_the_pseudonym_and_sanctions_its_owner(
        tmp_path: Path) -> None:
    w, iss, rid, cheap, dear = _fails(tmp_path)
    s0, b1, owner = iss.own[0][0].address, iss.own[1][0].address, w.users[1].address
    settled = {e["member"]: e for e in w.events("flex_settled")}
    fail = settled[b1]
    assert fail["shortfall_wh"] > 0 and fail["faults"] == 1 and fail["penalty_micro"] > 0
    loss = 2 * load_params(w.state).rep_loss_non_delivery     # shortfall + the false claim
    assert reputation_of(w.state, b1) == 500 - loss and reputation_of(w.state, owner) == 500
    did = dispute_id_for_flex(rid, dear)
    # recorded in the block that settled the request, with the settlement as evidence; the
    # pseudonym that delivered is not disputed
    (req,) = w.events("opening_requested")
    assert req == {"type": "opening_requested", "dispute": did, "kind": "flex",
                   "pseudonyms": [b1], "slot": SLOT, "request": rid, "offer": dear,
                   "cp": fail_cp(w, rid, dear), "activated_wh": NEED_WH - POWER_WH,
                   "delivered_wh": 0, "shortfall_wh": fail["shortfall_wh"],
                   "penalty_micro": fail["penalty_micro"], "faults": 1}
    assert req["shortfall_wh"] == settled[b1]["shortfall_wh"]
    rec = pv.get_dispute(w.state, did)
    assert rec is not None and rec.kind == "flex" and rec.targets == (b1,)
    assert (rec.reason, rec.request, rec.offer, rec.faults) == ("non_delivery", rid, dear, 1)
    assert pv.get_dispute(w.state, dispute_id_for_flex(rid, cheap)) is None
    assert settled[s0]["shortfall_wh"] == 0

    t = w.now + 10
    tk = w.trustee_keys
    # the ordinary rules of an opening hold for a flex dispute
    out = w.run([w.tx(tk[0].signing_key, "privacy/release",
                      release_body(tk[0], w.trustee_set, did, [iss.own[1][0].escrow]))], t)
    assert out[0].rule == "escrow-not-posted"
    out = w.run([w.tx(tk[2].signing_key, "privacy/escrow",
                      escrow_body(did, iss.own[0][0].escrow))], t + 5)
    assert out[0].rule == "not-disputed"     # the pseudonym that delivered is not named
    w.ok([w.tx(tk[2].signing_key, "privacy/escrow", escrow_body(did, iss.own[1][0].escrow))],
         t + 10)
    w.ok([w.tx(tk[0].signing_key, "privacy/release",
               release_body(tk[0], w.trustee_set, did, [iss.own[1][0].escrow]))], t + 20)
    assert pv.get_opening(w.state, b1) is None          # one share of k = 2
    assert reputation_of(w.state, owner) == 500
    w.ok([w.tx(tk[1].signing_key, "privacy/release",
               release_body(tk[1], w.trustee_set, did, [iss.own[1][0].escrow]))], t + 30)
    (opened,) = w.events("identity_opened")
    assert opened["kind"] == "flex" and opened["identity"] == owner
    assert opened["via"] == "escrow" and opened["trustees"] == ["t0", "t1"]
    # the owner takes what its pseudonym lost: what a clear member loses for the same
    assert reputation_of(w.state, owner) == 500 - loss
    assert tier_of(w.state, owner) == tier_of(w.state, b1) != "good"
    penalty = [e for e in w.events("reputation") if e["reason"] == "pseudonym_penalty"]
    assert [(e["addr"], e["delta"], e["pseudonym"]) for e in penalty] == [(owner, -loss, b1)]
    # nobody else: the household that delivered keeps its score and its anonymity
    assert pv.get_opening(w.state, s0) is None
    assert reputation_of(w.state, w.users[0].address) == 500
    # ... and through its tier, the pseudonyms it may hold in the epochs it joins next
    half = pv.config(w.state).max_tickets // 2  # type: ignore[union-attr]
    out = w.run([w.tx(w.users[1], "privacy/join", {"epoch": 2, "tickets": half + 1})],
                w.now + 10)
    assert out[0].rule == "ticket-cap" and tier_of(w.state, owner) in out[0].detail


def fail_cp(w: PrivacyNet, rid: bytes, oid: bytes) -> str:
    """The stand-in cp the failed offer was made from (as its ``flex_activated`` names)."""
    (act,) = [e for e in w.events("flex_activated") if e["offer"] == oid]
    return str(act["cp"])


def test_without_the_flex_dispute_the_sanction_ends_with_the_pseudonym(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removal: a pseudonym's flexibility sanction is not recorded as a dispute. The
    pseudonym is sanctioned and thrown away; its owner keeps a neutral score and a full set
    of pseudonyms, and the trustees have no dispute to open it for."""
    monkeypatch.setattr(FlexDisputes, "record", lambda self, state, ctx, s, events: None)
    w, iss, rid, _, dear = _fails(tmp_path)
    b1, owner = iss.own[1][0].address, w.users[1].address
    assert [e["member"] for e in w.events("flex_settled") if e["shortfall_wh"]] == [b1]
    assert not w.events("opening_requested")
    assert reputation_of(w.state, b1) < 500
    assert reputation_of(w.state, owner) == 500 and tier_of(w.state, owner) == "good"
    out = w.run([w.tx(w.trustee_keys[2].signing_key, "privacy/escrow",
                      escrow_body(dispute_id_for_flex(rid, dear), iss.own[1][0].escrow))],
                w.now + 10)
    assert out[0].rule == "no-dispute"
    w.ok([w.tx(w.users[1], "privacy/join", {"epoch": 2, "tickets": 2})], w.now + 10)


def _request_for(w: PrivacyNet, cp: str, slot: int) -> bytes:
    """The DSO's one-slot request for ``POWER_WH`` of up-flexibility from ``cp``."""
    return w.tx(w.dso, "flex/request", {
        "area": "line 3", "violation": "overload line 3", "evidence": b"\x42" * 32,
        "first_slot": slot, "energies_wh": [POWER_WH], "direction": "up",
        "price_cap_micro_per_kwh": 200_000, "budget_micro": 1_000_000, "baseline": "declared",
        "reference_method": "dso-forecast", "gate_s": slot * S - 100,
        "cps": [[cp, 1_000_000, [POWER_WH], [REF_WH]]]})


def test_a_later_failure_of_an_opened_pseudonym_sanctions_its_owner_at_once(
        tmp_path: Path) -> None:
    """User 1 holds ONE pseudonym for slots 5 and 6 and fails a request in each. The first
    failure's dispute is opened before the second settles; the second's sanction reaches
    the owner in the block that settles it (its dispute is recorded as evidence too)."""
    from gridledger.ledger.modules.privacy.records import pseudo_cp

    w = pool_net(tmp_path, sections={"flex": {}})
    iss = issue(w, 1, {1: [(5, 6)]}, at=t_order(5) - 200, tickets={1: 2})
    ps, owner = iss.own[1][0], w.users[1].address
    rids, oids = [], []
    for slot in (5, 6):
        (req,) = w.ok([_request_for(w, pseudo_cp(ps.address), slot)], w.now + 10)
        rids.append(req.events[0]["request"])
        (off,) = w.ok([w.tx(ps.key, "flex/offer", {
            "request": rids[-1], "device": "load", "price_micro_per_kwh": 50_000,
            "energies_wh": [POWER_WH], "baseline_wh": [REF_WH]})], w.now + 10)
        oids.append(off.events[0]["offer"])
        w.ok([w.tx(w.dso, "flex/order", {
            "request": rids[-1], "effective_wh": [POWER_WH], "evidence": bytes(32),
            "activations": [[oids[-1], [POWER_WH]]]})], slot * S - 100)
    # it consumes as usual in both slots: nothing delivered, no claim (one cause each)
    w.ok([read(w, iss, ps, 5, -REF_WH, 0)], t_read(5))
    w.ok([], 6 * S + SETTLE)
    loss = load_params(w.state).rep_loss_non_delivery
    first = dispute_id_for_flex(rids[0], oids[0])
    assert [e["dispute"] for e in w.events("opening_requested")] == [first]
    tk = w.trustee_keys
    w.ok([w.tx(tk[2].signing_key, "privacy/escrow", escrow_body(first, ps.escrow)),
          read(w, iss, ps, 6, -REF_WH, 0)], t_read(6))
    w.ok([w.tx(t.signing_key, "privacy/release", release_body(t, w.trustee_set, first,
                                                              [ps.escrow]))
          for t in tk[:2]], w.now + 10)
    assert reputation_of(w.state, owner) == 500 - loss          # carried at the opening
    w.ok([], 7 * S + SETTLE)
    second = dispute_id_for_flex(rids[1], oids[1])
    assert [e["dispute"] for e in w.events("opening_requested")] == [first, second]
    assert pv.get_dispute(w.state, second) is not None
    nd = [e for e in w.events("reputation") if e["reason"] == "non_delivery"]
    assert [e["addr"] for e in nd] == [ps.address, ps.address, owner]
    assert reputation_of(w.state, owner) == 500 - 2 * loss     # at once, not carried twice
