"""Reputation invariants."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.reputation import keeper
from gridledger.ledger.modules.reputation.types import MAX_SCORE, MIN_SCORE
from gridledger.ledger.state import State


def score_range(state: State) -> None:
    """Invariant score-range: every score is an integer in [0, 1000] (inside a block: every
    score the block wrote; the others held before it — under privacy mode each trading
    pseudonym has a record, so the full scan grew with the day)."""
    writes = state.block_writes_under((keeper.REP,))
    if writes is None:
        records = keeper.scores(state)
    else:
        records = [(k[len(keeper.REP):], keeper.record(state, k[len(keeper.REP):]))
                   for k in sorted(writes) if k.startswith(keeper.REP)
                   and state.get(k) is not None]
    for addr, rec in records:
        s = rec.score
        if not isinstance(s, int) or isinstance(s, bool) or not MIN_SCORE <= s <= MAX_SCORE:
            raise InvariantViolation(f"score-range: {addr.hex()[:16]} has score {s!r}")


INVARIANTS = (score_range,)
