"""The governance module: ``build(valset, version, versions) -> Module`` (wired in the
catalog).

Version 2: chain parameters written at genesis, validator-set changes, parameter changes
and module upgrades by the validators' vote, the change log. Version 3 adds run-time grid
fees set by the DSO (``tariffs.py``); its migration seeds the fee schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.governance import tariffs, views
from gridledger.ledger.modules.governance.errors import RULES
from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.modules.governance.handlers import Handlers, init_genesis
from gridledger.ledger.modules.governance.invariants import (
    motions_valid,
    params_valid,
    valset_proposals_valid,
)
from gridledger.ledger.modules.governance.motions import Motions
from gridledger.ledger.modules.governance.types import (
    PROPOSE_ADD,
    PROPOSE_PARAMS,
    PROPOSE_REMOVE,
    PROPOSE_UPGRADE,
    SET_GRID_FEES,
    VOTE,
    VOTE_MOTION,
    parse_propose_add,
    parse_propose_params,
    parse_propose_remove,
    parse_propose_upgrade,
    parse_set_grid_fees,
    parse_vote_motion,
    parse_vote_validator,
)
from gridledger.ledger.state import State
from gridledger.ledger.upgrades import NO_CHANGE

NAME = "governance"
VERSIONS = (2, 3)
"""The versions this build ships (``ledger/modules/catalog.py``)."""


def build(valset: ValidatorSet, version: int = 2, versions: Mapping[str, int] | None = None) -> Module:
    """Governance wired to ``valset`` (the registry's validator set) at ``version``;
    ``versions`` are the module versions the chain runs (what upgrades are checked
    against). Membership of the *active set* is checked in the handlers (rule
    ``not-validator``), not by role: a validator that was voted out loses the role only at
    activation."""
    if version not in VERSIONS:
        raise ValueError(f"governance has versions {VERSIONS}, not {version}")
    running = {**(versions or {}), NAME: version}
    h = Handlers(valset)
    motions = Motions(valset, running)
    messages: tuple[MsgKind[Any], ...] = (
        MsgKind(PROPOSE_ADD, parse_propose_add, h.propose_add),
        MsgKind(PROPOSE_REMOVE, parse_propose_remove, h.propose_remove),
        MsgKind(VOTE, parse_vote_validator, h.vote),
        MsgKind(PROPOSE_UPGRADE, parse_propose_upgrade, motions.propose_upgrade),
        MsgKind(PROPOSE_PARAMS, parse_propose_params, motions.propose_params),
        MsgKind(VOTE_MOTION, parse_vote_motion, motions.vote))
    if version >= 3:
        messages += (MsgKind(SET_GRID_FEES, parse_set_grid_fees, tariffs.Tariffs().set_grid_fees,
                             frozenset({"dso"})),)

    def end_block(state: State, ctx: Any, events: list[dict[str, Any]]) -> None:
        h.end_block(state, ctx, events)
        motions.end_block(state, ctx, events)

    def genesis(state: State, doc: dict[str, Any]) -> None:
        init_genesis(state, doc)
        if version >= 3:
            tariffs.seed(state, 0, b"")

    return Module(
        name=NAME,
        version=version,
        messages=messages,
        rules=RULES,
        init_genesis=genesis,
        end_block=end_block,
        invariants=(params_valid, valset_proposals_valid(valset), motions_valid),
        views={"validators": lambda state, _arg: views.validators(state, valset),
               "params": lambda state, _arg: views.params(state),
               "grid_fees": views.grid_fees, "tariffs": views.tariffs,
               "changes": views.changes, "motions": views.motions,
               "versions": lambda state, _arg: views.versions(state, running)},
        migrate=tariffs.migrate if version >= 3 else None,
        declares=tariffs.DECLARATION if version >= 3 else NO_CHANGE,
    )
