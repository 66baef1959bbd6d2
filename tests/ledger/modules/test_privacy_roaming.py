"""EV roaming on the home ledger, on the real path (four validators, certified blocks;
THREATS row 13, issue 21 item 5): the member's signed limits are booked and held before the
EV charges, the home DSO cannot re-price the session, and a member who rotates its key or
moves its money after charging abroad still pays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.errors import ConfigError
from gridledger.ledger import codec
from gridledger.ledger.modules.governance.keeper import grid_account
from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.ledger.modules.privacy.config import parse_config
from gridledger.ledger.modules.privacy.records import hold_address
from gridledger.ledger.modules.registry.handlers import ROTATE_CONTEXT
from gridledger.privacy.pseudonyms import (
    PseudonymCertificate,
    assemble_certificate,
    create_pseudonym,
    endorse_pseudonym,
)
from gridledger.privacy.roaming import (
    CTX_BILL,
    HomeBilling,
    RoamingClaim,
    RoamingLimits,
    admit_roaming_ev,
    authorisation_message,
    authorise_body,
    charge_body,
    issue_guarantee,
    make_claim,
    new_session_id,
    open_billing_token,
    request_charging,
    seal_billing_token,
    settle_roaming_claim,
    sign_receipt,
)
from gridledger.sim.keys import sim_key
from gridledger.types import payment_micro
from tests.privacy.net import COMMUNITY, PrivacyNet, S, make_net

FOREIGN, FOREIGN_DSO = "foreign-town", "foreign-dso"
EPOCH = 3
ENERGY_WH, PRICE = 11_000, 420_000              # the session: 4.62 CU
LIMITS = RoamingLimits(11_000, 420_000)          # what the member authorises: 4.62 CU at most
T0 = 40 * S


def _partner(key: SigningKey, community: str = FOREIGN, dso_id: str = FOREIGN_DSO
             ) -> dict[str, Any]:
    return {"community": community, "dso_id": dso_id, "alg": key.alg, "pk": key.public_key.raw}


@dataclass
class Roaming:
    w: PrivacyNet
    billing: KemKey
    foreign_dso: SigningKey
    cert: PseudonymCertificate
    claim: RoamingClaim
    bill: HomeBilling


def net(tmp: Path, partners: bool = True, **kw: Any) -> PrivacyNet:
    foreign = sim_key(11, "foreign-dso", 0, alg="ml-dsa-44")
    return make_net(tmp, privacy={"roaming_partners": [_partner(foreign)] if partners else [],
                                  **kw})


def book(w: PrivacyNet, user: int = 0, limits: RoamingLimits = LIMITS, at: int = T0,
         account_key: SigningKey | None = None) -> tuple[Any, ...]:
    """At home: a roaming certificate, the member's billing token, the DSO's booking."""
    billing = KemKey(b"\x07" * 64)
    member = w.users[user]
    key, req = create_pseudonym(member, w.trustee_set, EPOCH, "roaming",
                                pseudonym_alg="ml-dsa-44")
    cert = assemble_certificate(req, [endorse_pseudonym(t, w.trustee_set, req, EPOCH)
                                      for t in w.trustee_keys[:2]])
    seq = pv.next_roaming_seq(w.state, member.address)
    token = seal_billing_token(account_key or member, member.address, seq, cert,
                               new_session_id(), limits, billing.public_key)
    auth = open_billing_token(token, cert, billing)
    out = w.run([w.tx(w.dso, "privacy/roaming_authorise", authorise_body(auth))], at)
    return out[0], key, cert, token, auth, billing


def roam(tmp: Path, w: PrivacyNet | None = None, user: int = 0, at: int = T0) -> Roaming:
    """User ``user``'s EV charges in foreign-town; the home DSO settles the claim."""
    w = w or net(tmp)
    outcome, key, cert, token, auth, billing = book(w, user, at=at)
    assert outcome.ok, outcome
    foreign_dso = sim_key(11, "foreign-dso", 0, alg="ml-dsa-44")
    guarantee = issue_guarantee(w.dso, "dso", cert, auth, valid_until_slot=200)
    request = request_charging(key, cert, guarantee, token, FOREIGN, "station-3", 77)
    sess = admit_roaming_ev(request, FOREIGN, {COMMUNITY: w.trustee_set},
                            {(COMMUNITY, "dso"): w.dso.public_key}, EPOCH)
    receipt = sign_receipt(key, sess, ENERGY_WH, PRICE)
    claim = make_claim(foreign_dso, FOREIGN_DSO, sess, request, receipt)
    cfg = pv.config(w.state)
    assert cfg is not None
    bill = settle_roaming_claim(claim, home_trustees=w.trustee_set,
                                foreign_dso_keys=cfg.roaming_dso_keys(), billing_key=billing)
    return Roaming(w, billing, foreign_dso, cert, claim, bill)


