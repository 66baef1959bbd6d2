"""The reputation module: ``build(registry) -> Module`` (wired in the catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.reputation.errors import RULES
from gridledger.ledger.modules.reputation.expected import Registry
from gridledger.ledger.modules.reputation.handlers import Handlers
from gridledger.ledger.modules.reputation.invariants import INVARIANTS
from gridledger.ledger.modules.reputation.types import (
    APPEAL,
    APPROVE_APPEAL,
    parse_appeal,
    parse_approve_appeal,
)
from gridledger.ledger.modules.reputation.views import VIEWS

NAME = "reputation"
VERSION = 1
PARTICIPANTS = frozenset({"prosumer", "consumer", "dso", "validator", "trustee", "vendor",
                          "aggregator"})


def build(registry: Registry) -> Module:
    """Reputation wired to ``registry`` (who is a validator, exempt from the charge for
    rejected transactions)."""
    h = Handlers(registry)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(APPEAL, parse_appeal, h.appeal, PARTICIPANTS),
                  MsgKind(APPROVE_APPEAL, parse_approve_appeal, h.approve_appeal,
                          frozenset({"validator"}))),
        rules=RULES,
        invariants=INVARIANTS,
        on_rejected=h.on_rejected,
        views=VIEWS,
    )
