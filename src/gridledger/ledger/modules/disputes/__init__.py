"""Disputes: non-delivery / non-receipt claims decided from meter evidence, not claims.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.disputes.module import build

__all__ = ["build"]
