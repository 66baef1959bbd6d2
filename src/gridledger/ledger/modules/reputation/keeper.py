"""The only code that touches ``rep/`` keys.

A participant without a record has the neutral score; records are written on the first
change, so a chain without market activity has no reputation state at all.
"""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.reputation.types import (
    MAX_SCORE,
    MIN_SCORE,
    NEUTRAL,
    Reason,
    Tier,
    delta_for,
    deposit_pct_for,
    tier_for,
)
from gridledger.ledger.state import State

REP = b"rep/s/"
NO_SLOT = -1


def get_record(state: State, addr: bytes) -> dict[str, Any]:
    """``{score, last_penalty_slot, last_appeal_slot, approvals}`` (defaults if absent)."""
    rec: dict[str, Any] | None = state.get_obj(REP + addr)
    if rec is None:
        return {"score": NEUTRAL, "last_penalty_slot": NO_SLOT, "last_appeal_slot": NO_SLOT,
                "approvals": []}
    return rec


def put_record(state: State, addr: bytes, rec: dict[str, Any]) -> None:
    state.set_obj(REP + addr, rec)


def reputation_of(state: State, addr: bytes) -> int:
    """Score of ``addr`` in [0, 1000]; 500 is neutral. The node's quota policy uses this."""
    return int(get_record(state, addr)["score"])


def tier_of(state: State, addr: bytes) -> Tier:
    return tier_for(reputation_of(state, addr), load_params(state))


def deposit_pct(state: State, addr: bytes) -> int:
    """Seller deposit multiplier in percent (100 = base) from the sanction tier."""
    p = load_params(state)
    return deposit_pct_for(tier_for(reputation_of(state, addr), p), p)


def adjust(state: State, addr: bytes, reason: Reason, slot: int, times: int = 1) -> dict[str, Any]:
    """Apply ``times`` x the score change for ``reason``; returns the ``reputation`` event."""
    delta = delta_for(reason, load_params(state)) * times
    rec = get_record(state, addr)
    old = int(rec["score"])
    new = max(MIN_SCORE, min(MAX_SCORE, old + delta))
    rec = {**rec, "score": new}
    # a rejected transaction is a minor fault: it lowers the score but does not restart the
    # clean-slot clock an appeal waits for (a failed early appeal must not prolong itself)
    if delta < 0 and reason != "rejected_tx":
        rec["last_penalty_slot"] = slot
    put_record(state, addr, rec)
    return {"type": "reputation", "addr": addr, "reason": reason, "delta": new - old,
            "score": new, "slot": slot}


def record_rejected(state: State, addr: bytes, slot: int) -> dict[str, Any]:
    """Penalty for a transaction rejected in execution (for an execution-layer hook)."""
    return adjust(state, addr, "rejected_tx", slot)


def restore(state: State, addr: bytes, slot: int) -> dict[str, Any]:
    """Grant an appeal: raise the score to ``appeal_restore_score`` and clear approvals."""
    p = load_params(state)
    rec = get_record(state, addr)
    old = int(rec["score"])
    new = max(old, p.appeal_restore_score)
    put_record(state, addr, {**rec, "score": new, "last_appeal_slot": slot, "approvals": []})
    return {"type": "reputation", "addr": addr, "reason": "appeal", "delta": new - old,
            "score": new, "slot": slot}


def carry_penalty(state: State, owner: bytes, pseudonym: bytes, slot: int) -> dict[str, Any] | None:
    """Sanctions follow the participant: once a pseudonym is opened, the score it lost below
    neutral is taken from its owner too (returns the ``reputation`` event, or None)."""
    lost = NEUTRAL - reputation_of(state, pseudonym)
    if lost <= 0:
        return None
    rec = get_record(state, owner)
    old = int(rec["score"])
    new = max(MIN_SCORE, old - lost)
    put_record(state, owner, {**rec, "score": new, "last_penalty_slot": slot})
    return {"type": "reputation", "addr": owner, "reason": "pseudonym_penalty",
            "delta": new - old, "score": new, "slot": slot, "pseudonym": pseudonym}
