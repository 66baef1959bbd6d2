"""Registry invariants."""

from __future__ import annotations

from collections.abc import Callable

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.types import Participant
from gridledger.ledger.state import State


def _entries(state: State, prefix: bytes,
             named: Callable[[Participant], str | None]) -> list[tuple[str, bytes]]:
    """The (cp, address) entries under ``prefix`` to check: all of them, or — inside a block,
    whose prior state held the invariant — only those the block could have broken: an entry
    it wrote, and the entry a participant record it wrote named before or after (an entry
    whose key and whose participant record are both untouched is as valid as before)."""
    writes = state.block_writes()
    if writes is None:
        return [(k[len(prefix):].decode(), v) for k, v in state.items_with_prefix(prefix)]
    cps: set[str] = set()
    for key, old in writes.items():
        if key.startswith(prefix):
            cps.add(key[len(prefix):].decode())
        elif key.startswith(keeper.P):
            for raw in (old, state.get(key)):
                cp = named(keeper.decode_participant(raw)) if raw is not None else None
                if cp:
                    cps.add(cp)
    out = []
    for cp in sorted(cps):
        addr: bytes | None = state.get_obj(prefix + cp.encode())
        if addr is not None:
            out.append((cp, addr))
    return out


def cp_unique(state: State) -> None:
    """Invariant cp-unique: one connection point, one trading identity, both ways."""
    for cp, addr in _entries(state, keeper.CP, lambda p: p.cp):
        p = keeper.participant(state, addr)
        if p is None or p.cp != cp:
            raise InvariantViolation(f"cp-unique: {cp!r} -> {addr.hex()[:16]} inconsistent")


def meter_unique(state: State) -> None:
    """Invariant meter-unique: each connection point has at most one meter, which is a
    ``meter`` identity bound to that connection point and nothing else."""
    for cp, addr in _entries(state, keeper.METER, lambda p: p.meter_of):
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
