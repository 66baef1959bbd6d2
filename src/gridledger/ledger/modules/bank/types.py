"""Bank messages. Balances are plain integers (micro-units) under the bank's keys."""

from __future__ import annotations

from dataclasses import dataclass

from gridledger.ledger.module import Body
from gridledger.ledger.record import Record
from gridledger.ledger.validate import MAX_INT, require_addr, require_fields, require_int

TRANSFER = "bank/transfer"


@dataclass(frozen=True)
class Transfer(Record):
    """``bank/transfer``: move ``amount_micro`` of the sender's spendable money to ``to``."""

    to: bytes
    amount_micro: int


def parse_transfer(body: Body) -> Transfer:
    """Stateless checks: exactly ``to`` (32-byte address) and ``amount_micro`` in
    [1, 2^62]. Raises ``InvalidBody``."""
    require_fields(body, TRANSFER, ("to", "amount_micro"))
    return Transfer(require_addr(body, "to"), require_int(body, "amount_micro", 1, MAX_INT))
