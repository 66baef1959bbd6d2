"""Reputation: scores, tiers, the reasons a score changes, the record and messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gridledger.ledger.module import Body
from gridledger.ledger.params import Params
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import require_addr, require_fields

MIN_SCORE = 0
MAX_SCORE = 1000
NEUTRAL = 500
NO_SLOT = -1

APPEAL = "reputation/appeal"
APPROVE_APPEAL = "reputation/approve_appeal"

Tier = Literal["good", "watch", "restricted", "suspended"]
Reason = Literal["trade_settled", "non_delivery", "missing_reading", "non_payment",
                 "dispute_lost", "commitment_forfeited", "rejected_tx", "appeal", "market_abuse"]


@dataclass(frozen=True)
class Score(Record):
    """``rep/s/<addr>``: a participant's score and the clocks appeals wait on."""

    score: int = NEUTRAL
    last_penalty_slot: int = NO_SLOT
    last_appeal_slot: int = NO_SLOT
    approvals: tuple[bytes, ...] = ()
    appeals: int | None = optional()
    """Self-appeals granted recently (absent until the first: older records keep their bytes)."""


@dataclass(frozen=True)
class Appeal(Record):
    """``reputation/appeal``: an empty body; the sender appeals its own sanction."""


@dataclass(frozen=True)
class ApproveAppeal(Record):
    """``reputation/approve_appeal``: a validator approves ``addr``'s appeal."""

    addr: bytes


def parse_appeal(body: Body) -> Appeal:
    require_fields(body, APPEAL, ())
    return Appeal()


def parse_approve_appeal(body: Body) -> ApproveAppeal:
    require_fields(body, APPROVE_APPEAL, ("addr",))
    return ApproveAppeal(require_addr(body, "addr"))


def tier_for(score: int, p: Params) -> Tier:
    """Graduated sanctions: the tier a score falls in (thresholds are parameters)."""
    if score < p.rep_suspend_below:
        return "suspended"
    if score < p.rep_restrict_below:
        return "restricted"
    if score < p.rep_watch_below:
        return "watch"
    return "good"


def deposit_pct_for(tier: Tier, p: Params) -> int:
    """Seller delivery deposit, in percent of the base deposit, for a tier."""
    if tier == "watch":
        return p.rep_deposit_pct_watch
    if tier in ("restricted", "suspended"):
        return p.rep_deposit_pct_restrict
    return 100


def delta_for(reason: Reason, p: Params) -> int:
    """Score change for an event (appeals set the score instead; 0 here)."""
    table: dict[str, int] = {
        "trade_settled": p.rep_gain_trade,
        "non_delivery": -p.rep_loss_non_delivery,
        "missing_reading": -p.rep_loss_missing_reading,
        "non_payment": -p.rep_loss_non_payment,
        "dispute_lost": -p.rep_loss_dispute,
        "commitment_forfeited": -p.rep_loss_forfeit,
        "rejected_tx": -p.rep_loss_rejected,
        "market_abuse": -p.rep_loss_market_abuse,
    }
    return table.get(reason, 0)
