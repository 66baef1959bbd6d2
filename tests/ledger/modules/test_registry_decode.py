"""A participant record the registry writes is remembered as its bytes' decoding: that must
be exactly what decoding the stored bytes gives (``registry.keeper._write``)."""

from __future__ import annotations

import cbor2

from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.types import Participant, pseudonym_cp
from gridledger.ledger.state import State


def _fresh(state: State, addr: bytes) -> Participant:
    raw = state.get(keeper.P + addr)
    assert raw is not None
    return Participant.from_obj(cbor2.loads(raw))


def test_written_records_read_back_as_their_bytes_decode() -> None:
    state = State()
    ps, reading = b"\x01" * 20, b"\x02" * 20
    # as privacy registration writes a pseudonym and its reading key's meter identity
    keeper.put_participant(state, ps, {
        "alg": "ml-dsa-44", "pk": b"k" * 8, "roles": ["consumer", "prosumer", "pseudonym"],
        "cp": "ps:01", "name": "", "status": "active", "valid_slots": [3, 3]})
    keeper.put_meter(state, reading, "ml-dsa-44", b"r" * 8, "ps:01")
    for addr in (ps, reading):
        got = keeper.participant(state, addr)
        assert got == _fresh(state, addr)
        assert got is not None and isinstance(got.roles, tuple)
    assert keeper.participant(state, reading).roles == ("meter",)  # type: ignore[union-attr]
    assert keeper.participant(state, ps).valid_slots == (3, 3)     # type: ignore[union-attr]
    # as privacy registration writes them now: the pseudonym's record names its meter
    ps2, reading2 = b"\x04" * 32, b"\x05" * 32
    keeper.put_pseudonym(state, ps2, "ml-dsa-44", b"p" * 8, pseudonym_cp(ps2), (4, 4),
                         reading2, "ml-dsa-44", b"q" * 8)
    for addr in (ps2, reading2):
        got = keeper.participant(state, addr)
        assert got == _fresh(state, addr)
        assert got is not None and isinstance(got.roles, tuple)
    assert keeper.participant(state, ps2).meter == reading2        # type: ignore[union-attr]
    # a record passed as built (not from from_obj) is decoded from its bytes when read
    other = b"\x03" * 20
    keeper.put_participant(state, other, Participant("ml-dsa-44", b"o" * 8, ("consumer",),
                                                     "cp-9", "x"))
    assert keeper.participant(state, other) == _fresh(state, other)
