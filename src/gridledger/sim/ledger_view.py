"""The simulator's only window on ledger state: the entry validator's committed state.

Clients of a real network read balances and scores through a node's query interface; the
simulator's agents, features and attacks do the same through this class and never touch a
module's keys. It reads the entry validator's *committed* state (the last certified block),
as a client asking a node would.
"""

from __future__ import annotations

from gridledger.ledger.app import Application
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.reputation.keeper import reputation_of
from gridledger.ledger.modules.reputation.types import Tier, tier_for


class LedgerView:
    """Read-only queries on one validator's application."""

    def __init__(self, app: Application) -> None:
        self._app = app

    @property
    def height(self) -> int:
        return int(self._app.query("height"))

    def balance(self, addr: bytes) -> tuple[int, int]:
        """(spendable, locked) micro-units of ``addr``."""
        b = self._app.query(f"balance/{addr.hex()}")
        return int(b["balance_micro"]), int(b["locked_micro"])

    def reputation(self, addr: bytes) -> int:
        """Score in [0, 1000] (500 neutral)."""
        return reputation_of(self._app.state, addr)

    def tier(self, addr: bytes) -> Tier:
        """Sanction tier of ``addr``: good, watch, restricted or suspended."""
        return tier_for(self.reputation(addr), load_params(self._app.state))

    def supply(self) -> int:
        """Micro-units minted (at genesis)."""
        return self._app.state.get_int(bank.SUPPLY)

    def money(self) -> dict[bytes, int]:
        """Spendable + locked micro-units of every account, sorted by address."""
        out: dict[bytes, int] = {}
        for prefix in (bank.BAL, bank.LOCK):
            for k, v in self._app.state.items_with_prefix(prefix):
                a = k[len(prefix):]
                out[a] = out.get(a, 0) + int(v)
        return dict(sorted(out.items()))
