"""``energy-balanced`` inside a block checks the slots the block wrote, and still catches every
break there (issue 17: the full scan after every block grew with the whole history).

Inside a block (an open outermost transaction) the invariant reads only the trades and slot
records of slots whose ``mkt/t/`` or ``mkt/slot/`` keys the block wrote; outside one it scans
every slot. Each break below is made inside a block and must be caught there, exactly as the
full scan catches it after the block.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.invariants import energy_balanced
from gridledger.ledger.state import State
from tests.ledger.modules.world import World, make_world, t_clear, t_order, t_read, t_settle

SLOT = 3
OTHER = 5


def _settled_world() -> World:
    """Two slots traded and settled (SLOT, OTHER), so the state holds trades of both."""
    w = make_world()
    steps = []
    for slot in (SLOT, OTHER):
        steps += [(t_order(slot), [w.order(0, slot, "sell", 1_000, 0),
                                   w.order(1, slot, "buy", 700, 200_000),
                                   w.order(2, slot, "buy", 300, 200_000)]),
                  (t_clear(slot), []),
                  (t_read(slot), [w.reading(0, slot, 0, 900), w.reading(1, slot, 700, 0),
                                  w.reading(2, slot, 300, 0)]),
                  (t_settle(slot), [])]
    for at, txs in sorted(steps, key=lambda s: s[0]):
        w.ok(txs, at)
    assert len(keeper.trades_of_slot(w.app.state, SLOT)) >= 2
    return w


def _trade_key(state: State, slot: int) -> bytes:
    return state.keys_with_prefix(keeper.TRADE + keeper.sk(slot))[0]


def _trade_energy_grows(state: State) -> None:
    k = _trade_key(state, SLOT)
    obj = state.get_obj(k)
    state.set_obj(k, {**obj, "energy_wh": obj["energy_wh"] + 1})


def _trade_over_delivered(state: State) -> None:
    k = _trade_key(state, SLOT)
    obj = state.get_obj(k)
    state.set_obj(k, {**obj, "delivered_wh": obj["energy_wh"] + 5})


def _trade_vanishes(state: State) -> None:
    state.delete(_trade_key(state, SLOT))


def _slot_record_delivered_changes(state: State) -> None:
    k = keeper.SLOT + keeper.sk(SLOT)
    obj = state.get_obj(k)
    state.set_obj(k, {**obj, "delivered_wh": obj["delivered_wh"] - 1})


def _payment_off_by_a_micro(state: State) -> None:
    k = _trade_key(state, SLOT)
    obj = state.get_obj(k)
    state.set_obj(k, {**obj, "payment_micro": obj["payment_micro"] + 2})


@pytest.mark.parametrize("breaks", [
    _trade_energy_grows, _trade_over_delivered, _trade_vanishes,
    _slot_record_delivered_changes, _payment_off_by_a_micro])
def test_a_break_made_in_a_block_is_caught_in_the_block(breaks: Callable[[State], None]) -> None:
    w = _settled_world()
    state = w.app.state
    energy_balanced(state)                       # the state before the block holds it
    state.begin()                                # the block
    other = _trade_key(state, OTHER)             # a block that rewrites another slot's trade
    state.set_obj(other, state.get_obj(other))   # (unchanged) and unrelated keys is fine
    state.set_obj(b"gov/unrelated", 1)
    energy_balanced(state)
    breaks(state)
    with pytest.raises(InvariantViolation):
        energy_balanced(state)
    state.commit()                               # outside a block: the full scan agrees
    assert state.block_writes() is None
    with pytest.raises(InvariantViolation):
        energy_balanced(state)


def test_a_block_that_writes_no_trade_checks_no_slot() -> None:
    """The rule the speed rests on: a slot the block did not write is not read again."""
    w = _settled_world()
    state = w.app.state
    state.begin()
    state.set_obj(b"gov/unrelated", 1)
    reads: list[bytes] = []
    scan = state.keys_with_prefix   # every prefix read goes through it (records: read_prefix)

    def counting(prefix: bytes):  # type: ignore[no-untyped-def]
        reads.append(prefix)
        return scan(prefix)

    state.keys_with_prefix = counting  # type: ignore[method-assign]
    energy_balanced(state)
    assert reads == []
    state.set_obj(keeper.SLOT + keeper.sk(OTHER), state.get_obj(keeper.SLOT + keeper.sk(OTHER)))
    energy_balanced(state)
    assert reads == [keeper.TRADE + keeper.sk(OTHER), keeper.SLOT + keeper.sk(OTHER)]
    state.rollback()
