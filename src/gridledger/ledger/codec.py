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
    """Deterministic CBOR bytes of ``obj``."""
    return cbor2.dumps(obj, canonical=True)


def _check(obj: Any, depth: int) -> bool:
    """Raise for what consensus data may not hold; return whether every map's keys come in
    canonical order (shorter UTF-8 first, then bytewise: cbor2's ``canonical=True``)."""
    if depth > MAX_DEPTH:
        raise MalformedEncoding(f"nesting deeper than {MAX_DEPTH}")
    if obj is None or isinstance(obj, (bool, int, bytes, str)):
        return True
    if isinstance(obj, float):
        raise MalformedEncoding("floats are not allowed in consensus data (use integers)")
    ordered = True
    if isinstance(obj, list):
        for x in obj:
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
