"""Reputation: a score per participant (and validator), graduated sanctions, appeals.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.reputation.keeper import (
    adjust,
    deposit_pct,
    record_rejected,
    reputation_of,
    tier_of,
)
from gridledger.ledger.modules.reputation.module import build

__all__ = ["adjust", "build", "deposit_pct", "record_rejected", "reputation_of", "tier_of"]
