"""EV roaming on the home ledger (THREATS.md row 13): the whole pure protocol between home
trustees, the EV and a foreign DSO, then ``privacy/roaming_charge`` by the home DSO."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.errors import ConfigError
from gridledger.ledger import codec
from gridledger.ledger.modules.governance.keeper import grid_account
from gridledger.ledger.modules.privacy import keeper as pv
from gridledger.ledger.modules.privacy.types import parse_config
from gridledger.privacy.pseudonyms import (
    PseudonymCertificate,
    assemble_certificate,
    create_pseudonym,
    endorse_pseudonym,
)
from gridledger.privacy.roaming import (
    CTX_BILL,
    CTX_CLAIM,
    HomeBilling,
    RoamingClaim,
    admit_roaming_ev,
    charge_body,
    make_claim,
    request_charging,
    seal_billing_token,
    settle_roaming_claim,
    sign_receipt,
)
from gridledger.sim.keys import sim_key
from gridledger.types import payment_micro
from tests.ledger.modules.test_privacy_ledger import PWorld, _rng, make_pworld
from tests.ledger.modules.world import t_order

FOREIGN, FOREIGN_DSO = "foreign-town", "foreign-dso"
EPOCH = 3
ENERGY_WH, PRICE = 11_000, 420_000


@dataclass
class Roaming:
    w: PWorld
    billing: KemKey          # the home DSO's billing ML-KEM key
    foreign_dso: SigningKey
    cert: PseudonymCertificate
    claim: RoamingClaim
    bill: HomeBilling


def _partner(key: SigningKey, community: str = FOREIGN, dso_id: str = FOREIGN_DSO
             ) -> dict[str, Any]:
    return {"community": community, "dso_id": dso_id, "alg": key.alg, "pk": key.public_key.raw}


def roam(w: PWorld | None = None, user: int = 0, session: bytes = b"s1") -> Roaming:
    """User ``user``'s EV charges in foreign-town; the home DSO settles the claim."""
    foreign_dso = sim_key(11, "foreign-dso", 0, alg="ml-dsa-44")
    w = w or make_pworld(roaming_partners=[_partner(foreign_dso)])
    billing = KemKey(b"\x07" * 64)
    ev = w.users[user]
    # home: k trustees certify a fresh roaming pseudonym; the EV seals a billing token
    key, req = create_pseudonym(ev, w.trustee_set, EPOCH, "roaming", pseudonym_alg="ml-dsa-44",
                                random_bytes=_rng(f"roam/{user}/{session!r}"))
    cert = assemble_certificate(req, [endorse_pseudonym(t, w.trustee_set, req, EPOCH)
                                      for t in w.trustee_keys[:2]])
    token = seal_billing_token(ev, cert, billing.public_key,
                               random_bytes=_rng(f"salt/{user}/{session!r}"))
    # abroad: the foreign DSO admits the pseudonym, meters, the EV signs, the DSO claims
    request = request_charging(key, cert, token, FOREIGN, "station-3", session, 77)
    sess = admit_roaming_ev(request, FOREIGN, {"test-community": w.trustee_set}, EPOCH)
    receipt = sign_receipt(key, sess, ENERGY_WH, PRICE)
    claim = make_claim(foreign_dso, FOREIGN_DSO, sess, request, receipt)
    # home: the DSO checks the claim off the ledger against the partners genesis pinned
    cfg = pv.config(w.app.state)
    assert cfg is not None
    bill = settle_roaming_claim(claim, home_trustees=w.trustee_set,
                                foreign_dso_keys=cfg.roaming_dso_keys(), billing_key=billing)
    return Roaming(w, billing, foreign_dso, cert, claim, bill)


def charge(r: Roaming, body: dict[str, Any] | None = None, sender: SigningKey | None = None,
           at: int = t_order(5)) -> Any:
    w = r.w
    return w.block([w.tx(sender or w.dso, "privacy/roaming_charge",
                         body if body is not None else charge_body(r.bill))], at).receipts[0]


def test_ev_charges_abroad_and_is_billed_at_home_without_the_foreign_side_learning_who() -> None:
    r = roam()
    w = r.w
    grid = grid_account(w.app.state)
    assert grid == w.dso.address
    money = w.money()
    before = (w.bal(w.addr(0)), w.bal(grid))
    rc = charge(r)
    assert rc.ok, rc
    amount = payment_micro(ENERGY_WH, PRICE)
    assert r.bill.account_address == w.addr(0) and r.bill.amount_micro == amount
    assert (w.bal(w.addr(0)), w.bal(grid)) == (before[0] - amount, before[1] + amount)
    assert w.money() == money
    ev = w.events("roaming_charged")
    assert len(ev) == 1 and ev[0]["account"] == w.addr(0) and ev[0]["amount_micro"] == amount
    assert ev[0]["foreign_community"] == FOREIGN and ev[0]["energy_wh"] == ENERGY_WH
    assert pv.roaming_due(w.app.state, FOREIGN, FOREIGN_DSO) == amount
    # what the foreign DSO holds (certificate, claim) appears nowhere on the home ledger,
    # and the member's signature is over a commitment it cannot recompute
    public = codec.encode(charge_body(r.bill)) + codec.encode(ev[0])
    for known in (r.cert.digest(), r.claim.digest(), r.cert.address):
        assert known not in public
        assert not w.users[0].public_key.verify(known, r.bill.billing_signature, CTX_BILL)


