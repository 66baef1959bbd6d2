"""Bank: balances, locked funds (escrow/deposits), transfers, total supply.

State, messages, events, rules and invariants: ``README.md`` beside this file.
"""

from gridledger.ledger.modules.bank.module import build

__all__ = ["build"]
