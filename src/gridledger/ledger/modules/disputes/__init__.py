"""Disputes: non-delivery / non-receipt claims decided from meter evidence, not claims.

A claim is decided at once, deterministically, from the settled trade and the signed
readings in state (``types.decide``). Settlement already applies the same evidence
automatically (a short seller compensates its buyer without anyone claiming), so a claim
cannot win more than the rules give; a false claim costs the claimant the dispute fee (paid
to the wrongly accused seller) and reputation. Every decision is a receipt event and a
state record. Identity disclosure by trustees (pseudonymous trading) is not here yet.

State
  ``disp/c/<slot:8><trade:4><claim>``  {claimant, respondent, outcome, evidence, fee_micro,
                                        remedy_micro, decided_at}
Messages
  ``disputes/claim``  {slot, trade (index), claim: non-delivery|non-receipt} (the buyer)
Events
  ``dispute_decided`` {slot, trade, claim, claimant, respondent, outcome: upheld|rejected,
  evidence {energy_wh, delivered_wh, received_wh, seller_export_wh, buyer_import_wh},
  fee_micro, remedy_micro}; ``reputation`` for a lost claim
Invariants
  decisions-valid: outcomes are upheld/rejected; only rejected claims carry a fee.
"""

from gridledger.ledger.modules.disputes.keeper import get_decision
from gridledger.ledger.modules.disputes.module import MODULE
from gridledger.ledger.modules.disputes.types import decide

__all__ = ["MODULE", "decide", "get_decision"]
