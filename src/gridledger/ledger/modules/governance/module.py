"""The governance module object."""

from __future__ import annotations

from gridledger.ledger.modules import Module
from gridledger.ledger.modules.governance.handlers import init_genesis
from gridledger.ledger.modules.governance.invariants import params_valid

MODULE = Module(
    name="governance",
    version=1,
    handlers={},
    init_genesis=init_genesis,
    invariants=(params_valid,),
)
