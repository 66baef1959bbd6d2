"""Flexibility under pseudonyms (issue 15 x issue 19), on the privacy net (four validators,
real pseudonym issuance, meter-vouched reading keys): the DSO names eligible households by
their slot's stand-in cps ``ps:<addr>``, each offers, reports and is paid under its slot's
pseudonym, delivery settles on the stand-in cp's reading, and an epoch's pay-out leaves no
flexibility key naming any of its pseudonyms. No device record labels a pseudonym (the DSO
caps its eligible ``max_wh`` by the device's power instead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.ledger.modules.privacy.records import dispute_id_for_flex, pseudo_cp
from gridledger.ledger.modules.registry.keeper import participant
from gridledger.ledger.modules.reputation.keeper import reputation_of
from gridledger.ledger.params import load_params
from gridledger.privacy.ledger_io import claim_amount, escrow_body, release_body
from gridledger.sim.keys import sim_key
from tests.privacy.net import (
    ALLOWANCE,
    SETTLE,
    Issued,
    PrivacyNet,
    S,
    epoch_close_time,
    issue,
    pool_net,
    read,
    t_order,
    t_read,
)

SLOT = 5                       # the request's (single) slot, in epoch 1 (slots 4..7)
GATE_S = SLOT * S - 100
CAP = 200_000
POWER_WH = 800                 # the devices' power per slot: the DSO's cap on max_wh
NEED_WH = 1_000
REF_WH = -2_000                # the DSO's reference: 2 kWh imported in the slot
CLAIM_WINDOW = 900


def _request(w: PrivacyNet, cps: list[str]) -> bytes:
    return w.tx(w.dso, "flex/request", {
        "area": "line 3", "violation": "overload line 3", "evidence": b"\x42" * 32,
        "first_slot": SLOT, "energies_wh": [NEED_WH], "direction": "up",
        "price_cap_micro_per_kwh": CAP, "budget_micro": 1_000_000, "baseline": "declared",
        "reference_method": "dso-forecast", "gate_s": GATE_S,
        "cps": [[cp, 1_000_000, [POWER_WH], [REF_WH]] for cp in cps]})


def _offer(w: PrivacyNet, key: Any, rid: bytes, price: int, wh: int) -> bytes:
    return w.tx(key, "flex/offer", {"request": rid, "device": "load",
                                    "price_micro_per_kwh": price, "energies_wh": [wh],
                                    "baseline_wh": [REF_WH]})


def _ordered(w: PrivacyNet) -> tuple[Issued, bytes, bytes, bytes]:
    """User 0 (pseudonyms for slots 5 and 6) and user 1 (slot 5); the DSO requests 1 kWh of
    up-flexibility in slot 5 from both slot-5 pseudonyms' stand-in cps (and, wrongly, user
    0's slot-6 one); both offer 800 Wh, the order activates the cheaper fully, the other for
    the rest. Returns (issued, request, cheap offer, dear offer)."""
    iss = issue(w, 1, {0: [5, 6], 1: [5]}, at=t_order(SLOT) - 200)
    s0, s0b, b1 = iss.own[0][0], iss.own[0][1], iss.own[1][0]
    out = w.ok([_request(w, [pseudo_cp(p.address) for p in (s0, s0b, b1)])], w.now + 10)
    rid = out[0].events[0]["request"]
    out = w.ok([_offer(w, s0.key, rid, 50_000, POWER_WH),
                _offer(w, b1.key, rid, 90_000, POWER_WH)], w.now + 10)
    cheap, dear = (o.events[0]["offer"] for o in out)
    w.ok([w.tx(w.dso, "flex/order", {
        "request": rid, "effective_wh": [NEED_WH], "evidence": bytes(32),
        "activations": [[cheap, [POWER_WH]], [dear, [NEED_WH - POWER_WH]]]})], GATE_S)
    return iss, rid, cheap, dear


def test_pseudonyms_offer_report_and_are_paid_on_their_stand_in_meter(tmp_path: Path) -> None:
    w = pool_net(tmp_path, sections={"flex": {}})
    iss, rid, cheap, dear = _ordered(w)
    s0, b1 = iss.own[0][0], iss.own[1][0]
    (req,) = w.events("flex_requested")
    assert req["cps"] == 3 and req["dso"] == w.dso.address
    acts = {e["member"]: (e["cp"], e["activated_wh"]) for e in w.events("flex_activated")}
    assert acts == {s0.address: (pseudo_cp(s0.address), [POWER_WH]),
                    b1.address: (pseudo_cp(b1.address), [NEED_WH - POWER_WH])}
    # s0 consumes 800 Wh less than the reference (delivers), b1 as usual (delivers nothing)
    w.ok([read(w, iss, s0, SLOT, -REF_WH - POWER_WH, 0), read(w, iss, b1, SLOT, -REF_WH, 0)],
         t_read(SLOT))
    w.ok([w.tx(s0.key, "flex/report", {"request": rid, "offer": cheap, "slot": SLOT,
                                       "delivered_wh": POWER_WH}),
          w.tx(b1.key, "flex/report", {"request": rid, "offer": dear, "slot": SLOT,
                                       "delivered_wh": NEED_WH - POWER_WH})], w.now + 10)
    w.ok([], (SLOT + 1) * S + SETTLE)
    settled = {e["member"]: e for e in w.events("flex_settled")}
    assert settled[s0.address]["paid_micro"] == POWER_WH * 50_000 // 1000
    assert settled[s0.address]["penalty_micro"] == 0
    assert settled[b1.address]["paid_micro"] == 0 and settled[b1.address]["penalty_micro"] > 0
    assert [e["member"] for e in w.events("claim_rejected")] == [b1.address]
    # the sanction lands on the pseudonym (and follows its owner like every other one)
    assert reputation_of(w.state, b1.address) < reputation_of(w.state, s0.address)
    # no flexibility event names a household: addresses or cps
    households = {u.address for u in w.users} | {f"cp{i}" for i in range(len(w.users))}
    for t in ("flex_requested", "flex_offered", "flex_activated", "flex_reported",
              "flex_delivery", "flex_settled", "claim_rejected", "baseline_capped"):
        for e in w.events(t):
            assert not households & {v for v in e.values() if isinstance(v, (bytes, str))}, e
    # pay-out: the owners claim their pseudonyms' finals (the flex income included); the
    # epoch's pseudonyms retire and no flex key names any of them or their stand-in cps
    close = epoch_close_time(1)
    w.ok([], close)
    f = {p.address: pv.get_pseudonym(w.state, p.address).final_micro  # type: ignore[union-attr]
         for ps in iss.own.values() for p in ps}
    retail = load_params(w.state).retail_import_micro_per_kwh
    assert f[s0.address] == (ALLOWANCE + settled[s0.address]["paid_micro"]
                             - (-REF_WH - POWER_WH) * retail // 1000)
    assert f[b1.address] == (ALLOWANCE - settled[b1.address]["penalty_micro"]
                             - -REF_WH * retail // 1000)
    w.ok([w.tx(w.users[0], "privacy/claim", {"epoch": 1, "amount_micro": claim_amount(
              2, ALLOWANCE, [f[p.address] for p in iss.own[0]])}),
          w.tx(w.users[1], "privacy/claim", {"epoch": 1, "amount_micro": claim_amount(
              1, ALLOWANCE, [f[b1.address]])})], close + 10)
    w.ok([], close + 10 + CLAIM_WINDOW)
    assert pv.get_epoch(w.state, 1).status == "paid"
    (ret,) = w.events("pseudonyms_retired")
    # b1's non-delivery is a recorded dispute (kind flex): it stays until the trustees open
    # it (test_flex_disputes.py), then it retires too
    assert ret["retired"] == 2 and participant(w.state, b1.address) is not None
    did = dispute_id_for_flex(rid, dear)
    tk = w.trustee_keys
    w.ok([w.tx(tk[2].signing_key, "privacy/escrow", escrow_body(did, b1.escrow))], w.now + 10)
    w.ok([w.tx(t.signing_key, "privacy/release", release_body(t, w.trustee_set, did,
                                                              [b1.escrow]))
          for t in tk[:2]], w.now + 10)
    assert pv.get_opening(w.state, b1.address) is not None
    assert participant(w.state, b1.address) is None
    marks = [m for ps in iss.own.values() for p in ps
             for m in (p.address, pseudo_cp(p.address).encode())]
    assert not [k for k in w.state.keys_with_prefix(b"flex/") if any(m in k for m in marks)]


def _refused(w: PrivacyNet, txs: list[bytes], at: int) -> list[str | None]:
    return [o.rule for o in w.run(txs, at)]


def test_pseudonym_rules_name_the_rule_and_change_nothing(tmp_path: Path) -> None:
    w = pool_net(tmp_path, sections={"flex": {"resources": [["cp0", "ev", 3_000]]}})
    iss = issue(w, 1, {0: [5, 6], 1: [5]}, at=t_order(SLOT) - 200)
    s0, s0b, b1 = iss.own[0][0], iss.own[0][1], iss.own[1][0]
    out = w.ok([_request(w, [pseudo_cp(p.address) for p in (s0, s0b)])], w.now + 10)
    rid = out[0].events[0]["request"]
    before = dict(w.state.items_with_prefix(b"flex/"))
    ven = sim_key(5, "ven", 0, alg="ml-dsa-44")
    rules = _refused(w, [
        # the household's own identity: its cp is not named (its device record is no help)
        _offer(w, w.users[0], rid, 50_000, POWER_WH),
        # user 0's slot-6 pseudonym, named by mistake, offers for slot 5
        _offer(w, s0b.key, rid, 50_000, POWER_WH),
        # user 1's slot-5 pseudonym is not named
        _offer(w, b1.key, rid, 50_000, POWER_WH),
        # above the cap the DSO set from the device's power
        _offer(w, s0.key, rid, 50_000, POWER_WH + 1),
        # no device record at a stand-in cp; no VEN enrolled by a pseudonym
        w.tx(w.dso, "flex/resource", {"cp": pseudo_cp(s0.address), "device": "ev",
                                      "power_wh": 1_850}),
        w.tx(s0.key, "flex/ven", {"name": "ps-ven", "alg": ven.alg, "pk": ven.public_key.raw,
                                  "secret_hash": bytes(32)})], w.now + 10)
    assert rules == ["not-eligible", "pseudonym-slot", "not-eligible", "above-envelope",
                     "pseudonym-device", "pseudonym-ven"]
    assert dict(w.state.items_with_prefix(b"flex/")) == before
    # within the cap, the slot's pseudonym offers with no device record anywhere near it
    (ok,) = w.ok([_offer(w, s0.key, rid, 50_000, POWER_WH)], w.now + 10)
    assert ok.events[0]["cp"] == pseudo_cp(s0.address)
    assert not list(w.state.keys_with_prefix(b"flex/dev/ps:"))


def test_a_quarantined_or_suspended_pseudonym_offers_nothing(tmp_path: Path) -> None:
    """The stand-in cp's firmware of record (bound at registration) and the pseudonym's own
    reputation gate its offers as they gate a household's: user 0's meter runs the advised
    image (``meter-quarantined``), user 1's pseudonym is suspended (``flex-suspended``), user
    2's offers. A chain without a ``flex`` genesis section runs the programme on defaults."""
    from gridledger.ledger.modules.reputation.keeper import get_record, put_record
    from tests.ledger.modules.test_firmware_at_registration import _advise
    from tests.privacy.net import firmware_net

    w, old, new = firmware_net(tmp_path, 31)
    at = t_order(SLOT) - 300
    iss = issue(w, 1, {0: [SLOT], 1: [SLOT], 2: [SLOT]}, at=at,
                firmware={0: old.manifest.image_sha3, 1: new.manifest.image_sha3,
                          2: new.manifest.image_sha3})
    _advise(w, at + 3)
    (p0,), (p1,), (p2,) = iss.own[0], iss.own[1], iss.own[2]
    rec = get_record(w.state, p1.address)
    for v in w.net.validators:  # the same (test-only) change on every validator
        put_record(v.app.state, p1.address, {**rec, "score": 50})
    out = w.ok([_request(w, [pseudo_cp(p.address) for p in (p0, p1, p2)])], w.now + 10)
    rid = out[0].events[0]["request"]
    assert _refused(w, [_offer(w, p.key, rid, 50_000, POWER_WH) for p in (p0, p1, p2)],
                    w.now + 10) == ["meter-quarantined", "flex-suspended", None]
