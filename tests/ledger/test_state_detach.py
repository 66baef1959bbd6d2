"""``State.detach`` / ``attach``: a block set aside while it waits for its certificate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger import state as state_module
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


ops = st.lists(st.tuples(st.sampled_from(["set", "delete", "root", "begin", "rollback",
                                          "commit", "detach-attach", "scan", "writes",
                                          "copy"]),
                         st.integers(0, 2999), st.binary(max_size=3)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_root_after_any_writes_equals_a_state_built_afresh(steps):
    """Buckets keep their sorted keys between roots (``FlatBucket``): after any mix of
    writes, deletions, nested transactions, rollbacks, detach/attach and roots in between,
    the root equals that of a state built from the same entries (1,500 keys in 64 buckets
    here — the commitment does not depend on the count —: buckets of ~25 entries, so
    insertions and deletions move keys inside a bucket). Entry hashes are computed at the
    next root, not at each write: the same root either way."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(state_module, "N_BUCKETS", 64)
        _writes_then_roots(steps)


def _writes_then_roots(steps: list[tuple[str, int, bytes]]) -> None:
    s = State({i.to_bytes(2, "big"): b"v" for i in range(0, 3000, 2)})
    s.root()
    depth = 0
    journal: list[tuple[bytes, bytes | None]] = []   # (key, value before), as block_writes
    marks: list[int] = []
    for op, k, v in steps:
        key = k.to_bytes(2, "big")
        if op == "set":
            journal.append((key, s.get(key)))
            s.set(key, v)
        elif op == "delete":
            if s.get(key) is not None:
                journal.append((key, s.get(key)))
            s.delete(key)
        elif op == "root":
            assert s.root() == State(dict(s.snapshot_items())).root()
        elif op == "scan":   # the sorted key index (keys added wait for the next scan)
            prefix = key[:1] if v else b""
            assert s.keys_with_prefix(prefix) == sorted(
                x for x, _ in s.snapshot_items() if x.startswith(prefix))
        elif op == "writes":  # asked twice in a row: built once, the same both times
            want: dict[bytes, bytes | None] | None = None
            if depth:
                want = {}
                for jk, old in journal[marks[0]:]:
                    want.setdefault(jk, old)
            assert s.block_writes() == want and s.block_writes() == want
        elif op == "begin":
            s.begin()
            marks.append(len(journal))
            depth += 1
        elif op in ("rollback", "commit") and depth:
            s.rollback() if op == "rollback" else s.commit()
            mark = marks.pop()
            if op == "rollback" or not marks:
                del journal[mark:]
            depth -= 1
        elif op == "copy":   # an independent state: same entries, root and scans
            c = s.copy()
            entries = dict(s.snapshot_items())
            assert dict(c.snapshot_items()) == entries and c.block_writes() is None
            assert c.root() == State(entries).root() and c.keys_with_prefix(b"") == sorted(entries)
            c.set(key, v + b"c")                  # writes to either leave the other as it was
            c.delete(bytes(2))
            if v:
                c.set(b"\xff\xff", b"new")
            assert c.root() == State(dict(c.snapshot_items())).root()
            assert dict(s.snapshot_items()) == entries
        elif op == "detach-attach" and depth == 1:
            if k % 2:
                s.root()   # or not: detach brings the pending writes' entries up itself
            d = s.detach()
            del journal[marks.pop():]
            depth = 0
            if v:
                s.root()           # a query between detach and attach
            s.attach(d)
    while depth:
        s.commit()
        depth -= 1
    assert s.root() == State(dict(s.snapshot_items())).root()


def test_a_query_between_detach_and_attach_leaves_later_roots_exact():
    """A root computed while the block is set aside rebuilds the touched buckets' trees for
    the committed state; attach must not then treat them as the block's (a later write to
    the same bucket would start from the wrong leaves)."""
    from gridledger.ledger.state import bucket_of

    base = {i.to_bytes(2, "big"): b"v" for i in range(3000)}
    a = (5000).to_bytes(2, "big")
    b = next(k for i in range(5001, 70000) if bucket_of(k := i.to_bytes(4, "big")) == bucket_of(a))
    s = State(base)
    s.root()
    s.begin()
    s.set(a, b"block")
    s.root()
    d = s.detach()
    s.root()                       # a query of the committed state
    s.attach(d)
    s.set(b, b"later")             # the same bucket, after the block
    assert s.root() == State({**base, a: b"block", b: b"later"}).root()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=4), max_size=40), st.binary(max_size=3))
def test_a_prefix_scan_returns_exactly_the_keys_that_start_with_it(stored, prefix):
    """``keys_with_prefix`` reads a range of the sorted index (up to ``prefix_end``): the
    same keys as testing each one, prefixes ending in 0xff and the empty prefix included."""
    s = State(dict.fromkeys(stored, b"v"))
    s.set(prefix + b"\xff", b"w")
    s.set(prefix, b"w")
    want = sorted(k for k, _ in s.snapshot_items() if k.startswith(prefix))
    assert s.keys_with_prefix(prefix) == want
    assert s.keys_with_prefix(b"\xff" + prefix) == sorted(
        k for k, _ in s.snapshot_items() if k.startswith(b"\xff" + prefix))
