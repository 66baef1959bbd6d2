"""Governance types: validator-set change constants and proof-of-possession messages.

``Params`` (the chain parameters governance writes) live in the ledger core,
``gridledger.ledger.params``; they are re-exported here for modules not yet converted.
"""

from __future__ import annotations

from gridledger.ledger.params import MECHANISMS, PARAM_NAMES, Params, check_params, parse_params
from gridledger.ledger import codec

# -- validator-set changes ----------------------------------------------------------------
VALIDATOR_POP_CONTEXT = b"gl/validator-pop"
ACTIVATION_DELAY = 2
"""A change that passes in block h takes effect for block h + 2: it is applied to state at
the end of block h + 1, so the set that certifies block h + 2 (read from the state after
h + 1) is the new one. Every validator learns of the change from a certified block before
it matters, and a new validator can fetch block h + 1 from its peers before it votes."""
MAX_OPEN_PROPOSALS = 16
MAX_NAME_LEN = 64


def validator_pop_message(chain_id: str, name: str) -> bytes:
    """What a prospective validator's key signs (context ``gl/validator-pop``) to prove that
    its holder asks to validate this chain under this name (proof of possession)."""
    return codec.encode({"chain_id": chain_id, "name": name, "purpose": "validator"})


__all__ = ["ACTIVATION_DELAY", "MAX_NAME_LEN", "MAX_OPEN_PROPOSALS", "MECHANISMS", "PARAM_NAMES",
           "Params", "VALIDATOR_POP_CONTEXT", "check_params", "parse_params",
           "validator_pop_message"]
