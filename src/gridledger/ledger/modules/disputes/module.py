"""The disputes module: ``build(market, metering, registry, bank, reputation) -> Module``
(wired in the catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.disputes.errors import RULES
from gridledger.ledger.modules.disputes.expected import (
    Bank,
    Market,
    Metering,
    Registry,
    Reputation,
)
from gridledger.ledger.modules.disputes.handlers import Handlers
from gridledger.ledger.modules.disputes.invariants import INVARIANTS
from gridledger.ledger.modules.disputes.types import CLAIM, parse_claim
from gridledger.ledger.modules.disputes.views import VIEWS

NAME = "disputes"
VERSION = 1


def build(market: Market, metering: Metering, registry: Registry, bank: Bank,
          reputation: Reputation) -> Module:
    """Disputes wired to the trades (``market``), the evidence (``metering``, ``registry``),
    the fee (``bank``) and the sanction (``reputation``)."""
    h = Handlers(market, metering, registry, bank, reputation)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(CLAIM, parse_claim, h.claim, frozenset({"prosumer", "consumer"})),),
        rules=RULES,
        invariants=INVARIANTS,
        views=VIEWS,
    )
