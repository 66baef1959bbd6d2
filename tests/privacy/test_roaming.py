"""EV roaming: the foreign DSO admits a pseudonym only with the home DSO's guarantee, charges
within the member's signed limits, and settles with the home community via the pseudonym."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.errors import CryptoError
from gridledger.privacy.errors import RoamingRejected
from gridledger.privacy.pseudonyms import (
    TrusteeKeys,
    TrusteeSet,
    assemble_certificate,
    create_pseudonym,
    endorse_pseudonym,
)
from gridledger.privacy.roaming import (
    CTX_CLAIM,
    CTX_RECEIPT,
    ChargingReceipt,
    RoamingLimits,
    admit_roaming_ev,
    issue_guarantee,
    make_claim,
    new_session_id,
    open_billing_token,
    request_charging,
    seal_billing_token,
    settle_roaming_claim,
    sign_receipt,
)
from gridledger.types import payment_micro

EPOCH = 31
LIMITS = RoamingLimits(25_000, 400_000)


def _issue(identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys],
           billing: KemKey, home_dso: SigningKey, scope: str = "roaming",
           session: bytes | None = None, seq: int = 0) -> dict[str, Any]:
    ev_key, req = create_pseudonym(identity, trustees, EPOCH, scope)  # type: ignore[arg-type]
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[2:5]])
    session = session or new_session_id()
    token = seal_billing_token(identity, identity.address, seq, cert, session, LIMITS,
                               billing.public_key)
    auth = open_billing_token(token, cert, billing)
    guarantee = issue_guarantee(home_dso, "home-dso", cert, auth, valid_until_slot=500)
    request = request_charging(ev_key, cert, guarantee, token, "abroad", "station-7", 400)
    return {"ev_key": ev_key, "cert": cert, "token": token, "auth": auth,
            "guarantee": guarantee, "request": request, "escrow": req.escrow}


@pytest.fixture(scope="module")
def world(identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys]):
    billing = KemKey(b"\x42" * 64)
    dso = SigningKey.from_seed("ml-dsa-65", b"\x43" * 32)
    home_dso = SigningKey.from_seed("ml-dsa-65", b"\x44" * 32)
    w = _issue(identity, trustees, trustee_keys, billing, home_dso)
    return {"billing": billing, "dso": dso, "home_dso": home_dso, **w}


def _pins(world: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {("home", "home-dso"): world["home_dso"].public_key}


def _flow(world, trustees, energy_wh: int = 22_000, price: int = 350_000):
    session = admit_roaming_ev(world["request"], "abroad", {"home": trustees}, _pins(world),
                               EPOCH)
    receipt = sign_receipt(world["ev_key"], session, energy_wh, price)
    claim = make_claim(world["dso"], "dso-1", session, world["request"], receipt)
    return session, receipt, claim


def _settle(claim, trustees, world):
    return settle_roaming_claim(claim, home_trustees=trustees,
                                foreign_dso_keys={("abroad", "dso-1"): world["dso"].public_key},
                                billing_key=world["billing"])


def test_roaming_settles_with_the_booked_authorisation(identity: SigningKey,
                                                       trustees: TrusteeSet, world) -> None:
    session, receipt, claim = _flow(world, trustees)
    bill = _settle(claim, trustees, world)
    assert bill.account_address == identity.address and bill.seq == 0
    assert bill.amount_micro == 22_000 * 350_000 // 1000 == receipt.amount_micro
    assert bill.pseudonym_address == session.pseudonym_address
    assert bill.authorisation.limits == LIMITS == session.limits


def test_foreign_side_sees_no_identity(identity: SigningKey, trustees: TrusteeSet,
                                       world) -> None:
    session, receipt, claim = _flow(world, trustees)
    cert, g = claim.request.certificate, claim.request.guarantee
    seen = b"".join([
        claim.signed_message(), claim.request.billing_token, claim.request.signature,
        cert.pseudonym_key.raw, cert.escrow_digest, session.pseudonym_address,
        session.certificate_digest, receipt.ev_signature, g.signed_message(), g.signature,
        *(e.signature for e in cert.endorsements)])
    pk = identity.public_key.raw
    for i in range(0, len(pk) - 16, 16):  # no 16-byte window of the identity key
        assert pk[i:i + 16] not in seen
    assert identity.address not in seen
    with pytest.raises(CryptoError):  # only the home billing key opens the token
        KemKey(b"\x01" * 64).open(claim.request.billing_token)


def test_the_foreign_side_checks_the_billing_guarantee_before_charging(
        identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys],
        world) -> None:
    req = world["request"]
    with pytest.raises(RoamingRejected, match="pinned DSO"):  # home DSO key not pinned
        admit_roaming_ev(req, "abroad", {"home": trustees}, {}, EPOCH)
    impostor = SigningKey.generate()
    with pytest.raises(RoamingRejected, match="not signed by the home DSO"):
        admit_roaming_ev(req, "abroad", {"home": trustees},
                         {("home", "home-dso"): impostor.public_key}, EPOCH)
    late = request_charging(world["ev_key"], world["cert"], world["guarantee"], world["token"],
                            "abroad", "station-7", 501)
    with pytest.raises(RoamingRejected, match="expired"):
        admit_roaming_ev(late, "abroad", {"home": trustees}, _pins(world), EPOCH)
    # a guarantee for another session or certificate does not carry over
    other = _issue(identity, trustees, trustee_keys, world["billing"], world["home_dso"])
    swapped = request_charging(world["ev_key"], world["cert"], other["guarantee"],
                               world["token"], "abroad", "station-7", 400)
    with pytest.raises(RoamingRejected, match="another certificate or session"):
        admit_roaming_ev(swapped, "abroad", {"home": trustees}, _pins(world), EPOCH)


def test_foreign_dso_rejects_bad_credentials(identity: SigningKey, trustees: TrusteeSet,
                                             trustee_keys: list[TrusteeKeys], world) -> None:
    pins = _pins(world)
    with pytest.raises(RoamingRejected):  # no agreement with that home community
        admit_roaming_ev(world["request"], "abroad", {}, pins, EPOCH)
    with pytest.raises(RoamingRejected):  # expired epoch
        admit_roaming_ev(world["request"], "abroad", {"home": trustees}, pins, EPOCH + 1)
    with pytest.raises(RoamingRejected):  # addressed elsewhere
        admit_roaming_ev(world["request"], "elsewhere", {"home": trustees}, pins, EPOCH)
    stolen = request_charging(SigningKey.generate(), world["cert"], world["guarantee"],
                              world["token"], "abroad", "station-7", 400)
    with pytest.raises(RoamingRejected):  # signed by someone else than the pseudonym
        admit_roaming_ev(stolen, "abroad", {"home": trustees}, pins, EPOCH)
    trade = _issue(identity, trustees, trustee_keys, world["billing"], world["home_dso"],
                   scope="trade")
    with pytest.raises(RoamingRejected):  # a trade-scope certificate is no roaming credential
        admit_roaming_ev(trade["request"], "abroad", {"home": trustees}, pins, EPOCH)
    impostors = TrusteeSet("home", 3, tuple(TrusteeKeys.generate(f"i{j}").info()
                                            for j in range(5)))
    with pytest.raises(RoamingRejected):
        admit_roaming_ev(world["request"], "abroad", {"home": impostors}, pins, EPOCH)


def test_nobody_charges_beyond_the_members_limits(trustees: TrusteeSet, world) -> None:
    session = admit_roaming_ev(world["request"], "abroad", {"home": trustees}, _pins(world),
                               EPOCH)
    with pytest.raises(RoamingRejected, match="exceeds"):
        sign_receipt(world["ev_key"], session, LIMITS.max_energy_wh + 1, 100_000)
    with pytest.raises(RoamingRejected, match="exceeds"):
        sign_receipt(world["ev_key"], session, 1_000, LIMITS.price_cap_micro_per_kwh + 1)
    # a receipt beyond the limits, signed anyway, is refused by the foreign DSO's claim step
    # and by the home side
    big = ChargingReceipt(session.session_id, 40_000, 250_000, payment_micro(40_000, 250_000))
    big = replace(big, ev_signature=world["ev_key"].sign(big.signed_message(), CTX_RECEIPT))
    with pytest.raises(RoamingRejected, match="limits"):
        make_claim(world["dso"], "dso-1", session, world["request"], big)
    _, _, claim = _flow(world, trustees)
    forged = replace(claim, receipt=big, dso_signature=b"")
    forged = replace(forged, dso_signature=world["dso"].sign(forged.signed_message(),
                                                             CTX_CLAIM))
    with pytest.raises(RoamingRejected, match="limits the member authorised"):
        _settle(forged, trustees, world)


def test_home_rejects_tampered_claims(trustees: TrusteeSet, world) -> None:
    _, receipt, claim = _flow(world, trustees)
    inflated = replace(receipt, energy_wh=24_000)  # EV never signed this
    bad = replace(claim, receipt=inflated, dso_signature=b"")
    bad = replace(bad, dso_signature=world["dso"].sign(bad.signed_message(), CTX_CLAIM))
    with pytest.raises(RoamingRejected):
        _settle(bad, trustees, world)
    with pytest.raises(RoamingRejected):  # unknown DSO
        settle_roaming_claim(claim, home_trustees=trustees, foreign_dso_keys={},
                             billing_key=world["billing"])
    with pytest.raises(RoamingRejected):  # wrong billing key cannot map the pseudonym
        settle_roaming_claim(claim, home_trustees=trustees,
                             foreign_dso_keys={("abroad", "dso-1"): world["dso"].public_key},
                             billing_key=KemKey(b"\x09" * 64))


def test_billing_token_cannot_be_moved_to_another_pseudonym_or_session(
        identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys],
        world) -> None:
    # An attacker reuses the victim's billing token (and guarantee) with its own pseudonym.
    key, req = create_pseudonym(SigningKey.generate(), trustees, EPOCH, "roaming")
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[:3]])
    own = issue_guarantee(world["home_dso"], "home-dso", cert, world["auth"], 500)
    request = request_charging(key, cert, own, world["token"], "abroad", "s", 1)
    session = admit_roaming_ev(request, "abroad", {"home": trustees}, _pins(world), EPOCH)
    claim = make_claim(world["dso"], "dso-1", session, request,
                       sign_receipt(key, session, 1000, 1000))
    with pytest.raises(RoamingRejected):
        _settle(claim, trustees, world)
