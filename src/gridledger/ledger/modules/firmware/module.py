"""The firmware registry: ``build(authorities) -> Module`` (wired in the catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.firmware.errors import RULES
from gridledger.ledger.modules.firmware.expected import Authorities
from gridledger.ledger.modules.firmware.handlers import Handlers, init_genesis
from gridledger.ledger.modules.firmware.invariants import INVARIANTS
from gridledger.ledger.modules.firmware.types import (
    ADVISORY,
    APPROVE,
    PATCH,
    RELEASE,
    VOUCH,
    parse_advisory,
    parse_approve,
    parse_patch,
    parse_release,
    parse_vouch,
)
from gridledger.ledger.modules.firmware.views import make_views

NAME = "firmware"
VERSION = 1


def build(authorities: Authorities) -> Module:
    """The firmware registry wired to ``authorities`` (the registry: who is the DSO, the
    active validator set, which cp a meter is bound to). Membership of the active set is
    checked in the handlers (rule ``not-approver``), not by role alone."""
    h = Handlers(authorities)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(RELEASE, parse_release, h.release, frozenset({"vendor"})),
                  MsgKind(APPROVE, parse_approve, h.approve, frozenset({"dso", "validator"})),
                  MsgKind(ADVISORY, parse_advisory, h.advisory,
                          frozenset({"vendor", "dso", "validator"})),
                  MsgKind(PATCH, parse_patch, h.patch, frozenset({"meter"})),
                  MsgKind(VOUCH, parse_vouch, h.vouch, frozenset({"dso"}))),
        rules=RULES,
        init_genesis=init_genesis,
        invariants=INVARIANTS,
        views=make_views(authorities.validator_set),
    )
