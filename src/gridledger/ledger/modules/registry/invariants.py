"""Registry invariants."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.state import State


def cp_unique(state: State) -> None:
    """Invariant cp-unique: one connection point, one trading identity, both ways."""
    for cp, addr in keeper.cps(state):
        p = keeper.participant(state, addr)
        if p is None or p.cp != cp:
            raise InvariantViolation(f"cp-unique: {cp!r} -> {addr.hex()[:16]} inconsistent")


def meter_unique(state: State) -> None:
    """Invariant meter-unique: each connection point has at most one meter, which is a
    ``meter`` identity bound to that connection point and nothing else."""
    for cp, addr in keeper.meters(state):
        p = keeper.participant(state, addr)
        if p is None or p.roles != ("meter",) or p.meter_of != cp:
            raise InvariantViolation(f"meter-unique: {cp!r} -> {addr.hex()[:16]} inconsistent")


def validator_set_consistent(state: State) -> None:
    """Invariant validator-set: the active set is non-empty, has no duplicate address or
    public key, and every member is a participant with the ``validator`` role."""
    addrs = keeper.validator_set(state)
    if not addrs:
        raise InvariantViolation("validator-set: the active validator set is empty")
    if len(set(addrs)) != len(addrs):
        raise InvariantViolation("validator-set: an address appears twice")
    pks = set()
    for a in addrs:
        p = keeper.participant(state, a)
        if p is None or "validator" not in p.roles:
            raise InvariantViolation(f"validator-set: {a.hex()[:16]} is not an active validator")
        if p.pk in pks:
            raise InvariantViolation(f"validator-set: {a.hex()[:16]} shares a public key")
        pks.add(p.pk)


INVARIANTS = (cp_unique, meter_unique, validator_set_consistent)
