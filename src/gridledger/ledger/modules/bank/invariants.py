"""Bank invariants: money is conserved and never negative."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.bank import keeper
from gridledger.ledger.state import State


def total_supply(state: State) -> None:
    """Invariant total-supply: spendable + locked money equals the supply minted at genesis."""
    total, supply = keeper.total_money(state), keeper.supply(state)
    if total != supply:
        raise InvariantViolation(f"total-supply: balances {total} != supply {supply}")


def nonnegative(state: State) -> None:
    """Invariant nonnegative: no balance or locked amount below zero."""
    for addr, spend, held in keeper.balances(state):
        if spend < 0 or held < 0:
            raise InvariantViolation(f"nonnegative: {addr.hex()[:16]} has {spend} / {held}")


INVARIANTS = (total_supply, nonnegative)
