"""``State.detach`` / ``attach``: a block set aside while it waits for its certificate."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.state import State

keys = st.binary(min_size=1, max_size=3)
writes = st.lists(st.tuples(keys, st.one_of(st.none(), st.binary(max_size=4))), max_size=30)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, st.binary(max_size=4), max_size=30), writes, writes)
def test_detach_then_attach_equals_applying_in_place(base, block, meanwhile_reads):
    s = State(base)
    committed_root = s.root()
    s.begin()
    for k, v in block:
        s.delete(k) if v is None else s.set(k, v)
    pending_root = s.root()
    expected = dict(s.snapshot_items())
    d = s.detach()
    # set aside: the state is the committed one, root and all
    assert dict(s.snapshot_items()) == base and s.root() == committed_root
    for k, _ in meanwhile_reads:  # reads (and proofs) in between change nothing
        s.get(k)
    s.attach(d)
    assert dict(s.snapshot_items()) == expected
    assert s.root() == pending_root == State(expected).root()


def test_a_write_in_between_makes_attach_recompute_roots():
    s = State({b"a": b"1"})
    s.begin()
    s.set(b"b", b"2")
    d = s.detach()
    s.set(b"a", b"9")  # not how a node behaves, but attach must stay exact
    s.attach(d)
    assert s.root() == State({b"a": b"9", b"b": b"2"}).root()
