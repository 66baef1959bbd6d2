"""The disputes module object."""

from __future__ import annotations

from gridledger.ledger.modules import Module
from gridledger.ledger.modules.disputes.handlers import handle_claim
from gridledger.ledger.modules.disputes.invariants import decisions_valid

MODULE = Module(
    name="disputes",
    version=1,
    handlers={"disputes/claim": handle_claim},
    roles={"disputes/claim": frozenset({"prosumer", "consumer"})},
    invariants=(decisions_valid,),
)
