"""The governance module: ``build(valset) -> Module`` (wired in the catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.governance import views
from gridledger.ledger.modules.governance.errors import RULES
from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.modules.governance.handlers import Handlers, init_genesis
from gridledger.ledger.modules.governance.invariants import params_valid, valset_proposals_valid
from gridledger.ledger.modules.governance.types import (
    PROPOSE_ADD,
    PROPOSE_REMOVE,
    VOTE,
    parse_propose_add,
    parse_propose_remove,
    parse_vote_validator,
)

NAME = "governance"
VERSION = 2


def build(valset: ValidatorSet) -> Module:
    """Governance wired to ``valset`` (the registry's validator set). Membership of the
    *active set* is checked in the handlers (rule ``not-validator``), not by role: a
    validator that was voted out loses the role only at activation."""
    h = Handlers(valset)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(PROPOSE_ADD, parse_propose_add, h.propose_add),
                  MsgKind(PROPOSE_REMOVE, parse_propose_remove, h.propose_remove),
                  MsgKind(VOTE, parse_vote_validator, h.vote)),
        rules=RULES,
        init_genesis=init_genesis,
        end_block=h.end_block,
        invariants=(params_valid, valset_proposals_valid(valset)),
        views={"validators": lambda state, _arg: views.validators(state, valset),
               "params": lambda state, _arg: views.params(state)},
    )
