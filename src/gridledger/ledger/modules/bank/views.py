"""Bank read-only views, served by ``Application.query("bank/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.bank import keeper
from gridledger.ledger.state import State


def account(state: State, arg: str) -> dict[str, int]:
    """``bank/account/<addr hex>``: ``{balance_micro, locked_micro}``."""
    addr = bytes.fromhex(arg)
    return {"balance_micro": keeper.balance(state, addr), "locked_micro": keeper.locked(state, addr)}


def money(state: State, _arg: str) -> dict[str, Any]:
    """``bank/money``: ``{supply_micro, total_micro}`` (equal after every block)."""
    return {"supply_micro": keeper.supply(state), "total_micro": keeper.total_money(state)}


def accounts(state: State, _arg: str) -> list[dict[str, Any]]:
    """``bank/accounts``: every account holding money, ``{address, balance_micro,
    locked_micro}`` by address."""
    return [{"address": a, "balance_micro": s, "locked_micro": held}
            for a, s, held in keeper.balances(state)]


VIEWS = {"account": account, "money": money, "accounts": accounts}
