"""Stateless body validation helpers: every failure is ``InvalidBody`` naming the field."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvalidBody

MAX_INT = 2**62


def require_int(body: dict[str, Any], name: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    v = body.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidBody(f"field {name!r} must be an integer")
    if not minimum <= v <= maximum:
        raise InvalidBody(f"field {name!r} = {v} outside [{minimum}, {maximum}]")
    return v


def require_addr(body: dict[str, Any], name: str) -> bytes:
    v = body.get(name)
    if not isinstance(v, bytes) or len(v) != 32:
        raise InvalidBody(f"field {name!r} must be a 32-byte address")
    return v


def require_bytes(body: dict[str, Any], name: str, max_len: int = 4096, exact: int | None = None) -> bytes:
    v = body.get(name)
    if not isinstance(v, bytes):
        raise InvalidBody(f"field {name!r} must be bytes")
    if exact is not None and len(v) != exact:
        raise InvalidBody(f"field {name!r} must be {exact} bytes")
    if len(v) > max_len:
        raise InvalidBody(f"field {name!r} longer than {max_len} bytes")
    return v


def require_str(body: dict[str, Any], name: str, choices: tuple[str, ...] | None = None,
                max_len: int = 128) -> str:
    v = body.get(name)
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise InvalidBody(f"field {name!r} must be a non-empty string of at most {max_len} chars")
    if choices is not None and v not in choices:
        raise InvalidBody(f"field {name!r} must be one of {', '.join(choices)}")
    return v
