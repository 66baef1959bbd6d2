"""Disputes invariants."""

from __future__ import annotations

from gridledger.errors import InvariantViolation
from gridledger.ledger.module import Scoped
from gridledger.ledger.modules.disputes import keeper
from gridledger.ledger.state import State


def decisions_valid(state: State) -> None:
    """Invariant decisions-valid: every decision is upheld or rejected, and only rejected
    claims carry a fee."""
    for k, d in keeper.decisions(state):
        if d.outcome not in ("upheld", "rejected") or (d.outcome == "upheld" and d.fee_micro):
            raise InvariantViolation(f"decisions-valid: {k!r}")


INVARIANTS = (Scoped((keeper.CLAIM,), decisions_valid),)
"""It reads the module's decisions only (``Scoped``: skipped in a block that wrote none)."""
