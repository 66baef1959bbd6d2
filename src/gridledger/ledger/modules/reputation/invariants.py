"""Reputation invariants."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.reputation import keeper
from gridledger.ledger.modules.reputation.types import MAX_SCORE, MIN_SCORE
from gridledger.ledger.state import State


def score_range(state: State) -> None:
    """Invariant score-range: every score is an integer in [0, 1000]."""
    for k, rec in state.items_with_prefix(keeper.REP):
        s = rec.get("score")
        if not isinstance(s, int) or not MIN_SCORE <= s <= MAX_SCORE:
            raise InvariantViolation(f"score-range: {k!r} has score {s!r}")
