"""The market's end-of-block hook: clear slots whose reveal window closed, settle slots
whose settlement deadline passed, prune slots whose dispute window closed. A block with
nothing due reads four keys."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.clearing import close_slot
from gridledger.ledger.modules.market.settlement import settle_slot
from gridledger.ledger.modules.market.types import reveal_deadline, settlement_deadline
from gridledger.ledger.modules.metering.keeper import pending_slots, prune_readings
from gridledger.ledger.state import State


def end_block(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
    """Clear, then settle, every slot that is due at ``ctx.slot_time``, oldest first."""
    p = load_params(state)
    now = ctx.slot_time
    open_slots = keeper.open_slots(state)
    for slot in open_slots:
        if now >= reveal_deadline(slot, p):
            grid = p.grid_account
            if grid is None:  # unreachable: orders need a grid account; kept for safety
                continue
            close_slot(state, ctx, p, slot, grid, events)
    still_open = set(keeper.open_slots(state))
    due = sorted(set(keeper.unsettled_slots(state)) | set(pending_slots(state)))
    for slot in due:
        if now >= settlement_deadline(slot, p) and slot not in still_open:
            settle_slot(state, ctx, p, slot, p.grid_account, events)
    for slot, settled_at in keeper.settled_slots(state):
        if now >= settled_at + p.dispute_window_s:
            keeper.prune_slot(state, slot)
            prune_readings(state, slot)
