"""Equal large values in the states of one process are one object (issue 17: the demo runs
two validators in its process; a privacy pseudonym's record is ~2.7 KB)."""

from __future__ import annotations

import os

from gridledger.ledger import state as state_mod
from gridledger.ledger.state import SHARED_MIN, State


def test_equal_large_values_of_two_states_are_one_object_and_dropped_when_unheld() -> None:
    shared = state_mod._SharedValues()
    old, state_mod._SHARED = state_mod._SHARED, shared
    try:
        a, b = State(), State()
        big = os.urandom(SHARED_MIN)
        a.set(b"k", bytes(bytearray(big)))          # two equal values, two objects
        b.set(b"k", bytes(bytearray(big)))
        a.set(b"small", b"x" * (SHARED_MIN - 1))
        b.set(b"small", b"x" * (SHARED_MIN - 1))
        assert a.get(b"k") is b.get(b"k") and a.get(b"k") == big and a.get(b"k") is not big
        assert a.get(b"small") is not b.get(b"small")
        assert a.root() == b.root()
        a.delete(b"k")
        shared._sweep()
        assert len(shared) == 1                       # b still holds it
        b.set(b"k", os.urandom(SHARED_MIN))
        shared._sweep()
        assert len(shared) == 1 and b.get(b"k") in shared._values
        # past the limit the table sweeps itself: only what states hold stays
        for _ in range(shared._limit + 10):
            shared.share(os.urandom(SHARED_MIN))
        assert len(shared) < 100
    finally:
        state_mod._SHARED = old
