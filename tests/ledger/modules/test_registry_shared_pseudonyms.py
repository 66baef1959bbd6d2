"""``cp-unique`` and ``meter-unique`` share one derivation of the pseudonyms a block could
have broken (issue 17, fifteenth session), inside a block or not (a dry run's trial checks
every invariant outside one: sixteenth session): reused only for the same state at the same
``State.write_stamp`` — after any write or rollback, or on another state, it is derived
afresh — and always equal to deriving it again."""

from __future__ import annotations

import pytest

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.registry import invariants as reg_inv
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.invariants import cp_unique, meter_unique
from tests.conftest import make_chain
from tests.ledger.modules.test_block_invariants import (
    PSEUDONYM,
    _pseudonym_meter_rebound,
    _with_meters,
)


def test_the_pseudonyms_are_derived_once_per_write_stamp(monkeypatch) -> None:
    calls: list[int] = []
    derive = reg_inv._derive_pseudonyms

    def counted(state):  # type: ignore[no-untyped-def]
        calls.append(1)
        return derive(state)

    monkeypatch.setattr(reg_inv, "_derive_pseudonyms", counted)
    c = make_chain()
    state = _with_meters(c)
    calls.clear()                                # (genesis ran the invariants)
    cp_unique(state)
    meter_unique(state)
    assert len(calls) == 1                       # outside a block: one derivation for both
    assert reg_inv._pseudonyms(state) == derive(state)
    calls.clear()
    state.set_obj(b"gov/outside", 1)             # a write outside a block: derived again
    reg_inv._pseudonyms(state)
    assert len(calls) == 1
    state.delete(b"gov/outside")
    reg_inv._pseudonyms(state)
    assert len(calls) == 2
    calls.clear()
    state.begin()
    p = keeper.participant(state, PSEUDONYM.address)
    assert p is not None
    state.set_obj(keeper.P + PSEUDONYM.address, p.to_obj())   # the block writes the pseudonym
    cp_unique(state)
    meter_unique(state)
    assert len(calls) == 1                       # one derivation for both invariants
    assert reg_inv._pseudonyms(state) == derive(state)
    assert [a for a, _ in reg_inv._pseudonyms(state)] == [PSEUDONYM.address]
    other = state.copy()                         # another state: its own derivation
    other.begin()
    reg_inv._pseudonyms(other)
    assert len(calls) == 2
    state.begin()
    state.set_obj(b"gov/unrelated", 1)           # a write: derived again
    reg_inv._pseudonyms(state)
    assert len(calls) == 3
    state.rollback()                             # a rollback: derived again
    reg_inv._pseudonyms(state)
    assert len(calls) == 4
    assert reg_inv._pseudonyms(state) == derive(state)
    state.commit()


def test_a_break_after_cp_unique_ran_is_caught_by_meter_unique() -> None:
    """Removal test of the sharing's staleness check: ``cp_unique`` derives the pseudonyms,
    then the block breaks a pseudonym's meter binding; ``meter_unique`` must see the break
    (it would not with the derivation reused across the write)."""
    c = make_chain()
    state = _with_meters(c)
    state.begin()
    state.set_obj(b"gov/unrelated", 1)           # the block writes no registry key yet
    cp_unique(state)
    meter_unique(state)
    assert reg_inv._pseudonyms(state) == ()
    _pseudonym_meter_rebound(state, c)           # now its reading key's record
    with pytest.raises(InvariantViolation, match="meter-unique"):
        meter_unique(state)
    state.rollback()
