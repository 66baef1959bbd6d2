"""Governance invariants."""

from __future__ import annotations

from gridledger.errors import ConfigError, InvariantViolation
from gridledger.ledger.module import Invariant
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State


def params_valid(state: State) -> None:
    """Invariant params-valid: the stored parameters parse and pass every cross-check."""
    try:
        load_params(state)
    except ConfigError as exc:
        raise InvariantViolation(f"params-valid: {exc}") from exc


def valset_proposals_valid(valset: ValidatorSet) -> Invariant:
    """Invariant valset-proposals: the open index lists existing open/passed proposals in
    ascending order, and applying every passed change leaves a non-empty set without
    duplicate addresses or keys."""

    def check(state: State) -> None:
        ids = keeper.open_ids(state)
        if ids != sorted(set(ids)):
            raise InvariantViolation("valset-proposals: open index not strictly ascending")
        for pid in ids:
            p = keeper.proposal(state, pid)
            if p is None or p.status not in keeper.OPEN_STATUSES:
                raise InvariantViolation(f"valset-proposals: proposal {pid} indexed but not open")
        if not ids:
            return
        projected = keeper.projected_set(state, valset)
        if not projected:
            raise InvariantViolation("valset-proposals: passed changes would empty the set")
        if (len({a for a, _, _ in projected}) != len(projected)
                or len({pk for _, _, pk in projected}) != len(projected)):
            raise InvariantViolation("valset-proposals: passed changes would duplicate a validator")

    check.__doc__ = valset_proposals_valid.__doc__
    return check


def motions_valid(state: State) -> None:
    """Invariant motions: the open index lists existing open, passed or rejected (still
    recording late votes) motions in ascending order, and no voter is both for and against
    a motion."""
    ids = keeper.open_motion_ids(state)
    if ids != sorted(set(ids)):
        raise InvariantViolation("motions: open index not strictly ascending")
    for mid in ids:
        m = keeper.motion(state, mid)
        if m is None or m.status not in ("open", "passed", "rejected"):
            raise InvariantViolation(f"motions: motion {mid} indexed but not open")
        if set(m.yes) & set(m.no):
            raise InvariantViolation(f"motions: a validator voted both ways on {mid}")
