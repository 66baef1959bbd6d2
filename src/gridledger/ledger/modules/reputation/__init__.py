"""Reputation: a score per participant (and validator), graduated sanctions, appeals.

Scores are integers in [0, 1000]; 500 is neutral and is what a participant without a
record has. Scores rise with settled trades and fall with failed delivery, missing meter
readings, non-payment, lost disputes, forfeited sealed-bid commitments and (through an
execution hook, see docs/market.md) rejected transactions. Tiers (parameters):

  good >= rep_watch_below > watch >= rep_restrict_below > restricted >= rep_suspend_below > suspended

Sanctions: watch and restricted sellers lock a larger delivery deposit
(``rep_deposit_pct_*``), the node scales admission quotas by ``reputation_of / 500``, and a
suspended participant may not place orders or commitments. No sanction is permanent: an
appeal restores the score to ``appeal_restore_score``.

State
  ``rep/s/<addr>``  {score, last_penalty_slot, last_appeal_slot, approvals: [validator]}
Messages
  ``reputation/appeal``          {}: after ``appeal_clean_slots`` slots with no penalty and no
                                 earlier appeal, a sanctioned participant's score is restored
  ``reputation/approve_appeal``  {addr}: by a validator; ``appeal_quorum`` distinct approvals
                                 restore ``addr`` at once
Events
  ``reputation`` {addr, reason, delta, score, slot};  ``appeal_approved`` {addr, validator, approvals}
Invariants
  score-range: every score is an integer in [0, 1000].
"""

from gridledger.ledger.modules.reputation.keeper import (
    adjust,
    deposit_pct,
    record_rejected,
    reputation_of,
    tier_of,
)
from gridledger.ledger.modules.reputation.module import MODULE

__all__ = ["MODULE", "adjust", "deposit_pct", "record_rejected", "reputation_of", "tier_of"]