def test_a_claim_is_charged_once_even_when_the_foreign_dso_re_signs_it() -> None:
    r = roam()
    assert charge(r).ok
    rc = charge(r, at=t_order(5) + 1)
    assert rc.rule == "invalid-body" and rc.detail.startswith("roaming-claimed")
    # ML-DSA signatures are hedged: a re-signed claim has a new digest, same billing token
    c = replace(r.claim, dso_signature=b"")
    c = replace(c, dso_signature=r.foreign_dso.sign(c.signed_message(), CTX_CLAIM))
    assert c.digest() != r.claim.digest()
    cfg = pv.config(r.w.app.state)
    assert cfg is not None
    again = settle_roaming_claim(c, home_trustees=r.w.trustee_set,
                                 foreign_dso_keys=cfg.roaming_dso_keys(), billing_key=r.billing)
    rc = charge(r, charge_body(again), at=t_order(5) + 2)
    assert rc.detail.startswith("roaming-claimed")
    assert len(r.w.events("roaming_charged")) == 1


def test_a_charge_needs_the_members_own_billing_signature() -> None:
    r = roam()
    w = r.w
    body = charge_body(r.bill)
    forged = w.users[1].sign(body["commitment"], CTX_BILL)  # another member's key
    rc = charge(r, {**body, "billing_sig": forged})
    assert rc.rule == "unauthorized" and rc.detail.startswith("roaming-billing-sig")
    # the home DSO cannot move a member's authorisation onto another account
    rc = charge(r, {**body, "account": w.addr(1)}, at=t_order(5) + 1)
    assert rc.detail.startswith("roaming-billing-sig")
    rc = charge(r, {**body, "account": w.trustee_keys[0].signing_key.address}, at=t_order(5) + 2)
    assert rc.detail.startswith("roaming-account")
    rc = charge(r, {**body, "amount_micro": body["amount_micro"] + 1}, at=t_order(5) + 3)
    assert rc.detail.startswith("roaming-amount")
    assert not w.events("roaming_charged")


def test_only_pinned_partners_can_bill() -> None:
    r = roam()
    body = charge_body(r.bill)
    rc = charge(r, {**body, "foreign_community": "elsewhere"})
    assert rc.rule == "invalid-body" and rc.detail.startswith("unknown-roaming-partner")
    rc = charge(r, {**body, "foreign_dso": "other-dso"}, at=t_order(5) + 1)
    assert rc.detail.startswith("unknown-roaming-partner")
    # and a claim signed by an unpinned DSO does not even settle off the ledger
    w = make_pworld()  # no roaming partners in genesis
    cfg = pv.config(w.app.state)
    assert cfg is not None and cfg.roaming_dso_keys() == {}
    with pytest.raises(Exception, match="known foreign DSO"):
        settle_roaming_claim(r.claim, home_trustees=w.trustee_set,
                             foreign_dso_keys=cfg.roaming_dso_keys(), billing_key=r.billing)


def test_only_a_dso_books_roaming_charges() -> None:
    r = roam()
    rc = charge(r, sender=r.w.users[2])
    assert rc.rule == "unauthorized"
    rc = charge(r, sender=r.w.trustee_keys[0].signing_key, at=t_order(5) + 1)
    assert rc.rule == "unauthorized"
    assert charge(r, at=t_order(5) + 2).ok


def test_roaming_partners_config() -> None:
    r = roam()
    cfg = pv.config(r.w.app.state)
    assert cfg is not None and [p.community for p in cfg.roaming_partners] == [FOREIGN]
    assert parse_config(cfg.to_obj()) == cfg
    plain = pv.config(make_pworld().app.state)
    assert plain is not None and "roaming_partners" not in plain.to_obj()  # roots unchanged
    raw = {**cfg.to_obj(), "roaming_partners": [{**_partner(r.foreign_dso), "alg": "ed25519"}]}
    with pytest.raises(ConfigError, match="roaming_partners"):
        parse_config(raw)
    raw = {**cfg.to_obj(), "roaming_partners": [_partner(r.foreign_dso)] * 2}
    with pytest.raises(ConfigError, match="distinct"):
        parse_config(raw)
