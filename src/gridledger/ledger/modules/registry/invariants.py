"""Registry invariants."""

from __future__ import annotations

import weakref
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
    writes = state.block_writes_under((prefix, keeper.P))
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


_LAST_PSEUDONYMS: list[tuple[weakref.ref[State], tuple[int, int, int],
                           tuple[tuple[bytes, Participant], ...]] | None] = [None]
"""``_pseudonyms`` of the last state asked, at its ``State.write_stamp``: ``cp_unique`` and
``meter_unique`` check the same pseudonyms one after the other, with nothing written in
between (invariants only read), so the second reuses the first's derivation (issue 17,
fifteenth session; outside a block too since the sixteenth: a dry run's trial derives every
pseudonym for each of its replayed blocks)."""


def _pseudonyms(state: State) -> tuple[tuple[bytes, Participant], ...]:
    """The pseudonym records to check (their stand-in cp and its meter are not indexed: the
    record names them): all of them, or — inside a block — those it wrote and those whose
    meter identity's record it wrote. Derived once per state and ``State.write_stamp`` (the
    same records either way: a pure function of the state)."""
    stamp = state.write_stamp()
    last = _LAST_PSEUDONYMS[0]
    if last is not None and last[0]() is state and last[1] == stamp:
        return last[2]
    got = _derive_pseudonyms(state)
    _LAST_PSEUDONYMS[0] = (weakref.ref(state), stamp, got)
    return got


def _derive_pseudonyms(state: State) -> tuple[tuple[bytes, Participant], ...]:
    writes = state.block_writes_under((keeper.P,))
    if writes is None:
        addrs = [k[len(keeper.P):] for k in state.keys_with_prefix(keeper.P)]
    else:
        found: set[bytes] = set()
        for key, old in writes.items():
            if not key.startswith(keeper.P):
                continue
            found.add(key[len(keeper.P):])
            for raw in (old, state.get(key)):
                cp = keeper.decode_participant(raw).meter_of if raw is not None else None
                if cp and cp.startswith(keeper.PSEUDO_CP):
                    holder = keeper.pseudonym_of_cp(state, cp)
                    if holder is not None:
                        found.add(holder[0])
        addrs = sorted(found)
    out = []
    for addr in addrs:
        p = keeper.participant(state, addr)
        if p is not None and p.meter is not None:
            out.append((addr, p))
    return tuple(out)


def cp_unique(state: State) -> None:
    """Invariant cp-unique: one connection point, one trading identity, both ways (a
    pseudonym's stand-in cp: its own record, found again from the cp)."""
    for cp, addr in _entries(state, keeper.CP, lambda p: p.cp):
        p = keeper.participant(state, addr)
        if p is None or p.cp != cp:
            raise InvariantViolation(f"cp-unique: {cp!r} -> {addr.hex()[:16]} inconsistent")
    for addr, p in _pseudonyms(state):
        if not p.cp or keeper.cp_holder(state, p.cp) != addr:
            raise InvariantViolation(f"cp-unique: {p.cp!r} -> {addr.hex()[:16]} inconsistent")


def meter_unique(state: State) -> None:
    """Invariant meter-unique: each connection point has at most one meter, which is a
    ``meter`` identity bound to that connection point and nothing else."""
    for cp, addr in _entries(state, keeper.METER, lambda p: p.meter_of):
        p = keeper.participant(state, addr)
        if p is None or p.roles != ("meter",) or p.meter_of != cp:
            raise InvariantViolation(f"meter-unique: {cp!r} -> {addr.hex()[:16]} inconsistent")
    for _addr, p in _pseudonyms(state):
        assert p.meter is not None
        m = keeper.participant(state, p.meter)
        if m is None or m.roles != ("meter",) or m.meter_of != p.cp \
                or keeper.meter_of_cp(state, p.cp or "") != p.meter:
            raise InvariantViolation(
                f"meter-unique: {p.cp!r} -> {p.meter.hex()[:16]} inconsistent")


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
