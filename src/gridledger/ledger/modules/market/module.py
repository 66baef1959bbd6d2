"""The market module: ``build(bank, registry, reputation, metering) -> Module`` (wired in
the catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.market.errors import RULES
from gridledger.ledger.modules.market.expected import (
    Bank,
    Deps,
    Firmware,
    Metering,
    Registry,
    Reputation,
)
from gridledger.ledger.modules.market.handlers import Handlers
from gridledger.ledger.modules.market.hooks import make_end_block
from gridledger.ledger.modules.market.invariants import make_invariants
from gridledger.ledger.modules.market.types import (
    CANCEL,
    COMMIT,
    ENVELOPE,
    ORDER,
    REPLACE,
    REVEAL,
    parse_cancel,
    parse_commit,
    parse_envelope,
    parse_order,
    parse_replace,
    parse_reveal,
)
from gridledger.ledger.modules.market.views import VIEWS

NAME = "market"
VERSION = 1
TRADERS = frozenset({"prosumer", "consumer"})


def build(bank: Bank, registry: Registry, reputation: Reputation, metering: Metering,
          firmware: Firmware) -> Module:
    """The market wired to ``bank`` (escrow, payments), ``registry`` (traders, connection
    points), ``reputation`` (tiers, score changes), ``metering`` (readings to settle) and
    ``firmware`` (no new exposure from a cp whose meter is quarantined)."""
    deps = Deps(bank=bank, registry=registry, reputation=reputation, metering=metering,
                firmware=firmware)
    h = Handlers(deps)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(ORDER, parse_order, h.order, TRADERS),
                  MsgKind(CANCEL, parse_cancel, h.cancel, TRADERS),
                  MsgKind(REPLACE, parse_replace, h.replace, TRADERS),
                  MsgKind(COMMIT, parse_commit, h.commit, TRADERS),
                  MsgKind(REVEAL, parse_reveal, h.reveal, TRADERS),
                  MsgKind(ENVELOPE, parse_envelope, h.envelope, frozenset({"dso"}))),
        rules=RULES,
        end_block=make_end_block(deps),
        invariants=make_invariants(bank),
        views=VIEWS,
    )
