"""EV roaming under a pseudonym certified by the home community's trustees (docs/threat-model.md row 13).

Flow (the mobile-roaming model: the visited network authenticates the visitor through the
home network's credentials and bills the home network, which bills its subscriber):

1. **At home, before leaving.** The EV owner gets a ``roaming``-scope pseudonym certificate
   from k of its home trustees (``pseudonyms.create_pseudonym`` / ``endorse_pseudonym``)
   and seals a *billing token* to the home community's billing key (ML-KEM-768, FIPS 203):
   its account key's signature over the **authorisation** — the session id, the energy
   limit, the price cap, a per-account sequence number and a salted commitment to the
   certified pseudonym (``authorisation_message``). The home DSO opens it and books it on
   the home ledger (``privacy/roaming_authorise``): the validators check the signature
   against the member's key *now*, and hold the limit's worth of money
   (``RoamingLimits.max_amount_micro``). Then the home DSO signs a ``BillingGuarantee`` for
   the certificate and session.
2. **Abroad.** The EV signs a ``ChargingRequest`` with the pseudonym key, carrying the
   certificate and the guarantee. The foreign DSO checks both with ``admit_roaming_ev``
   (the home trustee set and the home DSO key it pinned) *before* it lets the EV charge,
   and stops at the guaranteed limits. Nothing it receives names the owner.
3. After charging, the EV signs the metered ``ChargingReceipt`` (energy, price, amount), and
   the foreign DSO signs a ``RoamingClaim`` carrying it to the home community.
4. **At home.** ``settle_roaming_claim`` checks every signature, the certificate, that the
   token belongs to this request's session and that the receipt stays within the limits the
   member signed, and returns the booking (``HomeBilling``). The home DSO posts
   ``privacy/roaming_charge`` naming the booked authorisation; the validators check energy
   <= limit, price <= cap and amount = energy x price, pay the grid account from the hold
   and return the rest.

What each property rests on (issue 21 item 5): the home DSO cannot re-price a session
(the member's signature binds the limit, the cap and the session, and the charge is checked
against them); a member cannot escape a charge by rotating its key or emptying its account
after charging (its authorisation was checked and its money held before it charged — an old
key stays valid for the authorisations it made); the foreign DSO knows before charging that
the home community has booked the session.

Privacy: the foreign side sees a fresh key, an escrow hash, ciphertext and the home DSO's
guarantee over the certificate. The home ledger names the member (money moves in its name)
with the limits, the salted commitment, energy and price, but no certificate, pseudonym or
session id: a foreign DSO reading it can match amounts and times only. The home billing-key
holder learns which pseudonym its own member used (it bills them); opening the identity
escrow still needs k trustees and a recorded dispute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import cbor2

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.kem import KemKey, seal
from gridledger.crypto.shamir import RandomBytes
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.errors import CryptoError
from gridledger.privacy.errors import InvalidCertificate, RoamingRejected
from gridledger.privacy.pseudonyms import (
    PseudonymCertificate,
    TrusteeSet,
    verify_certificate,
)
from gridledger.types import payment_micro

CTX_BILL = b"gl/roaming/bill/v2"
CTX_GUARANTEE = b"gl/roaming/guarantee/v1"
CTX_REQUEST = b"gl/roaming/request/v2"
CTX_RECEIPT = b"gl/roaming/receipt/v1"
CTX_CLAIM = b"gl/roaming/claim/v2"
SALT_BYTES = 32
SESSION_ID_BYTES = 16


@dataclass(frozen=True)
class RoamingLimits:
    """What the member authorises for one session: at most ``max_energy_wh`` at no more than
    ``price_cap_micro_per_kwh``."""

    max_energy_wh: int
    price_cap_micro_per_kwh: int

    def __post_init__(self) -> None:
        if self.max_energy_wh < 1 or self.price_cap_micro_per_kwh < 0:
            raise RoamingRejected("limits need a positive energy and a non-negative price cap")

    @property
    def max_amount_micro(self) -> int:
        """The most the session can cost (``types.payment_micro`` of the limits)."""
        return payment_micro(self.max_energy_wh, self.price_cap_micro_per_kwh)

    def admits(self, energy_wh: int, price_micro_per_kwh: int) -> bool:
        """Whether a metered charge stays within the limits."""
        return (0 <= energy_wh <= self.max_energy_wh
                and 0 <= price_micro_per_kwh <= self.price_cap_micro_per_kwh)


def billing_commitment(cert: PseudonymCertificate, session_id: bytes, salt: bytes) -> bytes:
    """The certified pseudonym (community, epoch, key) and the session, hidden under a salt
    only home can read.

    Signing the certificate or the pseudonym in the clear would let anyone who saw them (the
    foreign DSO) find the signer among the home ledger's registered keys. The escrow is left
    out: it carries fresh ML-KEM randomness.
    """
    pk = cert.pseudonym_key
    return tagged_hash("gl/roaming/bill-commit", cert.community.encode(),
                       cert.epoch.to_bytes(8, "big"), pk.alg.encode(), pk.raw, session_id, salt)


def authorisation_message(community: str, account: bytes, seq: int, commitment: bytes,
                          limits: RoamingLimits) -> bytes:
    """What the member's account key signs (FIPS 204 context ``CTX_BILL``): one session of
    at most the limits, the ``seq``-th roaming authorisation of ``account`` in ``community``.
    The home ledger checks exactly this (``privacy/roaming_authorise``)."""
    return tagged_hash("gl/roaming/authorise", community.encode(), account,
                       seq.to_bytes(8, "big"), commitment,
                       limits.max_energy_wh.to_bytes(8, "big"),
                       limits.price_cap_micro_per_kwh.to_bytes(8, "big"))


def _token_aad(cert: PseudonymCertificate) -> bytes:
    return tagged_hash("gl/roaming/token-aad", cert.digest())


def new_session_id(random_bytes: RandomBytes = os.urandom) -> bytes:
    """A fresh session id chosen by the EV (secret until it is presented abroad)."""
    return random_bytes(SESSION_ID_BYTES)


def seal_billing_token(account_key: SigningKey, account: bytes, seq: int,
                       cert: PseudonymCertificate, session_id: bytes, limits: RoamingLimits,
                       home_billing_kem_public_key: bytes, *,
                       random_bytes: RandomBytes = os.urandom) -> bytes:
    """The home-only billing token for one session (run by the member before leaving).

    ``account`` is the member's ledger address and ``seq`` its next roaming sequence number
    (``privacy/roaming_seq`` view); the account key signs ``authorisation_message``. Sealed
    to the home community's billing key and bound to the certificate, so it cannot be moved
    to another pseudonym or read abroad.
    """
    if len(session_id) != SESSION_ID_BYTES:
        raise RoamingRejected(f"a session id is {SESSION_ID_BYTES} bytes")
    salt = random_bytes(SALT_BYTES)
    commitment = billing_commitment(cert, session_id, salt)
    sig = account_key.sign(authorisation_message(cert.community, account, seq, commitment,
                                                 limits), CTX_BILL)
    pk = account_key.public_key
    plain = cbor2.dumps([pk.alg, pk.raw, account, seq, session_id, salt,
                         limits.max_energy_wh, limits.price_cap_micro_per_kwh, sig],
                        canonical=True)
    return seal(home_billing_kem_public_key, plain, _token_aad(cert))


@dataclass(frozen=True)
class BillingAuthorisation:
    """An opened billing token: what the home DSO books on its ledger."""

    account: bytes
    account_key: PublicKey
    seq: int
    session_id: bytes
    limits: RoamingLimits
    commitment: bytes
    signature: bytes


def open_billing_token(billing_token: bytes, cert: PseudonymCertificate,
                       billing_key: KemKey) -> BillingAuthorisation:
    """Home side: open a billing token and check its signature (pure); raises
    ``RoamingRejected`` if it does not open for ``cert`` or is not signed by its account
    key. (Whether that key is the account's registered key is the ledger's check.)"""
    try:
        fields = cbor2.loads(billing_key.open(billing_token, _token_aad(cert)))
        alg, raw, account, seq, session_id, salt, max_wh, cap, sig = fields
        account_key = PublicKey(alg, raw)
        limits = RoamingLimits(int(max_wh), int(cap))
    except (CryptoError, ValueError, TypeError, cbor2.CBORDecodeError) as exc:
        raise RoamingRejected("billing token does not open for this certificate") from exc
    if not (isinstance(account, bytes) and len(account) == 32 and isinstance(seq, int)
            and isinstance(session_id, bytes) and len(session_id) == SESSION_ID_BYTES
            and isinstance(salt, bytes) and len(salt) == SALT_BYTES
            and isinstance(sig, bytes)):
        raise RoamingRejected("billing token is malformed")
    commitment = billing_commitment(cert, session_id, salt)
    if not account_key.verify(authorisation_message(cert.community, account, seq, commitment,
                                                    limits), sig, CTX_BILL):
        raise RoamingRejected("billing token is not signed by its account key")
    return BillingAuthorisation(account, account_key, seq, session_id, limits, commitment, sig)


def authorise_body(auth: BillingAuthorisation) -> dict[str, Any]:
    """The home DSO's ``privacy/roaming_authorise`` body for an opened token."""
    return {"account": auth.account, "seq": auth.seq, "commitment": auth.commitment,
            "max_energy_wh": auth.limits.max_energy_wh,
            "price_cap_micro_per_kwh": auth.limits.price_cap_micro_per_kwh,
            "billing_sig": auth.signature}


