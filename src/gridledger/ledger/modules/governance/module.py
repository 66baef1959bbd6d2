"""The governance module object."""

from __future__ import annotations

from gridledger.ledger.module import Module
from gridledger.ledger.modules.governance.keeper import valset_view
from gridledger.ledger.modules.governance.handlers import (
    end_block,
    handle_propose_add,
    handle_propose_remove,
    handle_vote,
    init_genesis,
)
from gridledger.ledger.modules.governance.invariants import params_valid, valset_proposals_valid

MODULE = Module(
    name="governance",
    version=2,
    # membership of the *active set* is checked in the handlers (rule not-validator), not
    # by role: a validator that was voted out loses the role only at activation
    handlers={"governance/propose_add_validator": handle_propose_add,
              "governance/propose_remove_validator": handle_propose_remove,
              "governance/vote_validator": handle_vote},
    init_genesis=init_genesis,
    end_block=end_block,
    invariants=(params_valid, valset_proposals_valid),
    views={"validators": lambda state, _arg: valset_view(state)},
)
