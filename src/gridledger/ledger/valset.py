"""The validator-set hash a block header carries, and the rules about the set."""

from __future__ import annotations

from collections.abc import Sequence

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import InvalidBody
from gridledger.ledger import codec


def keys_hash(keys: Sequence[tuple[str, bytes]]) -> bytes:
    """The hash a block header carries for the validator set ``keys`` ((alg, pk) in vote
    index order)."""
    return tagged_hash("gl/valset", codec.encode([[a, pk] for a, pk in keys]))


# Rules about the validator set. The set lives in the registry and changes by governance
# vote; both raise these, so they sit in the core beside the set's hash (the registry
# declares them in the rule registry).

class ValidatorExists(InvalidBody):
    """The key is (or is about to be) in the validator set, or another validator uses it."""

    rule = "validator-exists"


class KeyRegistered(InvalidBody):
    """The key's address belongs to another (rotated, meter) identity."""

    rule = "key-registered"


class UnknownValidator(InvalidBody):
    """The address is not in the active validator set (or is already being removed)."""

    rule = "unknown-validator"


class LastValidator(InvalidBody):
    """The change would leave the chain without a validator."""

    rule = "last-validator"


VALSET_RULES = (ValidatorExists, KeyRegistered, UnknownValidator, LastValidator)
