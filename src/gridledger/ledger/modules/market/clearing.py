"""Clearing at slot close: forfeit unrevealed commitments, clear the book with the market
library, record trades, release escrow that can no longer be needed."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvariantViolation
from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.expected import Deps
from gridledger.ledger.modules.market.types import (
    Order,
    SlotRecord,
    Trade,
    seller_deposit_micro,
)
from gridledger.ledger.params import Params, grid_fees_for_slot, slot_of
from gridledger.ledger.state import State
from gridledger.market import (
    ClearingResult,
    Envelope,
    GridFees,
    MarketInputError,
    clear_slot,
)
from gridledger.market import Order as BookOrder
from gridledger.market.rounding import ceil_micro


def _zones_by_owner(deps: Deps, state: State, p: Params, orders: list[BookOrder]) -> dict[bytes, str]:
    """Network zone of each order owner, through its connection point."""
    if not p.grid_fee_zones:
        return {}
    zone_of_cp = dict(p.grid_fee_zones)
    out: dict[bytes, str] = {}
    for owner in sorted({o.owner for o in orders}):
        zone = zone_of_cp.get(deps.registry.cp_of(state, owner) or "")
        if zone is not None:
            out[owner] = zone
    return out


def _forfeit_commitments(deps: Deps, state: State, ctx: BlockContext, p: Params, slot: int,
                         grid: bytes, events: list[dict[str, Any]]) -> None:
    """Unrevealed sealed bids lose their deposit to the grid account (community fund)."""
    for cid, com in keeper.commits_of_slot(state, slot):
        deps.bank.pay_from_locked(state, com.owner, grid, com.deposit_micro)
        keeper.delete_commit(state, slot, cid)
        events.append({"type": "commitment_forfeited", "slot": slot, "commit_id": cid,
                       "owner": com.owner, "deposit_micro": com.deposit_micro, "to": grid})
        events.append(deps.reputation.adjust(state, com.owner, "commitment_forfeited",
                                             slot_of(ctx.slot_time, p)))


def _envelopes_by_owner(deps: Deps, state: State, slot: int) -> dict[bytes, Envelope]:
    out: dict[bytes, Envelope] = {}
    for cp, env in sorted(keeper.take_envelopes(state, slot).items()):
        owner = deps.registry.cp_holder(state, cp)
        if owner is not None:
            out[owner] = env
    return out


def close_slot(deps: Deps, state: State, ctx: BlockContext, p: Params, slot: int, grid: bytes,
               events: list[dict[str, Any]]) -> None:
    """Clear ``slot``: called once, in the first block at or after its reveal deadline."""
    _forfeit_commitments(deps, state, ctx, p, slot, grid, events)
    keeper.delete_counts(state, slot)
    envelopes = _envelopes_by_owner(deps, state, slot)
    book = keeper.orders_of_slot(state, slot)
    book.sort(key=lambda item: item[1].seq)  # arrival order (matters for "continuous")
    orders = [BookOrder(oid, o.owner, o.side, o.energy_wh, o.price_micro_per_kwh)
              for oid, o in book]
    rates = grid_fees_for_slot(state, slot)  # what the DSO set for this slot (governance v3)
    fees = GridFees(flat_micro_per_kwh=rates.flat_micro_per_kwh,
                    tou_micro_per_kwh=rates.tou_micro_per_kwh,
                    zone_by_owner=_zones_by_owner(deps, state, p, orders),
                    distance_micro_per_kwh={(a, b): fee for a, b, fee in p.grid_fee_distance_micro_per_kwh},
                    default_distance_micro_per_kwh=p.grid_fee_default_distance_micro_per_kwh)
    try:
        result = clear_slot(orders, p.mechanism, envelopes=envelopes, fees=fees,
                            slot_of_day=slot % max(1, len(rates.tou_micro_per_kwh)))
    except MarketInputError as exc:
        # Orders were checked on entry, so this is a bug; fail safe: nobody trades, every
        # escrow is returned, and the chain keeps going.
        for oid, o in sorted(book):
            deps.bank.unlock(state, o.owner, o.held_micro)
            keeper.delete_order(state, slot, oid)
        keeper.put_slot(state, slot, SlotRecord(status="failed", reason=str(exc), volume_wh=0,
                                                bought_wh=0, sold_wh=0, trades=0))
        keeper.mark_cleared(state, slot)
        events.append({"type": "slot_failed", "slot": slot, "reason": str(exc)})
        return
    _record(deps, state, ctx, slot, dict(book), result, events)


def _record(deps: Deps, state: State, ctx: BlockContext, slot: int, book: dict[bytes, Order],
            result: ClearingResult, events: list[dict[str, Any]]) -> None:
    # What each buy order's trades can still cost: its exact payment and fee totals rounded
    # up (settlement pays each rounded by the carry rule, on delivered energy <= filled).
    need_pay: dict[bytes, int] = {}
    need_fee: dict[bytes, int] = {}
    for i, t in enumerate(result.trades):
        keeper.put_trade(state, slot, i, Trade(
            buy_order=t.buy_order_id, sell_order=t.sell_order_id, buyer=t.buyer,
            seller=t.seller, energy_wh=t.energy_wh, price_micro_per_kwh=t.price_micro_per_kwh,
            payment_micro=t.payment_micro, grid_fee_micro=t.grid_fee_micro,
            grid_fee_micro_per_kwh=t.grid_fee_micro_per_kwh, settled=False))
        oid = t.buy_order_id
        need_pay[oid] = need_pay.get(oid, 0) + t.energy_wh * t.price_micro_per_kwh
        need_fee[oid] = need_fee.get(oid, 0) + t.energy_wh * t.grid_fee_micro_per_kwh
        events.append({"type": "trade", "slot": slot, "index": i, "buyer": t.buyer,
                       "seller": t.seller, "energy_wh": t.energy_wh,
                       "price_micro_per_kwh": t.price_micro_per_kwh,
                       "payment_micro": t.payment_micro, "grid_fee_micro": t.grid_fee_micro})
    bought = sold = 0
    for oid in sorted(book):
        o = book[oid]
        filled = result.filled_wh_by_order[oid]
        if o.side == "buy":
            keep = ceil_micro(need_pay.get(oid, 0)) + ceil_micro(need_fee.get(oid, 0))
            bought += filled
            if keep > o.held_micro:
                raise InvariantViolation(f"escrow-covers-trades: order {oid.hex()[:16]} owes "
                                         f"{keep} > escrow {o.held_micro}")
        else:
            keep = min(o.held_micro, seller_deposit_micro(filled, o.deposit_rate))
            sold += filled
        deps.bank.unlock(state, o.owner, o.held_micro - keep)
        if filled == 0:
            keeper.delete_order(state, slot, oid)
        else:
            keeper.put_order(state, slot, oid, Order(
                owner=o.owner, side=o.side, energy_wh=o.energy_wh,
                price_micro_per_kwh=o.price_micro_per_kwh, held_micro=keep,
                deposit_rate=o.deposit_rate, seq=o.seq, sealed=o.sealed, filled_wh=filled))
    clipped = sum(result.clipped_wh_by_order.values())
    keeper.put_slot(state, slot, SlotRecord(
        status="cleared", mechanism=result.mechanism,
        price_micro_per_kwh=result.price_micro_per_kwh, volume_wh=result.volume_wh,
        bought_wh=bought, sold_wh=sold, trades=len(result.trades), orders=len(book),
        clipped_wh=clipped, cleared_at=ctx.slot_time))
    keeper.mark_cleared(state, slot)
    events.append({"type": "slot_cleared", "slot": slot, "mechanism": result.mechanism,
                   "price_micro_per_kwh": result.price_micro_per_kwh,
                   "volume_wh": result.volume_wh, "trades": len(result.trades),
                   "orders": len(book), "clipped_wh": clipped})
