"""Registry invariants."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.state import State


def cp_unique(state: State) -> None:
    """Invariant cp-unique: one connection point, one trading identity, both ways."""
    for k, addr in state.items_with_prefix(keeper.CP):
        p = keeper.get_participant(state, addr)
        if p is None or (p.get("cp") or "").encode() != k[len(keeper.CP):]:
            raise InvariantViolation(f"cp-unique: {k!r} -> {addr.hex()[:16]} inconsistent")


def meter_unique(state: State) -> None:
    """Invariant meter-unique: each connection point has at most one meter, which is a
    ``meter`` identity bound to that connection point and nothing else."""
    for k, addr in state.items_with_prefix(keeper.METER):
        p = keeper.get_participant(state, addr)
        if p is None or p["roles"] != ["meter"] or p.get("meter_of", "").encode() != k[len(keeper.METER):]:
            raise InvariantViolation(f"meter-unique: {k!r} -> {addr.hex()[:16]} inconsistent")


def validator_set_consistent(state: State) -> None:
    """Invariant validator-set: the active set is non-empty, has no duplicate address or
    public key, and every member is an active participant with the ``validator`` role."""
    addrs = keeper.validator_set(state)
    if not addrs:
        raise InvariantViolation("validator-set: the active validator set is empty")
    if len(set(addrs)) != len(addrs):
        raise InvariantViolation("validator-set: an address appears twice")
    pks = set()
    for a in addrs:
        p = keeper.get_participant(state, a)
        if p is None or "validator" not in p["roles"] or p.get("status", "active") != "active":
            raise InvariantViolation(f"validator-set: {a.hex()[:16]} is not an active validator")
        if p["pk"] in pks:
            raise InvariantViolation(f"validator-set: {a.hex()[:16]} shares a public key")
        pks.add(p["pk"])
