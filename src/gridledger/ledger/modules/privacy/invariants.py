"""Privacy invariants: any node or test can run them after any block."""

from __future__ import annotations

from collections.abc import Callable

from gridledger.errors import InvariantViolation
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.expected import Bank
from gridledger.ledger.modules.privacy.records import pool_address
from gridledger.ledger.state import State


def tickets_cover_pseudonyms(state: State) -> None:
    """Invariant tickets-cover-pseudonyms: per unpaid epoch, registered <= certified <=
    tickets and registered <= attested <= tickets (every pseudonym has a ticket and a
    meter-vouched reading key)."""
    for epoch in keeper.open_epochs(state):
        r = keeper.get_epoch(state, epoch)
        if not (r.registered <= r.certified <= r.tickets
                and r.registered <= r.attested <= r.tickets):
            raise InvariantViolation(f"tickets-cover-pseudonyms: epoch {epoch} has {r}")


def pool_accounted(bank: Bank) -> Callable[[State], None]:
    """Invariant pool-accounted: while an epoch is open its pool holds exactly what came in
    (deposits, carried money) less the allowances its pseudonyms drew."""
    def check(state: State) -> None:
        cfg = keeper.config(state)
        if cfg is None:
            return
        for epoch in keeper.open_epochs(state):
            r = keeper.get_epoch(state, epoch)
            if r.status != "open":
                continue
            want = r.pool_in_micro - r.registered * cfg.allowance_micro
            have = bank.balance(state, pool_address(epoch))
            if have != want:
                raise InvariantViolation(f"pool-accounted: epoch {epoch} pool holds {have}, "
                                         f"its records say {want}")
    return check
