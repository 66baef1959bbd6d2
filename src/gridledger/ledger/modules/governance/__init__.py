"""Governance: the chain's parameters (written at genesis) and validator-set changes by vote.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.governance.keeper import grid_account, load_params
from gridledger.ledger.modules.governance.module import build
from gridledger.ledger.params import Params

__all__ = ["Params", "build", "grid_account", "load_params"]
