"""EV roaming: foreign DSO settles with the home community via the pseudonym only."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.privacy.errors import RoamingRejected
from gridledger.privacy.pseudonyms import (
    TrusteeKeys,
    TrusteeSet,
    assemble_certificate,
    create_pseudonym,
    endorse_pseudonym,
)
from gridledger.privacy.roaming import (
    admit_roaming_ev,
    make_claim,
    request_charging,
    seal_billing_token,
    settle_roaming_claim,
    sign_receipt,
)

EPOCH = 31


@pytest.fixture(scope="module")
def world(identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys]):
    billing = KemKey(b"\x42" * 64)
    dso = SigningKey.from_seed("ml-dsa-65", b"\x43" * 32)
    ev_key, req = create_pseudonym(identity, trustees, EPOCH, "roaming")
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[2:5]])
    token = seal_billing_token(identity, cert, billing.public_key)
    request = request_charging(ev_key, cert, token, "abroad", "station-7", b"sess-1", 400)
    return dict(billing=billing, dso=dso, ev_key=ev_key, cert=cert, token=token,
                request=request, escrow=req.escrow)


def _flow(world, trustees):
    session = admit_roaming_ev(world["request"], "abroad", {"home": trustees}, EPOCH)
    receipt = sign_receipt(world["ev_key"], session, 22_000, 350_000)
    claim = make_claim(world["dso"], "dso-1", session, world["request"], receipt)
    return session, receipt, claim


def test_roaming_settles_with_home_account(identity: SigningKey, trustees: TrusteeSet,
                                           world) -> None:
    session, receipt, claim = _flow(world, trustees)
    bill = settle_roaming_claim(claim, home_trustees=trustees,
                                foreign_dso_keys={("abroad", "dso-1"): world["dso"].public_key},
                                billing_key=world["billing"])
    assert bill.account_address == identity.address
    assert bill.amount_micro == 22_000 * 350_000 // 1000 == receipt.amount_micro
    assert bill.pseudonym_address == session.pseudonym_address


def test_foreign_side_sees_no_identity(identity: SigningKey, trustees: TrusteeSet,
                                       world) -> None:
    session, receipt, claim = _flow(world, trustees)
    cert = claim.request.certificate
    seen = b"".join([
        claim.signed_message(), claim.request.billing_token, claim.request.signature,
        cert.pseudonym_key.raw, cert.escrow_digest, session.pseudonym_address,
        session.certificate_digest, receipt.ev_signature,
        *(e.signature for e in cert.endorsements)])
    pk = identity.public_key.raw
    for i in range(0, len(pk) - 16, 16):  # no 16-byte window of the identity key
        assert pk[i:i + 16] not in seen
    assert identity.address not in seen
    # and the foreign DSO cannot open the token with any key but the home billing key
    with pytest.raises(Exception):
        KemKey(b"\x01" * 64).open(claim.request.billing_token)


def test_foreign_dso_rejects_bad_credentials(identity: SigningKey, trustees: TrusteeSet,
                                             trustee_keys: list[TrusteeKeys], world) -> None:
    with pytest.raises(RoamingRejected):  # no agreement with that home community
        admit_roaming_ev(world["request"], "abroad", {}, EPOCH)
    with pytest.raises(RoamingRejected):  # expired epoch
        admit_roaming_ev(world["request"], "abroad", {"home": trustees}, EPOCH + 1)
    with pytest.raises(RoamingRejected):  # addressed elsewhere
        admit_roaming_ev(world["request"], "elsewhere", {"home": trustees}, EPOCH)
    with pytest.raises(RoamingRejected):  # signed by someone else than the pseudonym
        stolen = request_charging(SigningKey.generate(), world["cert"], world["token"],
                                  "abroad", "station-7", b"sess-2", 400)
        admit_roaming_ev(stolen, "abroad", {"home": trustees}, EPOCH)
    # A trade-scope certificate is not a roaming credential.
    key, req = create_pseudonym(identity, trustees, EPOCH, "trade")
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[:3]])
    trade_req = request_charging(key, cert, world["token"], "abroad", "s", b"x", 1)
    with pytest.raises(RoamingRejected):
        admit_roaming_ev(trade_req, "abroad", {"home": trustees}, EPOCH)
    # Home trustees of another community with the same name but other keys: rejected.
    impostors = TrusteeSet("home", 3, tuple(TrusteeKeys.generate(f"i{j}").info()
                                            for j in range(5)))
    with pytest.raises(RoamingRejected):
        admit_roaming_ev(world["request"], "abroad", {"home": impostors}, EPOCH)


def test_home_rejects_tampered_claims(trustees: TrusteeSet, world) -> None:
    _, receipt, claim = _flow(world, trustees)
    keys = {("abroad", "dso-1"): world["dso"].public_key}

    def settle(c):
        return settle_roaming_claim(c, home_trustees=trustees, foreign_dso_keys=keys,
                                    billing_key=world["billing"])

    inflated = replace(receipt, energy_wh=99_000)  # EV never signed this
    bad = replace(claim, receipt=inflated, dso_signature=b"")
    bad = replace(bad, dso_signature=world["dso"].sign(bad.signed_message(),
                                                       b"gl/roaming/claim/v1"))
    with pytest.raises(RoamingRejected):
        settle(bad)
    with pytest.raises(RoamingRejected):  # unknown DSO
        settle_roaming_claim(claim, home_trustees=trustees, foreign_dso_keys={},
                             billing_key=world["billing"])
    with pytest.raises(RoamingRejected):  # wrong billing key cannot map the pseudonym
        settle_roaming_claim(claim, home_trustees=trustees, foreign_dso_keys=keys,
                             billing_key=KemKey(b"\x09" * 64))


def test_billing_token_cannot_be_moved_to_another_pseudonym(
        identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys],
        world) -> None:
    key, req = create_pseudonym(SigningKey.generate(), trustees, EPOCH, "roaming")
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[:3]])
    # An attacker reuses the victim's billing token with its own roaming pseudonym.
    request = request_charging(key, cert, world["token"], "abroad", "s", b"sess-9", 1)
    session = admit_roaming_ev(request, "abroad", {"home": trustees}, EPOCH)
    claim = make_claim(world["dso"], "dso-1", session, request,
                       sign_receipt(key, session, 1000, 1000))
    with pytest.raises(RoamingRejected):
        settle_roaming_claim(claim, home_trustees=trustees,
                             foreign_dso_keys={("abroad", "dso-1"): world["dso"].public_key},
                             billing_key=world["billing"])