@dataclass(frozen=True)
class BillingGuarantee:
    """The home DSO's promise to a foreign DSO: this certificate's session is booked on the
    home ledger within these limits, valid for charging until ``valid_until_slot``."""

    home_community: str
    home_dso_id: str
    certificate_digest: bytes
    session_id: bytes
    limits: RoamingLimits
    valid_until_slot: int
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the home DSO signs."""
        return tagged_hash("gl/roaming/guarantee", self.home_community.encode(),
                           self.home_dso_id.encode(), self.certificate_digest, self.session_id,
                           self.limits.max_energy_wh.to_bytes(8, "big"),
                           self.limits.price_cap_micro_per_kwh.to_bytes(8, "big"),
                           self.valid_until_slot.to_bytes(8, "big"))


def issue_guarantee(dso_key: SigningKey, dso_id: str, cert: PseudonymCertificate,
                    auth: BillingAuthorisation, valid_until_slot: int) -> BillingGuarantee:
    """The home DSO's guarantee for a session it booked (``privacy/roaming_authorise``
    succeeded on the home ledger)."""
    g = BillingGuarantee(cert.community, dso_id, cert.digest(), auth.session_id, auth.limits,
                         valid_until_slot)
    return replace(g, signature=dso_key.sign(g.signed_message(), CTX_GUARANTEE))


@dataclass(frozen=True)
class ChargingRequest:
    """What an EV presents to a foreign charge point: certificate, guarantee, billing token."""

    foreign_community: str
    station_id: str
    session_id: bytes
    slot: int
    certificate: PseudonymCertificate
    guarantee: BillingGuarantee
    billing_token: bytes
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the pseudonym key signs (binds the session to this station and slot)."""
        return tagged_hash("gl/roaming/request", self.foreign_community.encode(),
                           self.station_id.encode(), self.session_id,
                           self.slot.to_bytes(8, "big"), self.certificate.digest(),
                           self.guarantee.signed_message(), self.guarantee.signature,
                           tagged_hash("gl/roaming/token", self.billing_token))


