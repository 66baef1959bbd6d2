"""A pseudonym's stand-in connection point and its meter are named by its own record
(``registry.keeper.put_pseudonym``), not by cp / meter index entries: two state keys fewer
for each of a privacy day's ~2,880 pseudonyms (issue 19, privacy mode's cost). The lookups,
the rules and retirement behave as with the indexes."""

from __future__ import annotations

import pytest

from gridledger.crypto.sig import SigningKey
from gridledger.ledger.app import Application
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.errors import CpHasMeter, CpTaken, MeterKeyRegistered
from gridledger.ledger.modules.registry.types import MAX_CP_LEN, pseudonym_address, pseudonym_cp
from gridledger.ledger.state import State
from gridledger.sim.keys import sim_key
from tests.conftest import make_chain

PS, READING = sim_key(3, "pseudonym", 1), sim_key(3, "reading", 1)
CP = pseudonym_cp(PS.address)


def _register(state: State, ps: SigningKey = PS, reading: SigningKey = READING,
              cp: str = CP) -> None:
    keeper.put_pseudonym(state, ps.address, ps.alg, ps.public_key.raw, cp, (7, 7),
                         reading.address, reading.alg, reading.public_key.raw)


def test_a_pseudonyms_cp_names_its_whole_address() -> None:
    for i in range(50):
        addr = sim_key(3, "pseudonym", 100 + i).address
        cp = pseudonym_cp(addr)
        assert len(cp) <= MAX_CP_LEN and pseudonym_address(cp) == addr


def test_a_pseudonyms_cp_and_meter_resolve_through_its_record() -> None:
    state = Application(make_chain().genesis).state
    before = set(state.keys_with_prefix(b""))
    _register(state)
    assert set(state.keys_with_prefix(b"")) - before == {keeper.P + PS.address,
                                                         keeper.P + READING.address}
    assert keeper.cp_holder(state, CP) == PS.address
    assert keeper.meter_of_cp(state, CP) == READING.address
    p = keeper.participant(state, PS.address)
    assert p is not None and p.cp == CP and p.meter == READING.address
    assert p.valid_slots == (7, 7) and "pseudonym" in p.roles
    m = keeper.participant(state, READING.address)
    assert m is not None and m.roles == ("meter",) and m.meter_of == CP
    # a cp naming no registered pseudonym, or not in the canonical form, has no holder
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(CP[-1])
    non_canonical = CP[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
        last ^ 1]                          # the last character's two unused bits
    assert pseudonym_address(non_canonical) is None
    for other in (pseudonym_cp(bytes(32)), CP[:-1], CP + "A", "ps:" + PS.address.hex(),
                  "ps:" + "*" * 43, non_canonical, CP.replace("ps:", "pz:")):
        assert keeper.cp_holder(state, other) is None
        assert keeper.meter_of_cp(state, other) is None
    # retirement forgets both identities; nothing else was there to forget
    assert keeper.retire_pseudonym(state, PS.address)
    assert set(state.keys_with_prefix(b"")) == before
    assert keeper.cp_holder(state, CP) is None and keeper.meter_of_cp(state, CP) is None


def test_put_pseudonym_keeps_the_registry_rules() -> None:
    c = make_chain()
    state = Application(c.genesis).state
    # a participant that took the cp through the index first keeps it
    keeper.put_participant(state, c.users[1].address, {
        "alg": "ml-dsa-44", "pk": b"k", "roles": ["consumer"], "cp": CP, "name": ""})
    with pytest.raises(CpTaken):
        _register(state)
    state = Application(c.genesis).state
    m = sim_key(3, "meter", 9)
    keeper.put_meter(state, m.address, m.alg, m.public_key.raw, CP)
    with pytest.raises(CpHasMeter):
        _register(state)
    state = Application(c.genesis).state
    _register(state)
    other = sim_key(3, "pseudonym", 2)
    with pytest.raises(MeterKeyRegistered):   # the same reading key for another pseudonym
        _register(state, ps=other, cp=pseudonym_cp(other.address))
    with pytest.raises(CpHasMeter):           # a second meter for this pseudonym's cp
        keeper.put_meter(state, m.address, m.alg, m.public_key.raw, CP)
    with pytest.raises(ValueError):           # a cp that is not the pseudonym's own
        _register(state, ps=other, reading=sim_key(3, "reading", 2), cp=CP)
    with pytest.raises(ValueError):
        _register(state, ps=other, reading=sim_key(3, "reading", 2),
                  cp="ps:" + other.address.hex()[:40])
