"""Bank invariants: money is conserved and never negative."""

from __future__ import annotations

import cbor2

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.bank import keeper
from gridledger.ledger.state import State


def _int(raw: bytes | None) -> int:
    return 0 if raw is None else int(cbor2.loads(raw))


def _money_writes(state: State) -> dict[bytes, bytes | None] | None:
    """Inside a block: the balance, lock and supply keys it wrote, with their values before it
    (the invariants held then, so only these can break them); None: check everything."""
    writes = state.block_writes_under((keeper.BAL, keeper.LOCK, keeper.SUPPLY))
    if writes is None:
        return None
    return {k: v for k, v in writes.items()
            if k.startswith((keeper.BAL, keeper.LOCK)) or k == keeper.SUPPLY}


def total_supply(state: State) -> None:
    """Invariant total-supply: spendable + locked money equals the supply minted at genesis.
    Inside a block: what the block added to the balances equals what it added to the supply
    (zero), the same test given that the state before the block held it."""
    writes = _money_writes(state)
    if writes is None:
        total, supply = keeper.total_money(state), keeper.supply(state)
        if total != supply:
            raise InvariantViolation(f"total-supply: balances {total} != supply {supply}")
        return
    moved = sum(_int(state.get(k)) - _int(old) for k, old in writes.items()
                if k != keeper.SUPPLY)
    minted = (_int(state.get(keeper.SUPPLY)) - _int(writes[keeper.SUPPLY])
              if keeper.SUPPLY in writes else 0)
    if moved != minted:
        raise InvariantViolation(f"total-supply: the block changed the balances by {moved}, "
                                 f"the supply by {minted}")


def nonnegative(state: State) -> None:
    """Invariant nonnegative: no balance or locked amount below zero (inside a block: none
    the block wrote)."""
    writes = _money_writes(state)
    if writes is None:
        for addr, spend, held in keeper.balances(state):
            if spend < 0 or held < 0:
                raise InvariantViolation(f"nonnegative: {addr.hex()[:16]} has {spend} / {held}")
        return
    for k in sorted(writes):
        if k != keeper.SUPPLY and (v := _int(state.get(k))) < 0:
            raise InvariantViolation(f"nonnegative: {k.hex()[:24]} holds {v}")


INVARIANTS = (total_supply, nonnegative)
