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
    """``market/book/<slot>``: the slot's book as the market sees it now — ``orders``
    (``{order_id, owner, side, energy_wh, price_micro_per_kwh, sealed, filled_wh}`` by id:
    open orders before clearing, filled ones until settlement), ``sealed_unrevealed`` (sealed
    bids are only counted), and once cleared ``status``, ``price_micro_per_kwh`` and the
    ``trades`` (None / [] before)."""
    s = int(arg)
    orders = [{"order_id": oid, "owner": o.owner, "side": o.side, "energy_wh": o.energy_wh,
               "price_micro_per_kwh": o.price_micro_per_kwh, "sealed": o.sealed,
               "filled_wh": o.filled_wh}
              for oid, o in keeper.orders_of_slot(state, s)]
    rec = keeper.slot_record(state, s)
    return {"orders": orders, "sealed_unrevealed": len(keeper.commits_of_slot(state, s)),
            "status": None if rec is None else rec.status,
            "price_micro_per_kwh": None if rec is None else rec.price_micro_per_kwh,
            "trades": [t.to_obj() for t in keeper.trades_of_slot(state, s)]}


def retail(state: State, arg: str) -> dict[str, int]:
    """``market/retail/<addr hex>``: ``{held_micro, peak_wh, debt_micro}`` — the retail hold
    locked against unsettled import, the peak it is sized by, unpaid retail owed."""
    return keeper.retail_of(state, bytes.fromhex(arg)).to_obj()


VIEWS = {"slot": slot, "trades": trades, "book": book, "retail": retail}
