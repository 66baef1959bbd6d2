"""``codec._check`` passes over plain members (issue 17, fifteenth session): against the rule
as it was (every member visited), the same answer and the same first error on random decoded
structures — nesting around ``MAX_DEPTH``, floats, non-text keys, unordered maps, other
types and subclasses of the plain ones."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.errors import MalformedEncoding
from gridledger.ledger import codec


def _old_check(obj: Any, depth: int) -> bool:
    if depth > codec.MAX_DEPTH:
        raise MalformedEncoding(f"nesting deeper than {codec.MAX_DEPTH}")
    if obj is None or isinstance(obj, (bool, int, bytes, str)):
        return True
    if isinstance(obj, float):
        raise MalformedEncoding("floats are not allowed in consensus data (use integers)")
    ordered = True
    if isinstance(obj, list):
        for x in obj:
            ordered = _old_check(x, depth + 1) and ordered
        return ordered
    if isinstance(obj, dict):
        last: tuple[int, bytes] | None = None
        for k, v in obj.items():
            if not isinstance(k, str):
                raise MalformedEncoding("map keys must be text")
            raw = k.encode()
            here = (len(raw), raw)
            if last is not None and not last < here:
                ordered = False
            last = here
            ordered = _old_check(v, depth + 1) and ordered
        return ordered
    raise MalformedEncoding(f"type {type(obj).__name__} is not allowed in consensus data")


class _Int(int):
    pass


_LEAF = st.one_of(st.integers(), st.booleans(), st.none(), st.binary(max_size=3),
                  st.text(max_size=3), st.floats(allow_nan=False), st.builds(_Int, st.integers()),
                  st.just(cbor2.CBORTag(99, 1)), st.just(1j))
_TREE = st.recursive(_LEAF, lambda kids: st.one_of(
    st.lists(kids, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), kids, max_size=4)),
    max_leaves=40)


def _deep(obj: Any, n: int) -> Any:
    for _ in range(n):
        obj = [obj] if n % 2 else {"k": obj}
    return obj


def _outcome(fn: Any, obj: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(obj, 0)
    except MalformedEncoding as exc:
        return "err", str(exc)


@settings(max_examples=500, deadline=None)
@given(tree=_TREE, wrap=st.integers(0, codec.MAX_DEPTH + 2))
def test_check_answers_as_the_rule_that_visited_every_member(tree: Any, wrap: int) -> None:
    obj = _deep(tree, wrap)
    assert _outcome(codec._check, obj) == _outcome(_old_check, obj)


@pytest.mark.parametrize("n", range(codec.MAX_DEPTH - 2, codec.MAX_DEPTH + 3))
def test_a_plain_member_just_past_the_depth_bound_is_still_refused(n: int) -> None:
    for leaf in (1, b"x", "s", None, True):
        obj = _deep([leaf], n)
        assert _outcome(codec._check, obj) == _outcome(_old_check, obj)
        data = cbor2.dumps(obj)
        old = _outcome(_old_check, cbor2.loads(data))
        if old[0] == "err":
            with pytest.raises(MalformedEncoding, match="nesting deeper"):
                codec.decode(data)
        else:
            assert codec.decode(data) == obj
