"""The bank module: ``build(registry) -> Module`` (wired in ``ledger/modules/catalog.py``)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.bank.errors import RULES
from gridledger.ledger.modules.bank.expected import Registry
from gridledger.ledger.modules.bank.handlers import Handlers, init_genesis
from gridledger.ledger.modules.bank.invariants import INVARIANTS
from gridledger.ledger.modules.bank.types import TRANSFER, parse_transfer
from gridledger.ledger.modules.bank.views import VIEWS

NAME = "bank"
VERSION = 1


def build(registry: Registry) -> Module:
    """The bank module wired to ``registry`` (who may hold money)."""
    h = Handlers(registry)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(TRANSFER, parse_transfer, h.transfer),),
        rules=RULES,
        init_genesis=init_genesis,
        invariants=INVARIANTS,
        views=VIEWS,
    )
