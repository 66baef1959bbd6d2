"""The validator-set hash a block header carries."""

from __future__ import annotations

from collections.abc import Sequence

from gridledger.crypto.hashing import tagged_hash
from gridledger.ledger import codec


def keys_hash(keys: Sequence[tuple[str, bytes]]) -> bytes:
    """The hash a block header carries for the validator set ``keys`` ((alg, pk) in vote
    index order)."""
    return tagged_hash("gl/valset", codec.encode([[a, pk] for a, pk in keys]))
