"""Market: slots, orders with escrow, sealed bids, clearing at slot close, settlement
against meter readings, retail fallback secured by a hold.

State, messages, events, rules and invariants: ``README.md`` beside this file; the full
rules and the slot timeline: docs/market.md.
"""

from gridledger.ledger.modules.market.module import build

__all__ = ["build"]
