"""Registry, bank, firmware and reputation invariants inside a block check what the block
wrote, and still catch every break.

Inside a block (an open outermost transaction) ``cp-unique``, ``meter-unique``,
``total-supply``, ``nonnegative``, ``firmware-meter-index`` and ``score-range`` look only at
what the block could have broken (``State.block_writes``); outside one they scan every entry.
Each break below is made inside a block and must be caught there, exactly as the full scan
catches it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gridledger.errors import InvariantViolation
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.bank.invariants import nonnegative, total_supply
from gridledger.ledger.modules.firmware import keeper as fw
from gridledger.ledger.modules.firmware.invariants import meter_index
from gridledger.ledger.modules.firmware.types import MeterFirmware, image_commitment
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.invariants import cp_unique, meter_unique
from gridledger.ledger.modules.registry.types import pseudonym_cp
from gridledger.ledger.modules.reputation import keeper as rep
from gridledger.ledger.modules.reputation.invariants import score_range
from gridledger.ledger.state import State
from gridledger.sim.keys import sim_key
from tests.conftest import Chain, make_chain

Break = Callable[[State, Chain], None]


def _holder_moves_cp(state: State, c: Chain) -> None:
    """A participant record now names another cp; the old cp entry still points at it."""
    p = keeper.participant(state, c.users[0].address)
    assert p is not None
    state.set_obj(keeper.P + c.users[0].address, {**p.to_obj(), "cp": "cp-elsewhere"})


def _cp_entry_points_elsewhere(state: State, c: Chain) -> None:
    state.set(keeper.CP + b"cp0", codec.encode(c.users[1].address))


def _holder_deleted(state: State, c: Chain) -> None:
    state.delete(keeper.P + c.users[2].address)


def _meter_entry_to_a_trader(state: State, c: Chain) -> None:
    state.set(keeper.METER + b"cp3", codec.encode(c.users[3].address))


def _meter_rebound(state: State, c: Chain) -> None:
    meter = keeper.meter_of_cp(state, "cp4")
    assert meter is not None
    p = keeper.participant(state, meter)
    assert p is not None
    state.set_obj(keeper.P + meter, {**p.to_obj(), "meter_of": "cp5"})


IMAGE_A, IMAGE_B = b"\xaa" * 32, b"\xbb" * 32
PSEUDONYM, READING = sim_key(2, "pseudonym", 0), sim_key(2, "reading", 0)
SALT = b"\x5a" * 32
SEALED = image_commitment(IMAGE_A, SALT)
PS_CP = pseudonym_cp(PSEUDONYM.address)


def _with_meters(c: Chain) -> State:
    state = Application(c.genesis).state
    for i in (3, 4):
        m = sim_key(2, "meter", i)
        keeper.put_meter(state, m.address, m.alg, m.public_key.raw, f"cp{i}")
        fw.put_meter_record(state, f"cp{i}", MeterFirmware(m.address, IMAGE_A, 0))
    # a pseudonym: its stand-in cp and meter are named by its record, not indexed
    keeper.put_pseudonym(state, PSEUDONYM.address, PSEUDONYM.alg, PSEUDONYM.public_key.raw,
                         PS_CP, (5, 5), READING.address, READING.alg, READING.public_key.raw)
    # its sealed firmware record (a salted commitment) is not in the image index
    fw.put_meter_record(state, PS_CP, MeterFirmware(READING.address, SEALED, 0, sealed=True))
    assert state.keys_with_prefix(fw.ON + SEALED) == []
    return state


def _sealed_record_indexed(state: State, c: Chain) -> None:
    state.set(fw.ON + SEALED + PS_CP.encode(), b"\x01")


def _sealed_record_opened_not_indexed(state: State, c: Chain) -> None:
    state.set_obj(fw.METER + PS_CP.encode(), MeterFirmware(
        READING.address, IMAGE_A, 0, sealed=True, salt=SALT).to_obj())


def _pseudonym_meter_rebound(state: State, c: Chain) -> None:
    p = keeper.participant(state, READING.address)
    assert p is not None
    state.set_obj(keeper.P + READING.address, {**p.to_obj(), "meter_of": "cp5"})


def _pseudonym_meter_deleted(state: State, c: Chain) -> None:
    state.delete(keeper.P + READING.address)


def _pseudonym_names_another_cp(state: State, c: Chain) -> None:
    p = keeper.participant(state, PSEUDONYM.address)
    assert p is not None
    state.set_obj(keeper.P + PSEUDONYM.address, {**p.to_obj(), "cp": pseudonym_cp(bytes(32))})


def _pseudonym_cp_indexed_to_another(state: State, c: Chain) -> None:
    state.set(keeper.CP + PS_CP.encode(), codec.encode(c.users[1].address))


def _record_changes_image_index_stays(state: State, c: Chain) -> None:
    rec = fw.meter_record(state, "cp3")
    assert rec is not None
    state.set_obj(fw.METER + b"cp3", MeterFirmware(rec.meter, IMAGE_B, 1).to_obj())


def _record_moved_old_entry_kept(state: State, c: Chain) -> None:
    """The record and its new entry written, the former image's entry left behind."""
    rec = fw.meter_record(state, "cp3")
    assert rec is not None
    state.set_obj(fw.METER + b"cp3", MeterFirmware(rec.meter, IMAGE_B, 1).to_obj())
    state.set(fw.ON + IMAGE_B + b"cp3", b"\x01")


def _second_index_entry(state: State, c: Chain) -> None:
    state.set(fw.ON + IMAGE_B + b"cp3", b"\x01")


def _index_entry_deleted(state: State, c: Chain) -> None:
    state.delete(fw.ON + IMAGE_A + b"cp3")


