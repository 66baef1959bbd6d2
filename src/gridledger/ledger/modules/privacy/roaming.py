"""``privacy/roaming_charge``: the home DSO books a member's EV charging abroad (THREATS.md
row 13, ``privacy/roaming.py``).

A foreign DSO's full claim (certificate with k trustee signatures, request, receipt) does not
fit in a transaction, so the home DSO — the holder of the home billing ML-KEM key — checks it
off the ledger with ``settle_roaming_claim`` and posts what the validators can check:

* the member authorised the charge: ``billing_sig`` is the account key's ML-DSA signature
  (FIPS 204, context ``CTX_BILL``) over ``commitment``, the salted commitment to the roaming
  certificate taken from the sealed billing token (the foreign DSO knows the certificate
  but not the salt, so it cannot find the entry on this ledger);
* the amount is ``types.payment_micro(energy_wh, price_micro_per_kwh)``;
* the foreign DSO is a pinned roaming partner;
* one charge per billing authorisation (a fresh token per session).

The money goes from the member to the grid account, which owes the foreign DSO
(``keeper.roaming_due``, settled between the communities off this ledger).
"""

from __future__ import annotations

from typing import Any

from gridledger.crypto.sig import verify_signature
from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.handlers import _exact, require_config
from gridledger.ledger.modules.registry.keeper import get_participant
from gridledger.ledger.state import State
from gridledger.ledger.validate import (
    require_addr,
    require_bytes,
    require_int,
    require_str,
)
from gridledger.privacy.roaming import CTX_BILL
from gridledger.types import payment_micro

MAX_ROAMING_WH = 1_000_000        # 1 MWh: far above any one EV charging session
MAX_PRICE_MICRO_PER_KWH = 10**9
_FIELDS = {"commitment", "account", "billing_sig", "energy_wh", "price_micro_per_kwh",
           "amount_micro", "foreign_community", "foreign_dso"}


def handle_roaming_charge(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``privacy/roaming_charge {commitment, account, billing_sig, energy_wh,
    price_micro_per_kwh, amount_micro, foreign_community, foreign_dso}`` by the home DSO:
    debit the member for a settled roaming claim, credit the grid account."""
    _exact(body, "privacy/roaming_charge", _FIELDS)
    cfg = require_config(state)
    sender = get_participant(state, ctx.sender)
    if sender is None or "dso" not in sender["roles"]:
        raise Unauthorized("not-dso: roaming charges are booked by the home DSO")
    commitment = require_bytes(body, "commitment", exact=32)
    account = require_addr(body, "account")
    billing_sig = require_bytes(body, "billing_sig", max_len=4627)  # ML-DSA-87 signature
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
    member = get_participant(state, account)
    if member is None or "pseudonym" in member["roles"] or not (
            {"prosumer", "consumer"} & set(member["roles"])):
        raise InvalidBody("roaming-account: the billed account must be a registered member "
                          "under its own name")
    if not verify_signature(member["alg"], member["pk"], commitment, billing_sig, CTX_BILL):
        raise Unauthorized("roaming-billing-sig: the member's key did not authorise this charge")
    if keeper.get_roaming_charge(state, commitment) is not None:
        raise InvalidBody("roaming-claimed: this billing authorisation was already charged")
    grid = load_params(state).grid_account
    if grid is None:
        raise InvalidBody("no-grid-account: genesis names no grid account to credit")
    bank.move(state, account, grid, amount)
    keeper.put_roaming_charge(state, commitment, {
        "account": account, "amount_micro": amount, "energy_wh": energy_wh,
        "price_micro_per_kwh": price, "foreign_community": community, "foreign_dso": dso_id,
        "height": ctx.block.height})
    keeper.add_roaming_due(state, community, dso_id, amount)
    ctx.emit("roaming_charged", account=account, amount_micro=amount, energy_wh=energy_wh,
             price_micro_per_kwh=price, foreign_community=community, foreign_dso=dso_id,
             commitment=commitment)
