"""Run-time grid fees (governance version 3, issue 13.3).

The DSO sets the grid fee — a flat rate plus a time-of-use table (one rate per slot of
the day) — for future slots with one signed transaction, ``governance/set_grid_fees``,
within the bounds the genesis parameters set (``grid_fee_min_micro_per_kwh`` ..
``grid_fee_max_micro_per_kwh``, applied to every flat + time-of-use rate). The schedule
(``ledger.params.TARIFFS_KEY``) holds each change from its first slot on; the market prices
a slot's trades with ``ledger.params.grid_fees_for_slot`` when it clears the slot, and
sizes buy escrows with ``fee_rate_ceiling`` (the genesis upper bound), so an order placed
before a rise is still covered. Only slots whose gate has not closed can change.

Version 3 keeps the schedule in state from the start: its migration (from version 2, where
fees were the genesis parameters) seeds it with the fee table in force and opens the change
log with it.
"""

from __future__ import annotations

from typing import Any

from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.errors import FeeBounds, FeeHorizon, FeeTooLate, TouLength
from gridledger.ledger.modules.governance.types import (
    MAX_FEE_HORIZON_DAYS,
    MAX_TARIFFS,
    Change,
    SetGridFees,
)
from gridledger.ledger.params import (
    SECONDS_PER_DAY,
    TARIFFS_KEY,
    GridFeeRates,
    fee_rates,
    grid_fees_for_slot,
    load_params,
    slot_of,
    store_tariff_schedule,
    tariff_schedule,
)
from gridledger.ledger.state import State
from gridledger.ledger.upgrades import Declaration

DECLARATION = Declaration(
    migration="seed the grid-fee schedule (gov/tariffs) with the fee table in force and open "
              "the change log (gov/chg/) with it",
    writes=(TARIFFS_KEY, keeper.CHANGE, keeper.CHANGE_LAST))
"""Version 3's declaration: its migration writes only the schedule and the change log; on
the same blocks it changes nothing else and every receipt stays the same."""


def seed(state: State, height: int, by: bytes) -> None:
    """Put the fee table in force (the genesis parameters) into the schedule, and log it."""
    if state.get(TARIFFS_KEY) is not None:
        return
    rates = grid_fees_for_slot(state, 0)
    store_tariff_schedule(state, [rates])
    keeper.log_change(state, Change(0, height, "grid_fees", by, 0, from_slot=0,
                                    flat_micro_per_kwh=rates.flat_micro_per_kwh,
                                    tou_micro_per_kwh=rates.tou_micro_per_kwh))


def migrate(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
    """Version 2 -> 3: seed the schedule with the fees in force (``DECLARATION``)."""
    seed(state, ctx.height, b"")
    events.append({"type": "grid_fee_schedule_seeded", "entries": len(tariff_schedule(state))})


class Tariffs:
    """The DSO's fee handler."""

    def set_grid_fees(self, state: State, ctx: TxContext, msg: SetGridFees) -> None:
        """``governance/set_grid_fees`` (role dso): rules ``fee-bounds``, ``tou-length``,
        ``fee-too-late`` (the slot's gate closed), ``fee-horizon``."""
        p = load_params(state)
        lo, hi = p.grid_fee_min_micro_per_kwh, p.grid_fee_max_micro_per_kwh
        if hi == 0:
            raise FeeBounds("this chain's genesis sets no fee bounds: grid fees are fixed")
        per_day = SECONDS_PER_DAY // p.slot_seconds
        if msg.tou_micro_per_kwh and len(msg.tou_micro_per_kwh) != per_day:
            raise TouLength(f"{len(msg.tou_micro_per_kwh)} entries; a day has {per_day} slots")
        for rate in fee_rates(msg.flat_micro_per_kwh, msg.tou_micro_per_kwh):
            if not lo <= rate <= hi:
                raise FeeBounds(f"rate {rate} outside [{lo}, {hi}]")
        now = ctx.block.slot_time
        if msg.from_slot * p.slot_seconds - p.gate_closure_s <= now:
            raise FeeTooLate(f"slot {msg.from_slot}'s gate closed at "
                             f"{msg.from_slot * p.slot_seconds - p.gate_closure_s}")
        current = slot_of(now, p)
        if msg.from_slot > current + MAX_FEE_HORIZON_DAYS * per_day:
            raise FeeHorizon(f"at most {MAX_FEE_HORIZON_DAYS} days ahead")
        previous = grid_fees_for_slot(state, msg.from_slot)
        new = GridFeeRates(msg.from_slot, msg.flat_micro_per_kwh, msg.tou_micro_per_kwh)
        # an entry ending more than a day ago can no longer price any slot: dropped
        schedule = [e for e in tariff_schedule(state) if e.from_slot != msg.from_slot]
        schedule = sorted([*schedule, new], key=lambda e: e.from_slot)
        while len(schedule) > 1 and schedule[1].from_slot <= current - per_day:
            schedule.pop(0)
        if len(schedule) > MAX_TARIFFS:
            raise FeeHorizon(f"the schedule holds at most {MAX_TARIFFS} entries")
        store_tariff_schedule(state, schedule)
        keeper.log_change(state, Change(0, ctx.block.height, "grid_fees", ctx.sender, 0,
                                        from_slot=msg.from_slot,
                                        flat_micro_per_kwh=msg.flat_micro_per_kwh,
                                        tou_micro_per_kwh=msg.tou_micro_per_kwh))
        ctx.emit("grid_fees_set", from_slot=msg.from_slot,
                 flat_micro_per_kwh=msg.flat_micro_per_kwh,
                 tou_micro_per_kwh=list(msg.tou_micro_per_kwh),
                 previous_flat_micro_per_kwh=previous.flat_micro_per_kwh,
                 previous_tou_micro_per_kwh=list(previous.tou_micro_per_kwh), by=ctx.sender)