def _record_deleted(state: State, c: Chain) -> None:
    state.delete(fw.METER + b"cp3")


def _score_out_of_range(state: State, c: Chain) -> None:
    state.set_obj(rep.REP + c.users[1].address, {**rep.get_record(state, c.users[1].address),
                                                 "score": 1001})


def _entry_without_record(state: State, c: Chain) -> None:
    state.set(fw.ON + IMAGE_A + b"cp9", b"\x01")


def _money_minted(state: State, c: Chain) -> None:
    state.set_int(bank.BAL + c.users[0].address, bank.balance(state, c.users[0].address) + 1)


def _money_burnt(state: State, c: Chain) -> None:
    state.delete(bank.BAL + c.users[1].address)


def _negative_lock(state: State, c: Chain) -> None:
    """A negative lock offset by a larger balance: the total still adds up."""
    state.set_int(bank.LOCK + c.users[2].address, -5)
    state.set_int(bank.BAL + c.users[2].address, bank.balance(state, c.users[2].address) + 5)


def _supply_changed(state: State, c: Chain) -> None:
    state.set_int(bank.SUPPLY, bank.supply(state) + 7)


@pytest.mark.parametrize("breaks, invariant", [
    (_holder_moves_cp, cp_unique), (_cp_entry_points_elsewhere, cp_unique),
    (_holder_deleted, cp_unique), (_meter_entry_to_a_trader, meter_unique),
    (_meter_rebound, meter_unique), (_money_minted, total_supply),
    (_money_burnt, total_supply), (_negative_lock, nonnegative),
    (_supply_changed, total_supply), (_record_changes_image_index_stays, meter_index),
    (_record_moved_old_entry_kept, meter_index), (_second_index_entry, meter_index),
    (_index_entry_deleted, meter_index), (_record_deleted, meter_index),
    (_entry_without_record, meter_index), (_score_out_of_range, score_range),
    (_pseudonym_meter_rebound, meter_unique), (_pseudonym_meter_deleted, meter_unique),
    (_pseudonym_names_another_cp, cp_unique), (_pseudonym_cp_indexed_to_another, cp_unique),
    (_sealed_record_indexed, meter_index), (_sealed_record_opened_not_indexed, meter_index)])
def test_a_break_made_in_a_block_is_caught_in_the_block(
        breaks: Break, invariant: Callable[[State], None]) -> None:
    c = make_chain()
    state = _with_meters(c)
    every = (cp_unique, meter_unique, total_supply, nonnegative, meter_index, score_range)
    for inv in every:                            # the state before the block holds them
        inv(state)
    state.begin()                                # the block
    state.set_obj(b"gov/unrelated", 1)           # writes elsewhere change nothing
    a, b = c.users[3].address, c.users[4].address
    bank.move(state, a, b, 10)                   # nor does money that moves
    assert set(state.block_writes() or {}) == {b"gov/unrelated", bank.BAL + a, bank.BAL + b}
    for inv in every:
        inv(state)
    fw.put_meter_record(state, "cp4", MeterFirmware(b"m", IMAGE_B, 1))  # nor a patch
    rep.adjust(state, c.users[2].address, "rejected_tx", 1)              # nor a penalty
    for inv in every:
        inv(state)
    breaks(state, c)
    with pytest.raises(InvariantViolation):
        invariant(state)
    state.commit()                               # outside a block: the full scan agrees
    assert state.block_writes() is None
    with pytest.raises(InvariantViolation):
        invariant(state)


def test_a_rolled_back_write_is_not_a_block_write() -> None:
    c = make_chain()
    state = _with_meters(c)
    state.begin()
    state.begin()                                # a transaction that fails
    _cp_entry_points_elsewhere(state, c)
    state.rollback()
    assert state.block_writes() == {}
    cp_unique(state)
    state.commit()


def test_bank_lock_unlock_and_pay_of_zero_write_nothing() -> None:
    """Market and flex lock, unlock and pay whatever a deposit or payment came to: 0 writes
    no key (state roots do not depend on how many zero amounts a block moved); a negative
    amount is refused by name and changes nothing."""
    from gridledger.ledger.modules.bank.errors import BadAmount

    c = make_chain()
    state = _with_meters(c)
    a, b = c.users[3].address, c.users[4].address
    before = (bank.balance(state, a), bank.locked(state, a), bank.balance(state, b))
    state.begin()
    bank.lock(state, a, 0)
    bank.unlock(state, a, 0)
    bank.pay_from_locked(state, a, b, 0)
    assert state.block_writes() == {}
    for op in (lambda: bank.lock(state, a, -1), lambda: bank.unlock(state, a, -1),
               lambda: bank.pay_from_locked(state, a, b, -1)):
        with pytest.raises(BadAmount) as e:
            op()
        assert e.value.rule == "bad-amount"
    assert state.block_writes() == {}
    state.commit()
    assert (bank.balance(state, a), bank.locked(state, a), bank.balance(state, b)) == before


def test_a_sealed_record_enters_the_image_index_when_it_is_opened() -> None:
    c = make_chain()
    state = _with_meters(c)
    state.begin()
    opened = MeterFirmware(READING.address, IMAGE_A, 0, sealed=True, salt=SALT)
    fw.put_meter_record(state, PS_CP, opened)
    assert PS_CP in fw.cps_on(state, IMAGE_A)
    meter_index(state)
    state.commit()
    meter_index(state)
    fw.forget_meter(state, PS_CP)
    assert PS_CP not in fw.cps_on(state, IMAGE_A) and fw.meter_record(state, PS_CP) is None
    meter_index(state)
