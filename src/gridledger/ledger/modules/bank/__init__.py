"""Bank: balances, locked funds (escrow/deposits), transfers, total supply.

State
  ``bank/bal/<addr>``   spendable balance (micro-units)
  ``bank/lock/<addr>``  locked balance (order escrow, delivery deposits)
  ``bank/supply``       total money; changes only at genesis
Messages
  ``bank/transfer``     {to: addr, amount_micro: int > 0}
Events
  ``transfer`` {from, to, amount_micro}
Invariants
  total-supply: sum(bal) + sum(lock) == supply;  nonnegative: no balance below zero.
"""

from gridledger.ledger.modules.bank.keeper import (
    balance,
    credit,
    debit,
    lock,
    locked,
    move,
    unlock,
)
from gridledger.ledger.modules.bank.module import MODULE

__all__ = ["MODULE", "balance", "credit", "debit", "lock", "locked", "move", "unlock"]
