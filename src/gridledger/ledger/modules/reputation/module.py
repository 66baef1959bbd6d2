"""The reputation module object."""

from __future__ import annotations

from gridledger.ledger.modules import Module
from gridledger.ledger.modules.reputation.handlers import handle_appeal, handle_approve_appeal
from gridledger.ledger.modules.reputation.invariants import score_range

_PARTICIPANTS = frozenset({"prosumer", "consumer", "dso", "validator", "trustee", "vendor",
                           "aggregator"})

MODULE = Module(
    name="reputation",
    version=1,
    handlers={"reputation/appeal": handle_appeal,
              "reputation/approve_appeal": handle_approve_appeal},
    roles={"reputation/appeal": _PARTICIPANTS,
           "reputation/approve_appeal": frozenset({"validator"})},
    invariants=(score_range,),
)
