"""The flexibility module: ``build(bank, registry, reputation, metering, firmware) ->
Module`` (wired in the catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.flex.errors import RULES
from gridledger.ledger.modules.flex.expected import (
    Bank,
    Deps,
    Firmware,
    Metering,
    PseudonymDisputes,
    Registry,
    Reputation,
)
from gridledger.ledger.modules.flex.handlers import VEN_ROLE, Handlers, init_genesis
from gridledger.ledger.modules.flex.invariants import make_invariants
from gridledger.ledger.modules.flex.settlement import make_end_block
from gridledger.ledger.modules.flex.types import (
    CANCEL,
    OFFER,
    ORDER,
    REPORT,
    REQUEST,
    RESOURCE,
    REVOKE,
    VEN,
    parse_cancel,
    parse_offer,
    parse_order,
    parse_report,
    parse_request,
    parse_resource,
    parse_revoke,
    parse_ven,
)
from gridledger.ledger.modules.flex.views import VIEWS

NAME = "flex"
VERSION = 1
DSO = frozenset({"dso"})
MEMBERS = frozenset({"prosumer", "consumer"})


def build(bank: Bank, registry: Registry, reputation: Reputation, metering: Metering,
          firmware: Firmware, disputes: PseudonymDisputes | None = None) -> Module:
    """Flexibility wired to ``bank`` (escrow, deposits), ``registry`` (cps, VEN identities),
    ``reputation`` (non-delivery), ``metering`` (trusted readings) and ``firmware`` (no offer
    from a cp whose meter is quarantined); ``disputes`` (privacy) records a sanctioned
    pseudonym's dispute, so its owner takes the loss once the trustees open it."""
    deps = Deps(bank=bank, registry=registry, reputation=reputation, metering=metering,
                firmware=firmware, disputes=disputes)
    h = Handlers(deps)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(REQUEST, parse_request, h.request, DSO),
                  MsgKind(CANCEL, parse_cancel, h.cancel, DSO),
                  MsgKind(ORDER, parse_order, h.order, DSO),
                  MsgKind(RESOURCE, parse_resource, h.resource, DSO),
                  MsgKind(OFFER, parse_offer, h.offer, MEMBERS),
                  MsgKind(REVOKE, parse_revoke, h.revoke, MEMBERS),
                  MsgKind(REPORT, parse_report, h.report, MEMBERS | {VEN_ROLE}),
                  MsgKind(VEN, parse_ven, h.ven, MEMBERS)),
        rules=RULES,
        init_genesis=init_genesis,
        end_block=make_end_block(deps),
        invariants=make_invariants(bank),
        views=VIEWS,
    )
