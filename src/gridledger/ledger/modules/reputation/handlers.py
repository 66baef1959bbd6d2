"""Reputation handlers: appeals, and the charge for rejected transactions."""

from __future__ import annotations

import dataclasses

from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.reputation import keeper
from gridledger.ledger.modules.reputation.errors import (
    AppealAlreadyApproved,
    AppealNotSanctioned,
    AppealTooEarly,
)
from gridledger.ledger.modules.reputation.expected import Registry
from gridledger.ledger.modules.reputation.types import Appeal, ApproveAppeal, tier_for
from gridledger.ledger.params import load_params, slot_of
from gridledger.ledger.state import State


class Handlers:
    """Appeal handlers and the ``on_rejected`` hook; ``registry`` is wired by the catalog."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def appeal(self, state: State, ctx: TxContext, msg: Appeal) -> None:
        """``reputation/appeal``: graduated recovery. After enough slots without a penalty
        (and since the last appeal) a sanctioned participant rises to the floor of the next
        tier up — one tier per appeal, so a suspended participant needs three. The wait is
        ``appeal_clean_slots``, doubling with every appeal granted recently
        (``keeper.appeal_wait``, at most ``appeal_clean_slots_max``). Rules
        ``appeal-not-sanctioned``, ``appeal-too-early``."""
        p = load_params(state)
        slot = slot_of(ctx.block.slot_time, p)
        rec = keeper.record(state, ctx.sender)
        if tier_for(rec.score, p) == "good":
            raise AppealNotSanctioned("score is not below the watch threshold")
        wait = keeper.appeal_wait(rec, slot, p)
        for name, since in (("penalty", rec.last_penalty_slot), ("appeal", rec.last_appeal_slot)):
            if since >= 0 and slot - since < wait:
                raise AppealTooEarly(f"{slot - since} of {wait} clean slots since {name}")
        ctx.events.append(keeper.step_up(state, ctx.sender, slot))

    def approve_appeal(self, state: State, ctx: TxContext, msg: ApproveAppeal) -> None:
        """``reputation/approve_appeal`` by a validator; ``appeal_quorum`` distinct approvals
        restore the score without waiting for clean slots. Rules ``appeal-not-sanctioned``,
        ``appeal-already-approved``."""
        p = load_params(state)
        slot = slot_of(ctx.block.slot_time, p)
        rec = keeper.record(state, msg.addr)
        if tier_for(rec.score, p) == "good":
            raise AppealNotSanctioned("score is not below the watch threshold")
        if ctx.sender in rec.approvals:
            raise AppealAlreadyApproved("this validator already approved")
        approvals = tuple(sorted((*rec.approvals, ctx.sender)))
        ctx.emit("appeal_approved", addr=msg.addr, validator=ctx.sender, approvals=len(approvals))
        if len(approvals) >= p.appeal_quorum:
            ctx.events.append(keeper.restore(state, msg.addr, slot))
        else:
            keeper.put_record(state, msg.addr, dataclasses.replace(rec, approvals=approvals))

    def on_rejected(self, state: State, ctx: TxContext, rule: str) -> None:
        """A transaction that passed authentication but failed in execution costs reputation
        (whatever the rule; validators are exempt)."""
        p = self.registry.participant(state, ctx.sender)
        if p is None or "validator" in p.roles:
            return
        keeper.record_rejected(state, ctx.sender, slot_of(ctx.block.slot_time, load_params(state)))
