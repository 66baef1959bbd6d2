"""Governance (minimal): the chain's parameter store.

State
  ``gov/params``   the non-default parameters, set at genesis from ``genesis["params"]``
                   (see ``types.Params`` for names and defaults); absent when all are default
Messages
  none yet: parameter changes, validator-set changes and the firmware registry go through
  governance votes, which are not implemented in this module yet.
Events
  none
Invariants
  params-valid: the stored parameters parse and pass the cross-parameter rules.
"""

from gridledger.ledger.modules.governance.keeper import grid_account, load_params
from gridledger.ledger.modules.governance.module import MODULE
from gridledger.ledger.modules.governance.types import Params

__all__ = ["MODULE", "Params", "grid_account", "load_params"]
