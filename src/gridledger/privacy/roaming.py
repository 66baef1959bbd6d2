"""EV roaming under a pseudonym certified by the home community's trustees (THREATS.md row 13).

Flow (the mobile-roaming model: the visited network authenticates the visitor through the
home network's credentials and bills the home network, which bills its subscriber):

1. At home, the EV owner gets a ``roaming``-scope pseudonym certificate from k of its home
   trustees (``pseudonyms.create_pseudonym`` / ``endorse_pseudonym``), and seals a
   *billing token* to the home community's billing key (ML-KEM-768, FIPS 203): its account
   key's signature over a salted commitment to the certified pseudonym. Only the home
   community can read it.
2. Abroad, the EV signs a ``ChargingRequest`` with the pseudonym key. The foreign DSO
   checks it with ``admit_roaming_ev`` against the home trustee set it has pinned (k valid
   distinct ML-DSA endorsements, FIPS 204). Nothing it receives names the owner: the
   certificate holds a fresh key and an escrow *hash*, the billing token is ciphertext.
3. After charging, the EV signs the metered ``ChargingReceipt`` (energy, price, amount),
   and the foreign DSO signs a ``RoamingClaim`` carrying it to the home community.
4. At home, ``settle_roaming_claim`` checks both signatures and the certificate, opens the
   billing token and returns the real account to debit. The foreign side never learns it.
5. The home DSO books the charge on its ledger (``privacy/roaming_charge``,
   ``charge_body``): the account, the amount, the commitment and the account's signature
   over it. Validators check the member authorised the charge; the foreign DSO, reading
   the home ledger, cannot tie the entry to its session: it knows the certificate and
   the claim, but not the salt inside the sealed token. (It can still compare amounts and
   times with its own sessions: the ledger moves money in the member's name.)

Trust: the home billing key holder learns which pseudonym its own member used (it bills
them anyway); neither it nor the foreign DSO can open the identity escrow, which still
needs k trustees and a dispute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

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

CTX_BILL = b"gl/roaming/bill/v1"
CTX_REQUEST = b"gl/roaming/request/v1"
CTX_RECEIPT = b"gl/roaming/receipt/v1"
CTX_CLAIM = b"gl/roaming/claim/v1"


def _token_aad(cert: PseudonymCertificate) -> bytes:
    return tagged_hash("gl/roaming/token-aad", cert.digest())


SALT_BYTES = 32


def billing_commitment(cert: PseudonymCertificate, salt: bytes) -> bytes:
    """What the account key signs: the certified pseudonym (community, epoch, key), hidden
    under a salt only home can read.

    Signing the certificate or the pseudonym in the clear would let anyone who saw them (the
    foreign DSO) find the signer among the home ledger's registered keys. The escrow is left
    out: it carries fresh ML-KEM randomness, and the commitment is the home ledger's key.
    """
    pk = cert.pseudonym_key
    return tagged_hash("gl/roaming/bill-commit", cert.community.encode(),
                       cert.epoch.to_bytes(8, "big"), pk.alg.encode(), pk.raw, salt)


def seal_billing_token(account_key: SigningKey, cert: PseudonymCertificate,
                       home_billing_kem_public_key: bytes, *,
                       random_bytes: RandomBytes = os.urandom) -> bytes:
    """The home-only billing token: account key + salt + the account key's signature over
    ``billing_commitment(cert, salt)``.

    Sealed to the home community's billing key and bound to the certificate, so it cannot be
    moved to another pseudonym or read abroad. Seal a fresh token per session: each one
    authorises one charge on the home ledger.
    """
    pk = account_key.public_key
    salt = random_bytes(SALT_BYTES)
    sig = account_key.sign(billing_commitment(cert, salt), CTX_BILL)
    alg = pk.alg.encode()
    plain = (len(alg).to_bytes(1, "big") + alg + len(pk.raw).to_bytes(2, "big") + pk.raw
             + salt + sig)
    return seal(home_billing_kem_public_key, plain, _token_aad(cert))


@dataclass(frozen=True)
class BillingAuthorisation:
    """An opened billing token: the account, the commitment it signed, the signature."""

    account_key: PublicKey
    commitment: bytes
    signature: bytes


def open_billing_token(billing_token: bytes, cert: PseudonymCertificate,
                       billing_key: KemKey) -> BillingAuthorisation:
    """Home side: open a billing token and check its signature (pure); raises
    ``RoamingRejected`` if it does not open for ``cert`` or is not signed by its account."""
    try:
        plain = billing_key.open(billing_token, _token_aad(cert))
        n = plain[0]
        alg = plain[1:1 + n].decode()
        k = int.from_bytes(plain[1 + n:3 + n], "big")
        account = PublicKey(alg, plain[3 + n:3 + n + k])
        salt = plain[3 + n + k:3 + n + k + SALT_BYTES]
        sig = plain[3 + n + k + SALT_BYTES:]
    except (CryptoError, IndexError, UnicodeDecodeError) as exc:
        raise RoamingRejected("billing token does not open for this certificate") from exc
    if len(salt) != SALT_BYTES:
        raise RoamingRejected("billing token is malformed")
    commitment = billing_commitment(cert, salt)
    if not account.verify(commitment, sig, CTX_BILL):
        raise RoamingRejected("billing token is not signed by its account key")
    return BillingAuthorisation(account, commitment, sig)


@dataclass(frozen=True)
class ChargingRequest:
    """What an EV presents to a foreign charge point: pseudonym certificate + billing token."""

    foreign_community: str
    station_id: str
    session_id: bytes
    slot: int
    certificate: PseudonymCertificate
    billing_token: bytes
    signature: bytes = b""

    def signed_message(self) -> bytes:
        """What the pseudonym key signs (binds the session to this station and slot)."""
        return tagged_hash("gl/roaming/request", self.foreign_community.encode(),
                           self.station_id.encode(), self.session_id,
                           self.slot.to_bytes(8, "big"), self.certificate.digest(),
                           tagged_hash("gl/roaming/token", self.billing_token))


def request_charging(pseudonym_key: SigningKey, cert: PseudonymCertificate, billing_token: bytes,
                     foreign_community: str, station_id: str, session_id: bytes,
                     slot: int) -> ChargingRequest:
    """The EV's signed charging request (run on the EV)."""
    req = ChargingRequest(foreign_community, station_id, session_id, slot, cert, billing_token)
    return replace(req, signature=pseudonym_key.sign(req.signed_message(), CTX_REQUEST))


