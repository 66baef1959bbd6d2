"""EV roaming on the home ledger (THREATS.md row 13, ``privacy/roaming.py``).

A foreign DSO's full claim (certificate with k trustee signatures, request, receipt) does not
fit in a transaction, so the home DSO — the holder of the home billing ML-KEM key — checks it
off the ledger and posts what the validators can check, in two steps:

* ``privacy/roaming_authorise {account, seq, commitment, max_energy_wh,
  price_cap_micro_per_kwh, billing_sig}``, before the EV charges: ``billing_sig`` is the
  member's ML-DSA signature (FIPS 204, context ``CTX_BILL``) over
  ``authorisation_message(community, account, seq, commitment, limits)``, checked against
  the member's key *now*; ``seq`` is the account's next roaming sequence number (one
  booking per signature); ``limits.max_amount_micro`` moves from the member to a hold
  account that no key controls, for ``roaming_hold_s``.
* ``privacy/roaming_charge {account, seq, energy_wh, price_micro_per_kwh, amount_micro,
  foreign_community, foreign_dso}``, after the foreign DSO's claim settled off the ledger:
  the foreign DSO is a pinned partner, energy <= the member's limit, price <= its cap,
  amount = ``types.payment_micro(energy_wh, price)``; the grid account (which owes the
  foreign DSO, ``keeper.roaming_due``) is paid from the hold and the rest returns to the
  member. One charge per authorisation; an authorisation nobody charges is released to the
  member when its hold expires.

So the home DSO cannot re-price a session beyond what the member signed, and a member cannot
escape a charge by rotating its key or moving its money after charging: its signature was
checked and its money held before the charging began. State holds the authorisation under
(account, seq) — deterministic — never the salted commitment (secret randomness).
"""

from __future__ import annotations

from typing import Any

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import verify_signature
from gridledger.errors import CryptoError, InvalidBody, Unauthorized
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.types import PrivacyConfig
from gridledger.ledger.modules.registry.keeper import get_participant
from gridledger.ledger.state import State
from gridledger.ledger.validate import (
    require_addr,
    require_bytes,
    require_int,
    require_str,
)
from gridledger.privacy.errors import RoamingRejected
from gridledger.privacy.roaming import CTX_BILL, RoamingLimits, authorisation_message
from gridledger.types import payment_micro

MAX_ROAMING_WH = 1_000_000        # 1 MWh: far above any one EV charging session
MAX_PRICE_MICRO_PER_KWH = 10**9
MAX_SIG = 4627                    # an ML-DSA-87 signature
_AUTH_FIELDS = {"account", "seq", "commitment", "max_energy_wh", "price_cap_micro_per_kwh",
                "billing_sig"}
_CHARGE_FIELDS = {"account", "seq", "energy_wh", "price_micro_per_kwh", "amount_micro",
                  "foreign_community", "foreign_dso"}


def hold_address(account: bytes, seq: int) -> bytes:
    """The account holding one authorisation's money: no key controls it, only this module."""
    return tagged_hash("gl/privacy/roaming-hold", account, seq.to_bytes(8, "big"))


def _exact(body: dict[str, Any], kind: str, names: set[str]) -> None:
    if set(body) != names:
        raise InvalidBody(f"{kind} has exactly the fields {', '.join(sorted(names))}")


def _home_dso(state: State, ctx: TxContext) -> PrivacyConfig:
    cfg = keeper.config(state)
    if cfg is None:
        raise InvalidBody("privacy-disabled: this chain has no privacy section in genesis")
    sender = get_participant(state, ctx.sender)
    if sender is None or "dso" not in sender["roles"]:
        raise Unauthorized("not-dso: roaming is booked by the home DSO")
    return cfg


