"""The market's end-of-block hook: clear slots whose reveal window closed, settle slots
whose settlement deadline passed, prune slots whose dispute window closed. A block with
nothing due reads four keys."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.module import BlockHook
from gridledger.ledger.modules.market import keeper
from gridledger.ledger.modules.market.clearing import close_slot
from gridledger.ledger.modules.market.expected import Deps
from gridledger.ledger.modules.market.settlement import settle_slot
from gridledger.ledger.modules.market.types import reveal_deadline, settlement_deadline
from gridledger.ledger.params import load_params
from gridledger.ledger.state import State


def make_end_block(deps: Deps) -> BlockHook:
    """The end-of-block hook, wired to the market's dependencies."""

    def end_block(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        """Clear, then settle, every slot that is due at ``ctx.slot_time``, oldest first."""
        p = load_params(state)
        now = ctx.slot_time
        grid = p.grid_account
        for slot in keeper.open_slots(state):
            # a slot is open only after an order, commitment or envelope, and those need a
            # grid account (market-disabled), so grid is None only on a chain without them
            if now >= reveal_deadline(slot, p) and grid is not None:
                close_slot(deps, state, ctx, p, slot, grid, events)
        still_open = set(keeper.open_slots(state))
        due = sorted(set(keeper.unsettled_slots(state)) | set(deps.metering.pending_slots(state)))
        for slot in due:
            if now >= settlement_deadline(slot, p) and slot not in still_open:
                settle_slot(deps, state, ctx, p, slot, grid, events)
        for slot, settled_at in keeper.settled_slots(state):
            if now >= settled_at + p.dispute_window_s:
                keeper.prune_slot(state, slot)
                deps.metering.prune_readings(state, slot)

    return end_block
