"""The registry module: ``build(reputation) -> Module`` (wired in the catalog)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.registry import keeper
from gridledger.ledger.modules.registry.errors import RULES
from gridledger.ledger.modules.registry.expected import Reputation
from gridledger.ledger.modules.registry.handlers import Handlers, init_genesis
from gridledger.ledger.modules.registry.invariants import INVARIANTS
from gridledger.ledger.modules.registry.types import (
    APPLY,
    ATTEST_CP,
    ENDORSE,
    ENDORSER_ROLES,
    ROTATE_KEY,
    SPONSOR_ROLES,
    parse_apply,
    parse_attest_cp,
    parse_endorse,
    parse_rotate_key,
)
from gridledger.ledger.modules.registry.views import VIEWS

NAME = "registry"
VERSION = 2


def build(reputation: Reputation) -> Module:
    """The registry wired to ``reputation`` (endorser scores). It provides ``Accounts``
    (sender keys and roles, the validator set) to execution."""
    h = Handlers(reputation)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(
            MsgKind(ROTATE_KEY, parse_rotate_key, h.rotate_key),
            MsgKind(ATTEST_CP, parse_attest_cp, h.attest_cp, frozenset({"dso"})),
            MsgKind(APPLY, parse_apply, h.apply, SPONSOR_ROLES),
            MsgKind(ENDORSE, parse_endorse, h.endorse, ENDORSER_ROLES),
        ),
        rules=RULES,
        init_genesis=init_genesis,
        invariants=INVARIANTS,
        accounts=keeper,
        views=VIEWS,
    )
