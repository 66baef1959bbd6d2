"""Stateless body validation helpers for ``parse_<kind>`` functions.

Every failure is ``InvalidBody`` (rule ``invalid-body``) naming the field: a body whose
fields are missing, mistyped, out of range or too long. Rules about what the body *means*
(``gate-closed``, ``transfer-to-self`` ...) are the modules' own. Details never echo a
huge value: they go into receipts, which every validator hashes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gridledger.crypto.sig import check_alg
from gridledger.errors import InvalidBody

MAX_INT = 2**62
MAX_KEY_BYTES = 4096
"""Longest public key a body may carry (ML-DSA-87: 2,592 bytes)."""
MAX_SIG_BYTES = 8192
"""Longest signature a body may carry (ML-DSA-87: 4,627 bytes)."""


def _show(v: int) -> str:
    return str(v) if abs(v) < 10**20 else f"{'-' if v < 0 else ''}<{v.bit_length()}-bit integer>"


def require_fields(body: dict[str, Any], kind: str, names: Collection[str],
                   optional: Collection[str] = ()) -> None:
    """The body has every field of ``names``, maybe some of ``optional``, and nothing else."""
    have = set(body)
    if not set(names) <= have or not have <= set(names) | set(optional):
        extra = f" (optional: {', '.join(sorted(optional))})" if optional else ""
        raise InvalidBody(f"{kind} has exactly the fields {', '.join(sorted(names))}{extra}")


def require_int(body: dict[str, Any], name: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    v = body.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidBody(f"field {name!r} must be an integer")
    if not minimum <= v <= maximum:
        raise InvalidBody(f"field {name!r} = {_show(v)} outside [{minimum}, {maximum}]")
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


def require_alg(body: dict[str, Any], name: str) -> str:
    """A signature-algorithm name: ML-DSA, or the rule ``classical-key`` /
    ``unknown-algorithm`` (never a crypto error: an unknown name is bad input)."""
    alg = require_str(body, name)
    check_alg(alg)
    return alg


def require_key(body: dict[str, Any], name: str) -> bytes:
    """Public-key bytes (length is checked when the key is used: a wrong length never
    verifies)."""
    return require_bytes(body, name, max_len=MAX_KEY_BYTES)


def require_sig(body: dict[str, Any], name: str) -> bytes:
    """Signature bytes (as ``require_key``)."""
    return require_bytes(body, name, max_len=MAX_SIG_BYTES)
