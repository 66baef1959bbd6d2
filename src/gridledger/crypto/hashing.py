"""SHA3-256 hashing with domain separation tags."""

from __future__ import annotations

import hashlib


def sha3_256(data: bytes) -> bytes:
    """SHA3-256 (FIPS 202) digest of ``data``."""
    return hashlib.sha3_256(data).digest()


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    """SHA3-256 over a tag and length-prefixed parts.

    Length prefixes make the encoding injective, so ``("ab", "c")`` and ``("a", "bc")`` never
    collide; the tag keeps hashes of different object types apart.
    """
    h = hashlib.sha3_256()
    t = tag.encode()
    h.update(len(t).to_bytes(2, "big") + t)
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.digest()