def charge(r: Roaming, body: dict[str, Any] | None = None, sender: SigningKey | None = None,
           at: int | None = None) -> Any:
    w = r.w
    return w.run([w.tx(sender or w.dso, "privacy/roaming_charge",
                       body if body is not None else charge_body(r.bill))],
                 at or w.now + 10)[0]


def test_ev_charges_abroad_and_is_billed_at_home_without_the_foreign_side_learning_who(
        tmp_path: Path) -> None:
    w = net(tmp_path)
    grid = grid_account(w.state)
    assert grid == w.dso.address
    money, before = w.money(), (w.bal(w.users[0].address), w.bal(grid))
    r = roam(tmp_path, w)
    held = LIMITS.max_amount_micro
    assert w.bal(w.users[0].address) == before[0] - held  # held before any energy flowed
    assert w.bal(hold_address(w.users[0].address, 0)) == held
    rc = charge(r)
    assert rc.ok, rc
    amount = payment_micro(ENERGY_WH, PRICE)
    assert r.bill.account_address == w.users[0].address and r.bill.amount_micro == amount
    assert (w.bal(w.users[0].address), w.bal(grid)) == (before[0] - amount, before[1] + amount)
    assert w.bal(hold_address(w.users[0].address, 0)) == 0 and w.money() == money
    ev = w.events("roaming_charged")
    assert len(ev) == 1 and ev[0]["account"] == w.users[0].address
    assert ev[0]["amount_micro"] == amount and ev[0]["returned_micro"] == held - amount
    assert pv.roaming_due(w.state, FOREIGN, FOREIGN_DSO) == amount
    # what the foreign DSO holds (certificate, claim, pseudonym, session) appears nowhere on
    # the home ledger, and the member's signature is over a commitment it cannot recompute
    public = (codec.encode(authorise_body(r.bill.authorisation)) + codec.encode(charge_body(r.bill))
              + b"".join(codec.encode(e) for e in ev + w.events("roaming_authorised")))
    known = (r.cert.digest(), r.claim.digest(), r.cert.address,
             r.claim.request.session_id)
    for x in known:
        assert x not in public
        assert not w.users[0].public_key.verify(
            authorisation_message(COMMUNITY, w.users[0].address, 0, x, LIMITS),
            r.bill.authorisation.signature, CTX_BILL)


def test_the_home_dso_cannot_re_price_an_authorised_session(tmp_path: Path) -> None:
    r = roam(tmp_path)
    body = charge_body(r.bill)
    grid = grid_account(r.w.state)
    before = r.w.bal(grid)  # type: ignore[arg-type]
    # 4.62 CU authorised; the DSO tries 10 CU: by price, by energy, by amount
    by_price = {**body, "price_micro_per_kwh": 909_091,
                "amount_micro": payment_micro(ENERGY_WH, 909_091)}
    by_energy = {**body, "energy_wh": 23_810, "amount_micro": payment_micro(23_810, PRICE)}
    for bad in (by_price, by_energy):
        rc = charge(r, bad)
        assert rc.rule == "roaming-limit", rc
    rc = charge(r, {**body, "amount_micro": 10_000_000})
    assert rc.rule == "roaming-amount"
    assert r.w.bal(grid) == before  # type: ignore[arg-type]
    assert charge(r).ok


def test_rotating_the_key_or_moving_the_money_after_charging_does_not_escape(
        tmp_path: Path) -> None:
    r = roam(tmp_path)
    w = r.w
    member = w.users[0]
    # after charging abroad the member rotates its key and tries to empty its account
    new = SigningKey.generate("ml-dsa-65")
    w.ok([w.tx(member, "registry/rotate_key", {"alg": new.alg, "pk": new.public_key.raw,
                                              "pop": new.sign(member.address, ROTATE_CONTEXT)})],
         w.now + 10)
    rest = w.bal(member.address)
    out = w.run([w.tx(new, "bank/transfer", {"to": w.users[1].address, "amount_micro": rest},
                      sender=member.address)], w.now + 10)
    assert out[0].ok and w.bal(member.address) == 0
    rc = charge(r)
    assert rc.ok, rc  # the booking was checked and held before the charge: it stands
    assert w.events("roaming_charged")[-1]["amount_micro"] == payment_micro(ENERGY_WH, PRICE)
    # the old key authorises nothing new
    outcome, *_ = book(w, account_key=member, at=w.now + 10)
    assert outcome.rule == "roaming-billing-sig"


