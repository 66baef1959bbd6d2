"""The simulator's only window on ledger state: the entry validator's committed state.

Clients of a real network read balances and scores through a node's query interface; the
simulator's agents, features and attacks do the same through this class and never touch a
module's keys. It reads the entry validator's *committed* state (the last certified block),
as a client asking a node would.
"""

from __future__ import annotations

from typing import Any

from gridledger.crypto.sig import PublicKey
from gridledger.ledger.app import Application


class LedgerView:
    """Read-only queries on one validator's application."""

    def __init__(self, app: Application) -> None:
        self._app = app

    @property
    def height(self) -> int:
        return int(self._app.query("height"))

    def balance(self, addr: bytes) -> tuple[int, int]:
        """(spendable, locked) micro-units of ``addr``."""
        b = self._app.query(f"bank/account/{addr.hex()}")
        return int(b["balance_micro"]), int(b["locked_micro"])

    def reputation(self, addr: bytes) -> int:
        """Score in [0, 1000] (500 neutral)."""
        return int(self._app.query(f"reputation/score/{addr.hex()}")["score"])

    def tier(self, addr: bytes) -> str:
        """Sanction tier of ``addr``: good, watch, restricted or suspended."""
        return str(self._app.query(f"reputation/score/{addr.hex()}")["tier"])

    def firmware_of(self, cp: str) -> dict[str, Any]:
        """The firmware registry's record of ``cp``'s meter (view ``firmware/meter/<cp>``)."""
        out: dict[str, Any] = self._app.query(f"firmware/meter/{cp}")
        return out

    def image_problem(self, image: bytes) -> str | None:
        """Why a meter attesting ``image`` would be quarantined (None: an approved release
        no advisory in force names; view ``firmware/image/<hex>``)."""
        problem = self._app.query(f"firmware/image/{image.hex()}")["problem"]
        return None if problem is None else str(problem)

    def quarantined(self, cp: str) -> bool:
        """Whether the meter of ``cp`` is quarantined by the firmware registry."""
        return bool(self._app.query(f"firmware/meter/{cp}")["quarantined"])

    def supply(self) -> int:
        """Micro-units minted (at genesis)."""
        return int(self._app.query("bank/money")["supply_micro"])

    def money(self) -> dict[bytes, int]:
        """Spendable + locked micro-units of every account, sorted by address."""
        rows = self._app.query("bank/accounts")
        return {bytes(r["address"]): int(r["balance_micro"]) + int(r["locked_micro"])
                for r in sorted(rows, key=lambda r: bytes(r["address"]))}

    def flex_offers(self, request: bytes) -> list[dict[str, Any]]:
        """The offers of a flexibility request (view ``flex/offers``), by offer id."""
        out: list[dict[str, Any]] = self._app.query(f"flex/offers/{request.hex()}")
        return out

    def roaming_partners(self) -> dict[tuple[str, str], PublicKey]:
        """(foreign community, DSO id) -> the DSO key this community's genesis pins for
        roaming claims (view ``privacy/roaming_partners``)."""
        return {(r["community"], r["dso_id"]): PublicKey(r["alg"], r["pk"])
                for r in self._app.query("privacy/roaming_partners")}

    def roaming_seq(self, account: bytes) -> int:
        """The account's next roaming sequence number (view ``privacy/roaming_seq``)."""
        return int(self._app.query(f"privacy/roaming_seq/{account.hex()}"))

    def certificates(self, view: str) -> Any:
        """``certificates/<view>`` (granular certificates: ``bundles/<slot>``, ``matching``,
        ``totals``, ``devices``, ``hours`` ...; see the module's README)."""
        return self._app.query(f"certificates/{view}")

    def pseudonym(self, addr: bytes) -> dict[str, Any] | None:
        """A registered pseudonym's record (view ``privacy/pseudonym``): epoch, slots,
        ``final_micro`` once its epoch closed, ...; None if not registered."""
        rec: dict[str, Any] | None = self._app.query(f"privacy/pseudonym/{addr.hex()}")
        return rec

    def epoch(self, epoch: int) -> dict[str, Any]:
        """An epoch pool's record (view ``privacy/epoch``): status, tickets, members, ..."""
        rec: dict[str, Any] = self._app.query(f"privacy/epoch/{epoch}")
        return rec

    def market_abuse_findings(self) -> list[dict[str, Any]]:
        """Every surveillance finding, by id (view ``surveillance/findings``)."""
        return list(self._app.query("surveillance/findings"))

    def surveillance_config(self) -> dict[str, Any] | None:
        """The surveillance thresholds in force; None: the chain has no surveillance."""
        cfg = self._app.query("surveillance/config")
        return None if cfg is None else dict(cfg)

    def grid_fee(self, slot: int) -> int:
        """Flat + time-of-use grid fee (micro/kWh) in force for ``slot``: what the DSO set
        (view ``governance/grid_fees``)."""
        return int(self._app.query(f"governance/grid_fees/{slot}")["rate_micro_per_kwh"])

    def governance(self, view: str) -> Any:
        """A governance view: ``versions``, ``changes``, ``motions``, ``tariffs``."""
        return self._app.query(f"governance/{view}")
