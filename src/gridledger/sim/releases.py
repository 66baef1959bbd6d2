"""Module releases the attack lab has node operators install (``contract-bug``'s faulty bank).

Kept apart from the attacks that use them: a hosted validator's process imports a release
defined at module level by name (``node.validator_host``), and any module of
``sim.attacks`` brings the whole simulator with it (every attack, the features, the grid,
pandapower): ~4.6 s of CPU in a process that only executes blocks (issue 17). This module
needs the ledger side only (``tests/node/test_process_imports.py``).
"""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import Any

from gridledger.errors import InsufficientFunds
from gridledger.ledger.module import Module
from gridledger.ledger.modules import bank
from gridledger.ledger.modules.bank import keeper as bank_keeper
from gridledger.ledger.modules.catalog import Keepers, Release
from gridledger.ledger.state import State
from gridledger.ledger.upgrades import Declaration

DECLARATION = Declaration(
    migration="none (payouts are batched per block)",
    changes=(bank_keeper.BAL, bank_keeper.LOCK), receipts=True)
"""What the faulty bank release declares: no migration; balances may differ while payouts
are batched; receipts may differ."""


class BatchedPayoutKeeper:
    """The faulty release's bank keeper: this build's keeper except ``pay_from_locked``."""

    def __init__(self, base: ModuleType) -> None:
        self._base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def pay_from_locked(self, state: State, src: bytes, dst: bytes, amount: int) -> None:
        have = self._base.locked(state, src)
        taken = amount - amount // 1000  # the slip: the batch rounds the payer's side down
        if have < taken:
            raise InsufficientFunds(f"locked {have} < {taken}")
        state.set_int(self._base.LOCK + src, have - taken)
        self._base.credit(state, dst, amount)


FAULTY_KEEPER = BatchedPayoutKeeper(bank_keeper)


def _build(k: Keepers) -> Module:
    return replace(bank.build(registry=k["registry"]), version=2, declares=DECLARATION)


FAULTY_BANK = Release("bank", 2, _build, keeper=FAULTY_KEEPER)
"""``contract-bug``'s faulty release ("bank v2: batched settlement payouts": the payee is
credited in full, the payer's lock debited a thousandth less), as the node operators install
it to review it."""
