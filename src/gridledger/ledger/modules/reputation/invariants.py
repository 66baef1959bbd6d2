"""Reputation invariants."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.reputation import keeper
from gridledger.ledger.modules.reputation.types import MAX_SCORE, MIN_SCORE
from gridledger.ledger.state import State


def score_range(state: State) -> None:
    """Invariant score-range: every score is an integer in [0, 1000]."""
    for addr, rec in keeper.scores(state):
        s = rec.score
        if not isinstance(s, int) or isinstance(s, bool) or not MIN_SCORE <= s <= MAX_SCORE:
            raise InvariantViolation(f"score-range: {addr.hex()[:16]} has score {s!r}")


INVARIANTS = (score_range,)
