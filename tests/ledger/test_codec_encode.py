"""Issue 17: ``codec.encode`` encodes plainly what has every map in canonical key order —
byte for byte the canonical encoding (``cbor2.dumps(obj, canonical=True)``), for any
object, whatever it holds."""

from __future__ import annotations

from collections import OrderedDict

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger import codec

_keys = st.text(alphabet=st.sampled_from("ab\u00e9\u4e2d\U0001f600z"), max_size=26)
_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.binary(max_size=30)
            | st.text(max_size=30))
_values = st.recursive(
    _scalars | st.floats(allow_nan=False) | st.frozensets(st.integers(0, 9), max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.lists(st.tuples(_keys | st.integers(0, 3) | st.binary(max_size=2), inner),
               max_size=5).map(lambda pairs: dict(pairs)),
    max_leaves=25)
_plain_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.lists(st.tuples(_keys, inner), max_size=5).map(lambda pairs: dict(pairs)),
    max_leaves=25)


@settings(max_examples=2000, deadline=None)
@given(_values)
def test_encode_is_the_canonical_encoding(value):
    assert codec.encode(value) == cbor2.dumps(value, canonical=True)


@settings(max_examples=1000, deadline=None)
@given(_plain_values)
def test_encode_of_plain_values_is_canonical_and_leaves_them_unchanged(value):
    before = cbor2.dumps(value)
    assert codec.encode(value) == cbor2.dumps(value, canonical=True)
    assert cbor2.dumps(value) == before          # the caller's maps keep their order


def test_what_is_left_to_canonical_encoding() -> None:
    cases = [1.5, {"b": 1.5, "a": 0}, {"b": {1, 2}}, {2: "x", 1: "y"}, {b"k": 1, "a": 2},
             OrderedDict([("bb", 1), ("a", 2)]), [True, {"cc": None, "a": [1, {"zz": 2.0}]}],
             {"x": -2**70, "": 2**64}, (), {}, "", b"", 0, -1, 2**64]
    for obj in cases:
        assert codec.encode(obj) == cbor2.dumps(obj, canonical=True), obj


def test_deep_nesting_falls_back_to_canonical_encoding() -> None:
    # deeper than Python's recursion limit (the walk gives up), not than cbor2's C encoder
    # (which crashes the interpreter near 5,000 levels, canonical or not: consensus data
    # is decoded at most ``codec.MAX_DEPTH`` deep)
    deep: object = 1
    for _ in range(1500):
        deep = [{"k": deep}]
    try:
        want: bytes | type[Exception] = cbor2.dumps(deep, canonical=True)
    except Exception as exc:   # the canonical encoder's own limit
        want = type(exc)
    try:
        got: bytes | type[Exception] = codec.encode(deep)
    except Exception as exc:
        got = type(exc)
    assert got == want