def request_charging(pseudonym_key: SigningKey, cert: PseudonymCertificate,
                     guarantee: BillingGuarantee, billing_token: bytes,
                     foreign_community: str, station_id: str, slot: int) -> ChargingRequest:
    """The EV's signed charging request for the guaranteed session (run on the EV)."""
    req = ChargingRequest(foreign_community, station_id, guarantee.session_id, slot, cert,
                          guarantee, billing_token)
    return replace(req, signature=pseudonym_key.sign(req.signed_message(), CTX_REQUEST))


@dataclass(frozen=True)
class RoamingSession:
    """A foreign DSO's admitted session: only pseudonymous data, and the limits to stop at."""

    session_id: bytes
    home_community: str
    pseudonym_address: bytes
    certificate_digest: bytes
    station_id: str
    slot: int
    limits: RoamingLimits


def admit_roaming_ev(request: ChargingRequest, foreign_community: str,
                     home_trustee_sets: Mapping[str, TrusteeSet],
                     home_dso_keys: Mapping[tuple[str, str], PublicKey],
                     epoch: int) -> RoamingSession:
    """Foreign DSO check of a charging request *before* charging (pure); raises
    ``RoamingRejected``.

    The home community must be one whose trustee set and DSO key (``(community, dso id) ->
    key``) this community has pinned; the certificate must be a valid ``roaming``
    certificate for ``epoch``, the request signed by its pseudonym key, and the home DSO's
    guarantee must cover this certificate and session and still be valid at the request's
    slot. The returned session carries the limits the charge point must stop at.
    """
    cert, g = request.certificate, request.guarantee
    if request.foreign_community != foreign_community:
        raise RoamingRejected("request is addressed to another community")
    trustees = home_trustee_sets.get(cert.community)
    if trustees is None:
        raise RoamingRejected(f"no roaming agreement with {cert.community!r}")
    try:
        verify_certificate(cert, trustees, epoch=epoch, scope="roaming")
    except InvalidCertificate as exc:
        raise RoamingRejected(exc.detail) from exc
    if not cert.pseudonym_key.verify(request.signed_message(), request.signature, CTX_REQUEST):
        raise RoamingRejected("request is not signed by the certified pseudonym")
    check_guarantee(g, cert, request.session_id, request.slot, home_dso_keys)
    return RoamingSession(request.session_id, cert.community, cert.address, cert.digest(),
                          request.station_id, request.slot, g.limits)


