"""Issue 17: stored records are decoded once per distinct bytes (``Record.from_stored``),
and the memo is a pure function of the bytes: equal to ``from_obj``, bounded, and unmoved by
a rolled-back write."""

from __future__ import annotations

from dataclasses import dataclass

import cbor2
import pytest

from gridledger.ledger import record as record_mod
from gridledger.ledger.modules.metering import keeper as metering
from gridledger.ledger.modules.metering.types import Reading
from gridledger.ledger.record import Record, optional, read, read_prefix
from gridledger.ledger.state import State


@dataclass(frozen=True)
class Pair(Record):
    a: int
    b: tuple[bytes, ...]
    c: str | None = optional()


@dataclass(frozen=True)
class Other(Record):
    a: int
    b: tuple[bytes, ...]
    c: str | None = optional()


def test_from_stored_equals_from_obj_and_is_shared() -> None:
    rec = Pair(3, (b"x", b"y"), "z")
    raw = rec.encode()
    got = Pair.from_stored(raw)
    assert got == Pair.from_obj(cbor2.loads(raw)) == rec
    assert Pair.from_stored(bytes(bytearray(raw))) is got   # equal bytes, one record
    assert type(Other.from_stored(raw)) is Other             # keyed by class too
    assert Pair.from_stored(Pair(4, ()).encode()) == Pair(4, ())


def test_from_stored_refuses_what_from_obj_refuses_and_remembers_nothing() -> None:
    raw = cbor2.dumps({"a": 1, "b": [], "d": 0}, canonical=True)
    for _ in range(2):
        with pytest.raises(ValueError):
            Pair.from_stored(raw)
    assert (Pair, raw) not in record_mod._STORED


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridledger.memo import Memo

    monkeypatch.setattr(record_mod, "_STORED", Memo(8))
    for i in range(50):
        assert Pair.from_stored(Pair(i, ()).encode()).a == i
        assert len(record_mod._STORED) <= 16  # each generation within 8


def test_rollback_reads_the_old_record_again() -> None:
    s = State()
    s.set(b"p/1", Pair(1, (b"a",)).encode())
    s.set(b"p/2", Pair(2, ()).encode())
    assert read(s, b"p/1", Pair) == Pair(1, (b"a",))
    s.begin()
    s.set(b"p/1", Pair(5, ()).encode())
    s.delete(b"p/2")
    assert read(s, b"p/1", Pair) == Pair(5, ())
    assert read(s, b"p/2", Pair) is None
    assert read_prefix(s, b"p/", Pair) == [(b"1", Pair(5, ()))]
    s.rollback()
    assert read(s, b"p/1", Pair) == Pair(1, (b"a",))
    assert read_prefix(s, b"p/", Pair) == [(b"1", Pair(1, (b"a",))), (b"2", Pair(2, ()))]


def test_readings_decode_from_key_and_bytes() -> None:
    s = State()
    r = Reading(7, "cp-\u00e9", 10, 2, b"\x01" * 32, b"\x02" * 32)
    q = Reading(7, "cp-b", 0, 5, b"\x01" * 32, b"\x03" * 32, quarantine="unknown-firmware")
    for x in (r, q):
        metering.record_reading(s, x)
    assert metering.reading_of(s, 7, r.cp) == r
    assert metering.readings_for_slot(s, 7) == [q, r]    # cp byte order
    # the same stored bytes under another slot and cp are another reading
    s.set(metering.READING + metering.slot_key(8) + b"cp-c",
          s.get(metering.READING + metering.slot_key(7) + r.cp.encode()) or b"")
    assert metering.reading_of(s, 8, "cp-c") == Reading(8, "cp-c", 10, 2, r.firmware, r.meter)
    s.begin()
    metering.record_reading(s, Reading(9, "cp-d", 1, 1, b"", b""))
    s.rollback()
    assert metering.readings_for_slot(s, 9) == []
    assert metering.reading_of(s, 7, r.cp) == r


@dataclass(frozen=True)
class Leaf(Record):
    x: int
    tag: str | None = optional()


@dataclass(frozen=True)
class Tree(Record):
    name: str
    flag: bool
    raw: bytes
    leaves: tuple[Leaf, ...]
    ints: tuple[int, ...]
    nested: tuple[tuple[str, int], ...]
    one: Leaf | None = None
    maybe: int | None = optional()


def _reference_to_obj(rec: Record) -> dict:
    """``to_obj`` as it was: ``_plain`` of every field (tuples to lists, records to maps)."""
    def plain(v):  # type: ignore[no-untyped-def]
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return _reference_to_obj(v) if isinstance(v, Record) else v
    return {name: plain(getattr(rec, name)) for name, omit, _ in rec._fields()
            if not (omit and getattr(rec, name) is None)}


@pytest.mark.parametrize("rec", [
    Tree("a", True, b"\x00", (Leaf(1), Leaf(2, "t")), (1, 2), (("k", 1),), Leaf(3), 0),
    Tree("", False, b"", (), (), (), None, None),
    Tree("b", False, b"x", (Leaf(0, ""),), (-1,), (("", 0), ("z", 2**70)), None, 5),
])
def test_to_obj_is_every_field_made_plain(rec: Tree) -> None:
    obj = rec.to_obj()
    assert obj == _reference_to_obj(rec) and list(obj) == list(_reference_to_obj(rec))
    assert Tree.from_obj(obj) == rec and Tree.decode(rec.encode()) == rec
