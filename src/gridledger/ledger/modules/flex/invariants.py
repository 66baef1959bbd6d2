"""Flexibility invariants, run after every block by every node and test."""

from __future__ import annotations

from collections.abc import Callable

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.flex import keeper
from gridledger.ledger.modules.flex.expected import Bank
from gridledger.ledger.modules.flex.settlement import shortfall_wh
from gridledger.ledger.state import State
from gridledger.market.rounding import ceil_micro


def make_invariants(bank: Bank) -> tuple[Callable[[State], None], ...]:
    """The module's invariants, wired to the bank whose locks back its money."""

    def escrow_backed(state: State) -> None:
        """Invariant flex-escrow-backed: what the module holds per owner (escrows,
        deposits) is >= 0 and covered by the owner's bank lock."""
        for owner, held in keeper.holds(state).items():
            if held < 0 or held > bank.locked(state, owner):
                raise InvariantViolation(f"flex-escrow-backed: {owner.hex()[:16]} holds {held}, "
                                         f"locked {bank.locked(state, owner)}")

    return (escrow_backed, offers_consistent, requests_consistent)


def offers_consistent(state: State) -> None:
    """Invariant flex-offers: activation within the offer, delivery within activation,
    payments exactly the rounded pro-rata amount, penalties within the ceiling."""
    cfg = keeper.config(state)
    for rid, oid, o in keeper.all_offers(state):
        where = f"offer {oid.hex()[:12]} of {rid.hex()[:12]}"
        if o.deposit_micro < 0:
            raise InvariantViolation(f"flex-offers: {where} has a negative deposit")
        if o.activated_wh is None:
            if o.delivered_wh or o.paid_micro or o.penalty_micro:
                raise InvariantViolation(f"flex-offers: {where} settled without activation")
            continue
        if any(a > e for a, e in zip(o.activated_wh, o.energies_wh, strict=True)):
            raise InvariantViolation(f"flex-offers: {where} activated beyond the offer")
        delivered = o.delivered_wh or ()
        if any(not 0 <= d <= a for a, d in zip(o.activated_wh, delivered, strict=False)):
            raise InvariantViolation(f"flex-offers: {where} delivered outside [0, activated]")
        if (o.paid_micro or 0) != sum(delivered) * o.price_micro_per_kwh // 1000:
            raise InvariantViolation(f"flex-offers: {where} paid {o.paid_micro}, not pro rata")
        short = sum(shortfall_wh(a, d, cfg.tolerance_pct)
                    for a, d in zip(o.activated_wh, delivered, strict=False))
        if not 0 <= (o.penalty_micro or 0) <= ceil_micro(short * o.deposit_rate):
            raise InvariantViolation(f"flex-offers: {where} penalty {o.penalty_micro} beyond "
                                     "its shortfall")


def requests_consistent(state: State) -> None:
    """Invariant flex-requests: an ordered request's escrow is its cost less what it paid
    (until it finishes), and the DSO never pays more than the order cost."""
    for rid, r in keeper.requests(state):
        if r.status != "ordered":
            if r.status in ("settled", "expired", "cancelled") and r.escrow_micro:
                raise InvariantViolation(f"flex-requests: {rid.hex()[:12]} finished holding "
                                         f"{r.escrow_micro}")
            continue
        cost, paid = r.cost_micro or 0, r.paid_micro or 0
        if paid > cost or r.escrow_micro != cost - paid:
            raise InvariantViolation(f"flex-requests: {rid.hex()[:12]} escrow {r.escrow_micro} "
                                     f"!= cost {cost} - paid {paid}")