def check_guarantee(g: BillingGuarantee, cert: PseudonymCertificate, session_id: bytes,
                    slot: int, home_dso_keys: Mapping[tuple[str, str], PublicKey]) -> None:
    """The billing-token check the foreign side runs before charging; raises
    ``RoamingRejected`` unless the pinned home DSO guaranteed this certificate's session."""
    key = home_dso_keys.get((g.home_community, g.home_dso_id))
    if g.home_community != cert.community or key is None:
        raise RoamingRejected("the guarantee is not from a pinned DSO of the home community")
    if not key.verify(g.signed_message(), g.signature, CTX_GUARANTEE):
        raise RoamingRejected("the guarantee is not signed by the home DSO")
    if g.certificate_digest != cert.digest() or g.session_id != session_id:
        raise RoamingRejected("the guarantee is for another certificate or session")
    if slot > g.valid_until_slot:
        raise RoamingRejected(f"the guarantee expired at slot {g.valid_until_slot}")


@dataclass(frozen=True)
class ChargingReceipt:
    """The metered charge, acknowledged by the EV's pseudonym key."""

    session_id: bytes
    energy_wh: int
    price_micro_per_kwh: int
    amount_micro: int
    ev_signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the EV signs."""
        return tagged_hash("gl/roaming/receipt", self.session_id,
                           self.energy_wh.to_bytes(8, "big"),
                           self.price_micro_per_kwh.to_bytes(8, "big"),
                           self.amount_micro.to_bytes(16, "big"))


def sign_receipt(pseudonym_key: SigningKey, session: RoamingSession, energy_wh: int,
                 price_micro_per_kwh: int) -> ChargingReceipt:
    """The EV acknowledges the metered energy; the amount is ``types.payment_micro``.
    Refuses (``RoamingRejected``) a charge beyond the guaranteed limits."""
    if not session.limits.admits(energy_wh, price_micro_per_kwh):
        raise RoamingRejected(f"{energy_wh} Wh at {price_micro_per_kwh} micro/kWh exceeds "
                              f"the authorised limits {session.limits}")
    r = ChargingReceipt(session.session_id, energy_wh, price_micro_per_kwh,
                        payment_micro(energy_wh, price_micro_per_kwh))
    return replace(r, ev_signature=pseudonym_key.sign(r.signed_message(), CTX_RECEIPT))


@dataclass(frozen=True)
class RoamingClaim:
    """The foreign DSO's signed claim on the home community for one session."""

    foreign_community: str
    dso_id: str
    request: ChargingRequest
    receipt: ChargingReceipt
    dso_signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the foreign DSO signs."""
        return tagged_hash("gl/roaming/claim", self.foreign_community.encode(),
                           self.dso_id.encode(), self.request.signed_message(),
                           self.request.signature, self.receipt.signed_message(),
                           self.receipt.ev_signature)

    def digest(self) -> bytes:
        """Hash of the signed claim."""
        return tagged_hash("gl/roaming/claim-id", self.signed_message(), self.dso_signature)


def make_claim(dso_key: SigningKey, dso_id: str, session: RoamingSession,
               request: ChargingRequest, receipt: ChargingReceipt) -> RoamingClaim:
    """The foreign DSO's claim; checks the receipt is the EV's, for this session and within
    the guaranteed limits."""
    if receipt.session_id != session.session_id or request.session_id != session.session_id:
        raise RoamingRejected("receipt, request and session do not match")
    if not session.limits.admits(receipt.energy_wh, receipt.price_micro_per_kwh):
        raise RoamingRejected("receipt exceeds the guaranteed limits")
    if not request.certificate.pseudonym_key.verify(receipt.signed_message(),
                                                    receipt.ev_signature, CTX_RECEIPT):
        raise RoamingRejected("receipt is not signed by the EV's pseudonym")
    c = RoamingClaim(request.foreign_community, dso_id, request, receipt)
    return replace(c, dso_signature=dso_key.sign(c.signed_message(), CTX_CLAIM))


@dataclass(frozen=True)
class HomeBilling:
    """What the home DSO books: the authorisation it charges and the metered charge."""

    account_address: bytes
    seq: int
    amount_micro: int
    energy_wh: int
    price_micro_per_kwh: int
    pseudonym_address: bytes
    foreign_community: str
    foreign_dso: str
    claim_digest: bytes
    authorisation: BillingAuthorisation


def settle_roaming_claim(claim: RoamingClaim, *, home_trustees: TrusteeSet,
                         foreign_dso_keys: Mapping[tuple[str, str], PublicKey],
                         billing_key: KemKey) -> HomeBilling:
    """Home-side settlement: verify the claim and map the pseudonym to the booked authorisation.

    ``foreign_dso_keys`` maps (foreign community, DSO id) to the DSO's pinned key. Checks
    the DSO's and the EV's signatures, the amount, the certificate (any epoch: claims
    arrive late), then opens the billing token and checks it is this session's and that
    the receipt stays within the limits the member signed. Raises ``RoamingRejected``.
    """
    req, rec, cert = claim.request, claim.receipt, claim.request.certificate
    dso = foreign_dso_keys.get((claim.foreign_community, claim.dso_id))
    if dso is None or not dso.verify(claim.signed_message(), claim.dso_signature, CTX_CLAIM):
        raise RoamingRejected("claim is not signed by a known foreign DSO")
    if req.foreign_community != claim.foreign_community or rec.session_id != req.session_id:
        raise RoamingRejected("claim parts do not match")
    try:
        verify_certificate(cert, home_trustees, scope="roaming")
    except InvalidCertificate as exc:
        raise RoamingRejected(exc.detail) from exc
    if not cert.pseudonym_key.verify(req.signed_message(), req.signature, CTX_REQUEST):
        raise RoamingRejected("request is not signed by the certified pseudonym")
    if not cert.pseudonym_key.verify(rec.signed_message(), rec.ev_signature, CTX_RECEIPT):
        raise RoamingRejected("receipt is not signed by the EV's pseudonym")
    if rec.amount_micro != payment_micro(rec.energy_wh, rec.price_micro_per_kwh):
        raise RoamingRejected("receipt amount does not match energy x price")
    auth = open_billing_token(req.billing_token, cert, billing_key)
    if auth.session_id != req.session_id:
        raise RoamingRejected("the billing token is for another session")
    if not auth.limits.admits(rec.energy_wh, rec.price_micro_per_kwh):
        raise RoamingRejected("the receipt exceeds the limits the member authorised")
    return HomeBilling(auth.account, auth.seq, rec.amount_micro, rec.energy_wh,
                       rec.price_micro_per_kwh, cert.address, claim.foreign_community,
                       claim.dso_id, claim.digest(), auth)


def charge_body(bill: HomeBilling) -> dict[str, Any]:
    """The home DSO's ``privacy/roaming_charge`` body for a settled claim.

    Names the booked authorisation (account, sequence number) and the metered charge; no
    certificate, pseudonym, session or claim digest (the foreign DSO knows them all).
    """
    return {"account": bill.account_address, "seq": bill.seq, "energy_wh": bill.energy_wh,
            "price_micro_per_kwh": bill.price_micro_per_kwh, "amount_micro": bill.amount_micro,
            "foreign_community": bill.foreign_community, "foreign_dso": bill.foreign_dso}
