"""The reputation module object."""

from __future__ import annotations

from gridledger.ledger.context import TxContext
from gridledger.ledger.modules import Module
from gridledger.ledger.modules.reputation import keeper
from gridledger.ledger.state import State
from gridledger.ledger.modules.reputation.handlers import handle_appeal, handle_approve_appeal
from gridledger.ledger.modules.reputation.invariants import score_range

_PARTICIPANTS = frozenset({"prosumer", "consumer", "dso", "validator", "trustee", "vendor",
                           "aggregator"})


def on_rejected(state: State, ctx: TxContext, rule: str) -> None:
    """A transaction that passed authentication but failed in execution costs reputation."""
    from gridledger.ledger.modules.governance.keeper import load_params
    from gridledger.ledger.modules.registry.keeper import get_participant

    p = get_participant(state, ctx.sender)
    if p is None or "validator" in p["roles"]:
        return
    keeper.record_rejected(state, ctx.sender, ctx.block.slot_time // load_params(state).slot_seconds)


MODULE = Module(
    name="reputation",
    version=1,
    handlers={"reputation/appeal": handle_appeal,
              "reputation/approve_appeal": handle_approve_appeal},
    roles={"reputation/appeal": _PARTICIPANTS,
           "reputation/approve_appeal": frozenset({"validator"})},
    invariants=(score_range,),
    on_rejected=on_rejected,
)
