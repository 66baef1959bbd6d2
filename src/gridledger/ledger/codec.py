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


def _check(obj: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MalformedEncoding(f"nesting deeper than {MAX_DEPTH}")
    if obj is None or isinstance(obj, (bool, int, bytes, str)):
        return
    if isinstance(obj, float):
        raise MalformedEncoding("floats are not allowed in consensus data (use integers)")
    if isinstance(obj, list):
        for x in obj:
            _check(x, depth + 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise MalformedEncoding("map keys must be text")
            _check(v, depth + 1)
        return
    raise MalformedEncoding(f"type {type(obj).__name__} is not allowed in consensus data")


def decode(data: bytes) -> Any:
    """Decode canonical CBOR; reject anything that would not re-encode to the same bytes."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:
        raise MalformedEncoding(f"not valid CBOR: {exc}") from exc
    _check(obj, 0)
    if encode(obj) != data:
        raise MalformedEncoding("not canonical CBOR (RFC 8949 §4.2.1)")
    return obj