def test_a_booking_needs_the_members_signature_its_sequence_and_its_money(
        tmp_path: Path) -> None:
    w = net(tmp_path)
    outcome, _, _, _, auth, _ = book(w)
    assert outcome.ok
    body = authorise_body(auth)
    out = w.run([w.tx(w.dso, "privacy/roaming_authorise", body)], w.now + 10)
    assert out[0].rule == "roaming-seq"  # one booking per signed token
    forged = {**body, "seq": 1,
              "billing_sig": w.users[1].sign(authorisation_message(
                  COMMUNITY, w.users[0].address, 1, body["commitment"], LIMITS), CTX_BILL)}
    out = w.run([w.tx(w.dso, "privacy/roaming_authorise", forged)], w.now + 10)
    assert out[0].rule == "roaming-billing-sig"
    out = w.run([w.tx(w.dso, "privacy/roaming_authorise",
                      {**body, "seq": 1, "max_energy_wh": 22_000})], w.now + 10)
    assert out[0].rule == "roaming-billing-sig"  # limits are signed
    trustee = w.trustee_keys[0].signing_key.address
    out = w.run([w.tx(w.dso, "privacy/roaming_authorise", {**body, "account": trustee})],
                w.now + 10)
    assert out[0].rule == "roaming-account"
    out = w.run([w.tx(w.users[2], "privacy/roaming_authorise", {**body, "seq": 1})], w.now + 10)
    assert out[0].rule == "unauthorized"
    huge = RoamingLimits(1_000_000, 10**9)  # more than the member holds
    outcome, *_ = book(w, limits=huge, at=w.now + 10)
    assert outcome.rule == "insufficient-funds"


def test_a_session_is_charged_once_and_an_unused_hold_comes_back(tmp_path: Path) -> None:
    w = net(tmp_path, roaming_hold_s=3600)
    r = roam(tmp_path, w)
    assert charge(r).ok
    rc = charge(r)
    assert rc.rule == "roaming-claimed"
    assert len(w.events("roaming_charged")) == 1
    # a second session booked but never charged: released when its hold expires
    before = w.bal(w.users[1].address)
    outcome, *_ = book(w, user=1, at=w.now + 10)
    assert outcome.ok and w.bal(w.users[1].address) == before - LIMITS.max_amount_micro
    w.ok([], w.now + 3600)
    assert w.bal(w.users[1].address) == before
    assert [e["account"] for e in w.events("roaming_released")] == [w.users[1].address]
    late = {**charge_body(r.bill), "account": w.users[1].address, "seq": 0}
    assert charge(r, late).rule == "roaming-claimed"


def test_only_pinned_partners_bill_and_only_the_dso_books(tmp_path: Path) -> None:
    r = roam(tmp_path)
    body = charge_body(r.bill)
    rc = charge(r, {**body, "foreign_community": "elsewhere"})
    assert rc.rule == "unknown-roaming-partner"
    rc = charge(r, {**body, "foreign_dso": "other-dso"})
    assert rc.rule == "unknown-roaming-partner"
    assert charge(r, sender=r.w.users[2]).rule == "unauthorized"
    assert charge(r, sender=r.w.trustee_keys[0].signing_key).rule == "unauthorized"
    assert charge(r).ok


def test_a_claim_from_an_unpinned_dso_does_not_settle(tmp_path: Path) -> None:
    r = roam(tmp_path)
    w = net(tmp_path / "other", partners=False)
    cfg = pv.config(w.state)
    assert cfg is not None and cfg.roaming_dso_keys() == {}
    with pytest.raises(Exception, match="known foreign DSO"):
        settle_roaming_claim(r.claim, home_trustees=w.trustee_set,
                             foreign_dso_keys=cfg.roaming_dso_keys(), billing_key=r.billing)


def test_roaming_config(tmp_path: Path) -> None:
    w = net(tmp_path)
    cfg = pv.config(w.state)
    foreign = sim_key(11, "foreign-dso", 0, alg="ml-dsa-44")
    assert cfg is not None and [p.community for p in cfg.roaming_partners] == [FOREIGN]
    assert parse_config(cfg.to_obj()) == cfg and cfg.roaming_hold_s == 7 * 86_400
    raw = {**cfg.to_obj(), "roaming_partners": [{**_partner(foreign), "alg": "ed25519"}]}
    with pytest.raises(ConfigError, match="roaming_partners"):
        parse_config(raw)
    raw = {**cfg.to_obj(), "roaming_partners": [_partner(foreign)] * 2}
    with pytest.raises(ConfigError, match="distinct"):
        parse_config(raw)
    with pytest.raises(ConfigError, match="roaming_hold_s"):
        parse_config({**cfg.to_obj(), "roaming_hold_s": 10})
