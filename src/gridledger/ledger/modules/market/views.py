"""Market read-only views, served by ``Application.query("market/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.market import keeper
from gridledger.ledger.state import State


def slot(state: State, arg: str) -> dict[str, Any] | None:
    """``market/slot/<slot>``: the slot's clearing and settlement record (None before it
    clears and after it is pruned)."""
    rec = keeper.slot_record(state, int(arg))
    return None if rec is None else rec.to_obj()


def trades(state: State, arg: str) -> list[dict[str, Any]]:
    """``market/trades/<slot>``: the slot's trades in clearing order, with what settlement
    did once it ran."""
    return [t.to_obj() for t in keeper.trades_of_slot(state, int(arg))]


def book(state: State, arg: str) -> dict[str, Any]:
    """``market/book/<slot>``: the open orders ``{order_id, owner, side, energy_wh,
    price_micro_per_kwh, sealed}`` by id, and how many sealed bids are still unrevealed."""
    s = int(arg)
    orders = [{"order_id": oid, "owner": o.owner, "side": o.side, "energy_wh": o.energy_wh,
               "price_micro_per_kwh": o.price_micro_per_kwh, "sealed": o.sealed}
              for oid, o in keeper.orders_of_slot(state, s)]
    return {"orders": orders, "sealed_unrevealed": len(keeper.commits_of_slot(state, s))}


def retail(state: State, arg: str) -> dict[str, int]:
    """``market/retail/<addr hex>``: ``{held_micro, peak_wh, debt_micro}`` — the retail hold
    locked against unsettled import, the peak it is sized by, unpaid retail owed."""
    return keeper.retail_of(state, bytes.fromhex(arg)).to_obj()


VIEWS = {"slot": slot, "trades": trades, "book": book, "retail": retail}
