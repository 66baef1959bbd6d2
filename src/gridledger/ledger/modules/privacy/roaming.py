"""EV roaming on the home ledger (docs/threat-model.md row 13, ``privacy/roaming.py``).

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

from dataclasses import dataclass, replace
from typing import Any

from gridledger.crypto.sig import verify_signature
from gridledger.errors import CryptoError
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.config import PrivacyConfig
from gridledger.ledger.modules.privacy.errors import (
    NoAuthorisation,
    NoGridAccount,
    RoamingAccount,
    RoamingAmount,
    RoamingBillingSig,
    RoamingClaimed,
    RoamingExpired,
    RoamingLimit,
    RoamingNeedsDso,
    RoamingSeq,
    UnknownRoamingPartner,
)
from gridledger.ledger.modules.privacy.expected import Bank, Registry
from gridledger.ledger.modules.privacy.pool import MEMBER_ROLES, require_config
from gridledger.ledger.modules.privacy.records import (
    RoamingAuth,
    hold_address,
)
from gridledger.ledger.modules.privacy.types import (
    RoamingAuthorise,
    RoamingCharge,
)
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State
from gridledger.privacy.roaming import CTX_BILL, RoamingLimits, authorisation_message
from gridledger.types import payment_micro


@dataclass
class Roaming:
    """Handlers and end-of-block step of roaming bookings."""

    bank: Bank
    registry: Registry

    def _home_dso(self, state: State, ctx: TxContext) -> PrivacyConfig:
        cfg = require_config(state)
        sender = self.registry.participant(state, ctx.sender)
        if sender is None or "dso" not in sender.roles:
            raise RoamingNeedsDso("roaming is booked and charged by the home DSO")
        return cfg

    def authorise(self, state: State, ctx: TxContext, msg: RoamingAuthorise) -> None:
        """Book a member's signed authorisation for one roaming session; hold its maximum."""
        cfg = self._home_dso(state, ctx)
        limits = RoamingLimits(msg.max_energy_wh, msg.price_cap_micro_per_kwh)
        member = self.registry.participant(state, msg.account)
        if member is None or "pseudonym" in member.roles or not MEMBER_ROLES & set(member.roles):
            raise RoamingAccount("the billed account must be a registered member under its "
                                 "own name")
        expected = keeper.next_roaming_seq(state, msg.account)
        if msg.seq != expected:
            raise RoamingSeq(f"the account's next roaming authorisation is {expected}")
        message = authorisation_message(cfg.community, msg.account, msg.seq, msg.commitment,
                                        limits)
        try:
            ok = verify_signature(member.alg, member.pk, message, msg.billing_sig, CTX_BILL)
        except CryptoError:
            ok = False
        if not ok:
            raise RoamingBillingSig("the member's key did not authorise this session")
        held = limits.max_amount_micro
        self.bank.move(state, msg.account, hold_address(msg.account, msg.seq), held)
        expires_at = ctx.block.slot_time + cfg.roaming_hold_s
        keeper.put_roaming_auth(state, msg.account, msg.seq, RoamingAuth(
            msg.max_energy_wh, msg.price_cap_micro_per_kwh, held, expires_at, "held"))
        keeper.set_next_roaming_seq(state, msg.account, msg.seq + 1)
        keeper.add_open_roaming(state, expires_at, msg.account, msg.seq)
        ctx.emit("roaming_authorised", account=msg.account, seq=msg.seq,
                 max_energy_wh=msg.max_energy_wh,
                 price_cap_micro_per_kwh=msg.price_cap_micro_per_kwh, held_micro=held,
                 expires_at=expires_at)

    def charge(self, state: State, ctx: TxContext, msg: RoamingCharge) -> None:
        """Charge a booked authorisation for a settled roaming claim, within its limits."""
        cfg = self._home_dso(state, ctx)
        if cfg.roaming_partner(msg.foreign_community, msg.foreign_dso) is None:
            raise UnknownRoamingPartner(f"no roaming agreement with {msg.foreign_community!r} "
                                        f"/ {msg.foreign_dso!r}")
        cost = payment_micro(msg.energy_wh, msg.price_micro_per_kwh)
        if msg.amount_micro != cost:
            raise RoamingAmount(f"{msg.energy_wh} Wh at {msg.price_micro_per_kwh} micro/kWh is "
                                f"{cost} micro, not {msg.amount_micro}")
        auth = keeper.get_roaming_auth(state, msg.account, msg.seq)
        if auth is None:
            raise NoAuthorisation(f"the account has no roaming authorisation {msg.seq}")
        if auth.status != "held":
            raise RoamingClaimed(f"authorisation {msg.seq} is {auth.status}")
        if ctx.block.slot_time >= auth.expires_at:
            raise RoamingExpired("the authorisation's hold has expired")
        limits = RoamingLimits(auth.max_energy_wh, auth.price_cap_micro_per_kwh)
        if not limits.admits(msg.energy_wh, msg.price_micro_per_kwh):
            raise RoamingLimit(f"{msg.energy_wh} Wh at {msg.price_micro_per_kwh} micro/kWh "
                               f"exceeds the member's limits ({limits.max_energy_wh} Wh, "
                               f"{limits.price_cap_micro_per_kwh} micro/kWh)")
        grid = load_params(state).grid_account
        if grid is None:
            raise NoGridAccount("genesis names no grid account to credit")
        hold = hold_address(msg.account, msg.seq)
        self.bank.move(state, hold, grid, msg.amount_micro)
        rest = auth.held_micro - msg.amount_micro
        if rest:
            self.bank.move(state, hold, msg.account, rest)
        keeper.put_roaming_auth(state, msg.account, msg.seq, replace(
            auth, status="charged", energy_wh=msg.energy_wh,
            price_micro_per_kwh=msg.price_micro_per_kwh, amount_micro=msg.amount_micro,
            foreign_community=msg.foreign_community, foreign_dso=msg.foreign_dso))
        keeper.take_open_roaming(state, auth.expires_at, msg.account, msg.seq)
        keeper.add_roaming_due(state, msg.foreign_community, msg.foreign_dso, msg.amount_micro)
        ctx.emit("roaming_charged", account=msg.account, seq=msg.seq,
                 amount_micro=msg.amount_micro, energy_wh=msg.energy_wh,
                 price_micro_per_kwh=msg.price_micro_per_kwh,
                 foreign_community=msg.foreign_community, foreign_dso=msg.foreign_dso,
                 returned_micro=rest)

    def step(self, state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        """End of block: bookings nobody charged before their hold expired go back."""
        for expires_at, account, seq in keeper.open_roaming(state):
            if expires_at > ctx.slot_time:
                break  # sorted by expiry
            auth = keeper.get_roaming_auth(state, account, seq)
            keeper.take_open_roaming(state, expires_at, account, seq)
            if auth is None or auth.status != "held":
                continue
            self.bank.move(state, hold_address(account, seq), account, auth.held_micro)
            keeper.put_roaming_auth(state, account, seq, replace(auth, status="released"))
            events.append({"type": "roaming_released", "account": account, "seq": seq,
                           "returned_micro": auth.held_micro})