@dataclass(frozen=True)
class RoamingSession:
    """A foreign DSO's admitted session: only pseudonymous data."""

    session_id: bytes
    home_community: str
    pseudonym_address: bytes
    certificate_digest: bytes
    station_id: str
    slot: int


def admit_roaming_ev(request: ChargingRequest, foreign_community: str,
                     home_trustee_sets: Mapping[str, TrusteeSet], epoch: int) -> RoamingSession:
    """Foreign DSO check of a charging request (pure); raises ``RoamingRejected``.

    The home community must be one whose trustee set this community has pinned; the
    certificate must be a valid ``roaming`` certificate for ``epoch`` and the request signed
    by its pseudonym key.
    """
    cert = request.certificate
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
    return RoamingSession(request.session_id, cert.community, cert.address, cert.digest(),
                          request.station_id, request.slot)


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
    """The EV acknowledges the metered energy; the amount is ``types.payment_micro``."""
    if energy_wh < 0 or price_micro_per_kwh < 0:
        raise RoamingRejected("energy and price must be non-negative")
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
        """Hash of the signed claim (the home ledger's idempotency key)."""
        return tagged_hash("gl/roaming/claim-id", self.signed_message(), self.dso_signature)


def make_claim(dso_key: SigningKey, dso_id: str, session: RoamingSession,
               request: ChargingRequest, receipt: ChargingReceipt) -> RoamingClaim:
    """The foreign DSO's claim; checks the receipt is the EV's and for this session."""
    if receipt.session_id != session.session_id or request.session_id != session.session_id:
        raise RoamingRejected("receipt, request and session do not match")
    if not request.certificate.pseudonym_key.verify(receipt.signed_message(),
                                                    receipt.ev_signature, CTX_RECEIPT):
        raise RoamingRejected("receipt is not signed by the EV's pseudonym")
    c = RoamingClaim(request.foreign_community, dso_id, request, receipt)
    return replace(c, dso_signature=dso_key.sign(c.signed_message(), CTX_CLAIM))


@dataclass(frozen=True)
class HomeBilling:
    """What the home community books: the real account, the amount, the claim it settles,
    and the member's authorisation the ledger checks (``commitment``, ``billing_signature``)."""

    account_address: bytes
    amount_micro: int
    energy_wh: int
    price_micro_per_kwh: int
    pseudonym_address: bytes
    foreign_community: str
    foreign_dso: str
    claim_digest: bytes
    commitment: bytes
    billing_signature: bytes


def settle_roaming_claim(claim: RoamingClaim, *, home_trustees: TrusteeSet,
                         foreign_dso_keys: Mapping[tuple[str, str], PublicKey],
                         billing_key: KemKey) -> HomeBilling:
    """Home-side settlement: verify the claim and map the pseudonym to the billed account.

    ``foreign_dso_keys`` maps (foreign community, DSO id) to the DSO's pinned key. Checks
    the DSO's and the EV's signatures, the amount, the certificate (any epoch: claims
    arrive late), then opens the billing token. Raises ``RoamingRejected``.
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
    return HomeBilling(auth.account_key.address, rec.amount_micro, rec.energy_wh,
                       rec.price_micro_per_kwh, cert.address, claim.foreign_community,
                       claim.dso_id, claim.digest(), auth.commitment, auth.signature)


def charge_body(bill: HomeBilling) -> dict[str, Any]:
    """The home DSO's ``privacy/roaming_charge`` body for a settled claim.

    Carries no certificate, pseudonym or claim digest: the foreign DSO knows them all, and
    could find the entry (and the account) on the home ledger with them.
    """
    return {"commitment": bill.commitment, "account": bill.account_address,
            "billing_sig": bill.billing_signature, "energy_wh": bill.energy_wh,
            "price_micro_per_kwh": bill.price_micro_per_kwh, "amount_micro": bill.amount_micro,
            "foreign_community": bill.foreign_community, "foreign_dso": bill.foreign_dso}
