"""The only code that touches ``rep/`` keys.

A participant without a record has the neutral score; records are written on the first
change, so a chain without market activity has no reputation state at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gridledger.ledger.modules.reputation.types import (
    MAX_SCORE,
    MIN_SCORE,
    NEUTRAL,
    Reason,
    Score,
    Tier,
    delta_for,
    deposit_pct_for,
    tier_for,
)
from gridledger.ledger.modules.reputation.types import (
    NO_SLOT as NO_SLOT,
)
from gridledger.ledger.params import Params, load_params
from gridledger.ledger.record import read, read_prefix
from gridledger.ledger.state import State

REP = b"rep/s/"


def record(state: State, addr: bytes) -> Score:
    """The score record of ``addr`` (the neutral default if it has none)."""
    rec = read(state, REP + addr, Score)
    return Score() if rec is None else rec


def get_record(state: State, addr: bytes) -> dict[str, Any]:
    """``{score, last_penalty_slot, last_appeal_slot, approvals}`` (pre-typed interface)."""
    return record(state, addr).to_obj()


def put_record(state: State, addr: bytes, rec: Score | Mapping[str, Any]) -> None:
    score = rec if isinstance(rec, Score) else Score.from_obj(rec)
    state.set_obj(REP + addr, score.to_obj())


def forget(state: State, addr: bytes) -> bool:
    """Drop the record of an identity that will never act again (a retired pseudonym),
    unless it holds a penalty (score below neutral), which an opening of it still carries
    to its owner. Returns whether it was dropped."""
    if state.get(REP + addr) is None or reputation_of(state, addr) < NEUTRAL:
        return False
    state.delete(REP + addr)
    return True


def drop(state: State, addr: bytes) -> bool:
    """Drop the record of a pruned pseudonym, penalty or not (issue 17): a pruned pseudonym
    can never be opened (``pseudonym-pruned``), so no rule carries its penalty to an owner,
    and it can never sign again. Returns whether there was one."""
    if state.get(REP + addr) is None:
        return False
    state.delete(REP + addr)
    return True


def scores(state: State) -> list[tuple[bytes, Score]]:
    """Every stored record, by address (absent addresses have the neutral score)."""
    return read_prefix(state, REP, Score)


def reputation_of(state: State, addr: bytes) -> int:
    """Score of ``addr`` in [0, 1000]; 500 is neutral. The node's quota policy uses this."""
    return record(state, addr).score


def tier_of(state: State, addr: bytes) -> Tier:
    return tier_for(reputation_of(state, addr), load_params(state))


def deposit_pct(state: State, addr: bytes) -> int:
    """Seller deposit multiplier in percent (100 = base) from the sanction tier."""
    p = load_params(state)
    return deposit_pct_for(tier_for(reputation_of(state, addr), p), p)


def adjust(state: State, addr: bytes, reason: Reason, slot: int, times: int = 1) -> dict[str, Any]:
    """Apply ``times`` x the score change for ``reason``; returns the ``reputation`` event."""
    delta = delta_for(reason, load_params(state)) * times
    rec = record(state, addr)
    new = max(MIN_SCORE, min(MAX_SCORE, rec.score + delta))
    # a rejected transaction is a minor fault: it lowers the score but does not restart the
    # clean-slot clock an appeal waits for (a failed early appeal must not prolong itself)
    penalty_slot = slot if delta < 0 and reason != "rejected_tx" else rec.last_penalty_slot
    put_record(state, addr, dataclasses.replace(rec, score=new, last_penalty_slot=penalty_slot))
    return {"type": "reputation", "addr": addr, "reason": reason, "delta": new - rec.score,
            "score": new, "slot": slot}


def record_rejected(state: State, addr: bytes, slot: int) -> dict[str, Any]:
    """Penalty for a transaction rejected in execution (for an execution-layer hook)."""
    return adjust(state, addr, "rejected_tx", slot)


APPEAL_MEMORY = 4
"""A granted self-appeal counts towards the next wait for ``APPEAL_MEMORY x
appeal_clean_slots_max`` slots after the last appeal (about 5 days with the defaults)."""


def recent_appeals(rec: Score, slot: int, p: Params) -> int:
    """Self-appeals granted recently: the count is forgotten after a long appeal-free time."""
    if rec.last_appeal_slot < 0 or slot - rec.last_appeal_slot >= APPEAL_MEMORY * p.appeal_clean_slots_max:
        return 0
    return rec.appeals or 0


def appeal_wait(rec: Score, slot: int, p: Params) -> int:
    """Clean slots a self-appeal needs: ``appeal_clean_slots`` doubled per recent appeal,
    at most ``appeal_clean_slots_max`` — repeat offenders wait longer (proportionate)."""
    return min(p.appeal_clean_slots << min(recent_appeals(rec, slot, p), 16),
               p.appeal_clean_slots_max)


def step_up(state: State, addr: bytes, slot: int) -> dict[str, Any]:
    """Grant a self-appeal: raise the score to the floor of the next tier up (suspended ->
    restricted -> watch -> good) and count the appeal. Recovery is graduated: each step
    needs its own clean period, so a deep fall takes several appeals."""
    p = load_params(state)
    rec = record(state, addr)
    new = next((floor for floor in (p.rep_suspend_below, p.rep_restrict_below, p.rep_watch_below)
                if rec.score < floor), rec.score)
    put_record(state, addr, dataclasses.replace(rec, score=new, last_appeal_slot=slot, approvals=(),
                                                appeals=recent_appeals(rec, slot, p) + 1))
    return {"type": "reputation", "addr": addr, "reason": "appeal", "delta": new - rec.score,
            "score": new, "slot": slot}


def restore(state: State, addr: bytes, slot: int) -> dict[str, Any]:
    """Grant a validator-approved appeal (``appeal_quorum`` approvals: a human review, e.g.
    of a faulty meter): raise the score to ``appeal_restore_score`` and clear approvals."""
    p = load_params(state)
    rec = record(state, addr)
    new = max(rec.score, p.appeal_restore_score)
    put_record(state, addr, dataclasses.replace(rec, score=new, last_appeal_slot=slot,
                                                approvals=()))
    return {"type": "reputation", "addr": addr, "reason": "appeal", "delta": new - rec.score,
            "score": new, "slot": slot}


def carry_penalty(state: State, owner: bytes, pseudonym: bytes, slot: int) -> dict[str, Any] | None:
    """Sanctions follow the participant: once a pseudonym is opened, the score it lost below
    neutral is taken from its owner too (returns the ``reputation`` event, or None)."""
    lost = NEUTRAL - reputation_of(state, pseudonym)
    if lost <= 0:
        return None
    rec = record(state, owner)
    new = max(MIN_SCORE, rec.score - lost)
    put_record(state, owner, dataclasses.replace(rec, score=new, last_penalty_slot=slot))
    return {"type": "reputation", "addr": owner, "reason": "pseudonym_penalty",
            "delta": new - rec.score, "score": new, "slot": slot, "pseudonym": pseudonym}
