"""Governance invariants."""

from __future__ import annotations

from gridledger.errors import ConfigError, InvariantViolation
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.state import State


def params_valid(state: State) -> None:
    """Invariant params-valid: the stored parameters parse and pass every cross-check."""
    try:
        keeper.load_params(state)
    except ConfigError as exc:
        raise InvariantViolation(f"params-valid: {exc}") from exc
