"""The metering module: ``build(registry, reputation, firmware) -> Module`` (wired in the
catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.metering.errors import RULES
from gridledger.ledger.modules.metering.expected import Firmware, Registry, Reputation
from gridledger.ledger.modules.metering.handlers import Handlers
from gridledger.ledger.modules.metering.invariants import make_invariants
from gridledger.ledger.modules.metering.types import FLAG, READING, parse_flag, parse_reading
from gridledger.ledger.modules.metering.views import VIEWS

NAME = "metering"
VERSION = 1


def build(registry: Registry, reputation: Reputation, firmware: Firmware) -> Module:
    """Metering wired to ``registry`` (meters, cp holders), ``reputation`` (a flagged
    reading costs its holder) and ``firmware`` (each reading's attested firmware)."""
    h = Handlers(registry, reputation, firmware)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(READING, parse_reading, h.reading, frozenset({"meter"})),
                  MsgKind(FLAG, parse_flag, h.flag, frozenset({"dso"}))),
        rules=RULES,
        invariants=make_invariants(registry),
        views=VIEWS,
    )
