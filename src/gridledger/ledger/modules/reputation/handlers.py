"""Reputation handlers: appeals."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.reputation import keeper
from gridledger.ledger.modules.reputation.types import tier_for
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_addr


def handle_appeal(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``reputation/appeal {}``: after ``appeal_clean_slots`` slots without a penalty (and
    since the last appeal), a sanctioned participant's score is restored."""
    if body:
        raise InvalidBody("reputation/appeal takes an empty body")
    p = load_params(state)
    slot = ctx.block.slot_time // p.slot_seconds
    rec = keeper.get_record(state, ctx.sender)
    if tier_for(int(rec["score"]), p) == "good":
        raise InvalidBody("appeal-not-sanctioned: score is not below the watch threshold")
    for name in ("last_penalty_slot", "last_appeal_slot"):
        since = int(rec[name])
        if since >= 0 and slot - since < p.appeal_clean_slots:
            raise Unauthorized(f"appeal-too-early: {slot - since} of {p.appeal_clean_slots} "
                               f"clean slots since {name.removeprefix('last_').removesuffix('_slot')}")
    ctx.events.append(keeper.restore(state, ctx.sender, slot))


def handle_approve_appeal(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``reputation/approve_appeal {addr}`` by a validator; ``appeal_quorum`` distinct
    approvals restore the score without waiting for clean slots."""
    addr = require_addr(body, "addr")
    p = load_params(state)
    slot = ctx.block.slot_time // p.slot_seconds
    rec = keeper.get_record(state, addr)
    if tier_for(int(rec["score"]), p) == "good":
        raise InvalidBody("appeal-not-sanctioned: score is not below the watch threshold")
    approvals: list[bytes] = list(rec["approvals"])
    if ctx.sender in approvals:
        raise InvalidBody("appeal-already-approved by this validator")
    approvals = sorted(approvals + [ctx.sender])
    ctx.emit("appeal_approved", addr=addr, validator=ctx.sender, approvals=len(approvals))
    if len(approvals) >= p.appeal_quorum:
        ctx.events.append(keeper.restore(state, addr, slot))
    else:
        keeper.put_record(state, addr, {**rec, "approvals": approvals})