def handle_roaming_authorise(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """Book a member's signed authorisation for one roaming session and hold its maximum."""
    _exact(body, "privacy/roaming_authorise", _AUTH_FIELDS)
    cfg = _home_dso(state, ctx)
    account = require_addr(body, "account")
    seq = require_int(body, "seq", maximum=2**40)
    commitment = require_bytes(body, "commitment", exact=32)
    max_wh = require_int(body, "max_energy_wh", minimum=1, maximum=MAX_ROAMING_WH)
    cap = require_int(body, "price_cap_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH)
    sig = require_bytes(body, "billing_sig", max_len=MAX_SIG)
    try:
        limits = RoamingLimits(max_wh, cap)
    except RoamingRejected as exc:
        raise InvalidBody(f"roaming-limit: {exc.detail}") from exc
    member = get_participant(state, account)
    if member is None or "pseudonym" in member["roles"] or not (
            {"prosumer", "consumer"} & set(member["roles"])):
        raise InvalidBody("roaming-account: the billed account must be a registered member "
                          "under its own name")
    expected = keeper.next_roaming_seq(state, account)
    if seq != expected:
        raise InvalidBody(f"roaming-seq: the account's next roaming authorisation is {expected}")
    message = authorisation_message(cfg.community, account, seq, commitment, limits)
    try:
        ok = verify_signature(member["alg"], member["pk"], message, sig, CTX_BILL)
    except CryptoError:
        ok = False
    if not ok:
        raise Unauthorized("roaming-billing-sig: the member's key did not authorise this session")
    held = limits.max_amount_micro
    bank.move(state, account, hold_address(account, seq), held)  # insufficient-funds if short
    expires_at = ctx.block.slot_time + cfg.roaming_hold_s
    keeper.put_roaming_auth(state, account, seq, {
        "max_energy_wh": max_wh, "price_cap_micro_per_kwh": cap, "held_micro": held,
        "expires_at": expires_at, "status": "held"})
    keeper.set_next_roaming_seq(state, account, seq + 1)
    keeper.add_open_roaming(state, expires_at, account, seq)
    ctx.emit("roaming_authorised", account=account, seq=seq, max_energy_wh=max_wh,
             price_cap_micro_per_kwh=cap, held_micro=held, expires_at=expires_at)


def handle_roaming_charge(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """Charge a booked authorisation for a settled roaming claim, within its limits."""
    _exact(body, "privacy/roaming_charge", _CHARGE_FIELDS)
    cfg = _home_dso(state, ctx)
    account = require_addr(body, "account")
    seq = require_int(body, "seq", maximum=2**40)
    energy_wh = require_int(body, "energy_wh", minimum=1, maximum=MAX_ROAMING_WH)
    price = require_int(body, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH)
    amount = require_int(body, "amount_micro", maximum=10**15)
    community = require_str(body, "foreign_community", max_len=64)
    dso_id = require_str(body, "foreign_dso", max_len=64)
    if cfg.roaming_partner(community, dso_id) is None:
        raise InvalidBody(f"unknown-roaming-partner: no roaming agreement with "
                          f"{community!r} / {dso_id!r}")
    if amount != payment_micro(energy_wh, price):
        raise InvalidBody(f"roaming-amount: {energy_wh} Wh at {price} micro/kWh is "
                          f"{payment_micro(energy_wh, price)} micro, not {amount}")
    auth = keeper.get_roaming_auth(state, account, seq)
    if auth is None:
        raise InvalidBody(f"no-authorisation: account has no roaming authorisation {seq}")
    if auth["status"] != "held":
        raise InvalidBody(f"roaming-claimed: authorisation {seq} is {auth['status']}")
    if ctx.block.slot_time >= auth["expires_at"]:
        raise InvalidBody("roaming-expired: the authorisation's hold has expired")
    limits = RoamingLimits(auth["max_energy_wh"], auth["price_cap_micro_per_kwh"])
    if not limits.admits(energy_wh, price):
        raise InvalidBody(f"roaming-limit: {energy_wh} Wh at {price} micro/kWh exceeds the "
                          f"member's limits ({limits.max_energy_wh} Wh, "
                          f"{limits.price_cap_micro_per_kwh} micro/kWh)")
    grid = load_params(state).grid_account
    if grid is None:
        raise InvalidBody("no-grid-account: genesis names no grid account to credit")
    hold = hold_address(account, seq)
    bank.move(state, hold, grid, amount)
    rest = auth["held_micro"] - amount
    if rest:
        bank.move(state, hold, account, rest)
    keeper.put_roaming_auth(state, account, seq, {
        **auth, "status": "charged", "energy_wh": energy_wh, "price_micro_per_kwh": price,
        "amount_micro": amount, "foreign_community": community, "foreign_dso": dso_id})
    keeper.take_open_roaming(state, auth["expires_at"], account, seq)
    keeper.add_roaming_due(state, community, dso_id, amount)
    ctx.emit("roaming_charged", account=account, seq=seq, amount_micro=amount,
             energy_wh=energy_wh, price_micro_per_kwh=price, foreign_community=community,
             foreign_dso=dso_id, returned_micro=rest)


def release_expired(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
    """End of block: authorisations nobody charged before their hold expired go back."""
    for expires_at, account, seq in keeper.open_roaming(state):
        if expires_at > ctx.slot_time:
            break  # sorted by expiry
        auth = keeper.get_roaming_auth(state, account, seq)
        keeper.take_open_roaming(state, expires_at, account, seq)
        if auth is None or auth["status"] != "held":
            continue
        bank.move(state, hold_address(account, seq), account, auth["held_micro"])
        keeper.put_roaming_auth(state, account, seq, {**auth, "status": "released"})
        events.append({"type": "roaming_released", "account": account, "seq": seq,
                       "returned_micro": auth["held_micro"]})
