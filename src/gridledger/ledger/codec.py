"""Canonical CBOR (RFC 8949 §4.2.1, core deterministic encoding) for everything signed or hashed.

Consensus data is restricted to integers, byte strings, text, booleans, None, lists and
maps with text keys: floats are refused so no platform-dependent rounding can enter state.
"""

from __future__ import annotations

from typing import Any

import cbor2

from gridledger.errors import MalformedEncoding

MAX_DEPTH = 16


def encode(obj: Any) -> bytes:
    """Deterministic CBOR bytes of ``obj``: ``cbor2.dumps(obj, canonical=True)``, byte for
    byte.

    Canonical encoding differs from plain only in sorting map keys (and in how floats and
    sets are written): for an object of only integers, text, bytes, booleans, None, lists,
    tuples and maps with text keys, the plain encoding of it with every map in canonical
    key order is the canonical encoding. Such objects (every record and event) are put in
    that order (a map whose keys come in it already is used as it is) and encoded plainly:
    canonical encoding writes each key and value to bytes of their own before sorting,
    2-4x the plain cost for a record (issue 17); anything else is encoded canonically."""
    if type(obj) is int:
        return cbor2.dumps(obj)
    try:
        plain = _in_key_order(obj)
    except (_Other, RecursionError):
        return cbor2.dumps(obj, canonical=True)
    return cbor2.dumps(plain)


class _Other(Exception):
    """The object holds something ``_in_key_order`` leaves to canonical encoding."""


_SCALARS = frozenset({int, str, bytes, bool, type(None)})
_ORDERS: dict[tuple[Any, ...], tuple[str, ...] | None] = {}
_ORDERS_MAX = 4096
"""Key tuples (of maps up to 32 keys) and their canonical order (None: in order already)."""


def _key_order(keys: tuple[Any, ...]) -> tuple[str, ...] | None:
    """None if the text keys ``keys`` come in canonical order (shorter UTF-8 first, then
    bytewise), else that order; ``_Other`` for a key that is not text."""
    if not all(type(k) is str for k in keys):
        raise _Other
    order = tuple(sorted(keys, key=lambda k: (len(k.encode()), k.encode())))
    return None if order == keys else order


def _in_key_order(obj: Any) -> Any:
    """``obj`` with every map's keys in canonical order: ``obj`` itself where they are
    (a new list / map only along the path to one that is not); ``_Other`` if it holds a
    type outside the plain-encoding set (a float, a set, a subclass, a non-text key)."""
    t = type(obj)
    if t is dict:
        keys = tuple(obj)
        try:
            order = _ORDERS[keys]
        except KeyError:
            order = _key_order(keys)
            if len(keys) <= 32:
                if len(_ORDERS) >= _ORDERS_MAX:
                    _ORDERS.clear()
                _ORDERS[keys] = order
        changed: dict[str, Any] | None = None
        for k, v in obj.items():
            if type(v) in _SCALARS:
                continue
            w = _in_key_order(v)
            if w is not v:
                if changed is None:
                    changed = {}
                changed[k] = w
        if changed is None:
            return obj if order is None else {k: obj[k] for k in order}
        return {k: changed[k] if k in changed else obj[k]
                for k in (keys if order is None else order)}
    if t is list or t is tuple:
        out: list[Any] | None = None
        for i, v in enumerate(obj):
            if type(v) in _SCALARS:
                continue
            w = _in_key_order(v)
            if w is not v:
                if out is None:
                    out = list(obj)
                out[i] = w
        return obj if out is None else out
    if t in _SCALARS:
        return obj
    raise _Other


_PLAIN = frozenset({int, bytes, str, bool, type(None)})
"""Types for which ``_check`` returns True at any depth up to ``MAX_DEPTH`` (exactly these
types, no subclass): a list's or map's member of one of them is not visited."""
_NOTHING: frozenset[type] = frozenset()


def _check(obj: Any, depth: int) -> bool:
    """Raise for what consensus data may not hold; return whether every map's keys come in
    canonical order (shorter UTF-8 first, then bytewise: cbor2's ``canonical=True``).

    A member of a list or map whose type is in ``_PLAIN`` is passed over where the call on
    it would return True (its depth within ``MAX_DEPTH``): the same result and the same
    first error, without a Python call per integer, byte string or text of a transaction
    (~250k calls in a replayed default day; issue 17, fifteenth session)."""
    if depth > MAX_DEPTH:
        raise MalformedEncoding(f"nesting deeper than {MAX_DEPTH}")
    if obj is None or isinstance(obj, (bool, int, bytes, str)):
        return True
    if isinstance(obj, float):
        raise MalformedEncoding("floats are not allowed in consensus data (use integers)")
    ordered = True
    plain = _PLAIN if depth < MAX_DEPTH else _NOTHING
    if isinstance(obj, list):
        for x in obj:
            if type(x) not in plain:
                ordered = _check(x, depth + 1) and ordered
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
            if type(v) not in plain:
                ordered = _check(v, depth + 1) and ordered
        return ordered
    raise MalformedEncoding(f"type {type(obj).__name__} is not allowed in consensus data")


def decode(data: bytes) -> Any:
    """Decode canonical CBOR; reject anything that would not re-encode to the same bytes.

    The bytes are canonical exactly when every decoded map kept its keys in canonical
    order and the plain encoding of the result gives them back (canonical encoding differs
    from plain only in sorting map keys; a decoded map keeps the order it was written in):
    that is the same test as ``encode(obj) == data``, at half the encoding cost (checking
    transactions and blocks was ~3 % of a replay; issue 17). Errors keep their precedence:
    what ``_check`` refuses is named before "not canonical"."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:
        raise MalformedEncoding(f"not valid CBOR: {exc}") from exc
    if not _check(obj, 0) or cbor2.dumps(obj) != data:
        raise MalformedEncoding("not canonical CBOR (RFC 8949 §4.2.1)")
    return obj
