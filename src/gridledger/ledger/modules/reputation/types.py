"""Reputation: scores, tiers and the reasons a score changes."""

from __future__ import annotations

from typing import Literal

from gridledger.ledger.modules.governance.types import Params

MIN_SCORE = 0
MAX_SCORE = 1000
NEUTRAL = 500

Tier = Literal["good", "watch", "restricted", "suspended"]
Reason = Literal["trade_settled", "non_delivery", "missing_reading", "non_payment",
                 "dispute_lost", "commitment_forfeited", "rejected_tx", "appeal"]


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
    }
    return table.get(reason, 0)
