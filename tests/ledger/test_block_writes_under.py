"""``State.block_writes_under`` and ``State.wrote_under`` (issue 17, fifteenth session): the
block's writes under some prefixes, found by bisection in the written keys sorted once per
block, equal the filter of ``block_writes`` by ``startswith`` — same keys, same old values,
same order — whatever the journal did (nested transactions, rollbacks, deletes, keys written
twice, prefixes that overlap, the empty prefix, prefixes ending in 0xff)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.state import State

_KEY = st.binary(min_size=0, max_size=3).map(lambda b: b"k" + b)
_PREFIX = st.one_of(st.just(b""), st.binary(min_size=1, max_size=3),
                    st.binary(min_size=0, max_size=2).map(lambda b: b"k" + b),
                    st.just(b"k\xff"), st.just(b"\xff\xff"))
_OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), _KEY, st.binary(min_size=1, max_size=2)),
    st.tuples(st.just("delete"), _KEY, st.just(b"")),
    st.tuples(st.sampled_from(["begin", "commit", "rollback"]), st.just(b""), st.just(b"")),
    st.tuples(st.just("ask"), st.just(b""), st.just(b"")),
), max_size=60)


def _old_rule(state: State, prefixes: tuple[bytes, ...]) -> Any:
    writes = state.block_writes()
    if writes is None:
        return None
    return [(k, v) for k, v in writes.items() if k.startswith(prefixes)]


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, asks=st.lists(st.lists(_PREFIX, max_size=4).map(tuple), min_size=1,
                               max_size=4))
def test_the_writes_under_prefixes_equal_the_filtered_block_writes(
        ops: list[tuple[str, bytes, bytes]], asks: list[tuple[bytes, ...]]) -> None:
    s = State({b"k\x00": b"a", b"k\x01\x02": b"b", b"k\xff": b"c", b"z": b"d"})
    depth = 0

    def check() -> None:
        for prefixes in asks:
            want = _old_rule(s, prefixes)
            got = s.block_writes_under(prefixes)
            assert (None if got is None else list(got.items())) == want
            assert s.wrote_under(prefixes) == (None if want is None else bool(want))

    for op, key, value in ops:
        if op == "set":
            s.set(key, value)
        elif op == "delete":
            s.delete(key)
        elif op == "begin":
            s.begin()
            depth += 1
        elif op in ("commit", "rollback") and depth:
            s.commit() if op == "commit" else s.rollback()
            depth -= 1
        check()
    check()


def test_the_writes_under_are_a_copy_and_follow_new_writes() -> None:
    s = State({b"a/1": b"x"})
    assert s.block_writes_under((b"a/",)) is None and s.wrote_under((b"a/",)) is None
    s.begin()
    assert s.block_writes_under((b"a/",)) == {} and s.wrote_under((b"a/",)) is False
    s.set(b"b/1", b"y")
    s.set(b"a/2", b"z")
    s.set(b"a/1", b"w")
    got = s.block_writes_under((b"a/",))
    assert list(got or {}) == [b"a/2", b"a/1"]      # the order the block first wrote them
    assert got == {b"a/2": None, b"a/1": b"x"}
    (got or {}).clear()                              # the caller's copy: the state keeps its own
    assert s.block_writes_under((b"a/",)) == {b"a/2": None, b"a/1": b"x"}
    s.begin()
    s.delete(b"a/2")                                 # written again: still first at its place
    s.set(b"c/1", b"v")
    assert s.wrote_under((b"c/",)) is True
    s.rollback()
    assert s.wrote_under((b"c/",)) is False          # rolled back: not a block write
    assert s.block_writes_under((b"a/", b"b/", b"a/1")) == {b"b/1": None, b"a/2": None,
                                                            b"a/1": b"x"}
    s.commit()
    assert s.block_writes_under((b"",)) is None
