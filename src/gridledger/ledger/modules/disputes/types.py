"""Dispute claims, the decision record, and the deterministic rule that decides a claim
from meter evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gridledger.ledger.module import Body
from gridledger.ledger.modules.disputes.expected import SettledTrade
from gridledger.ledger.record import Record
from gridledger.ledger.validate import require_fields, require_int, require_str

CLAIM = "disputes/claim"
Claim = Literal["non-delivery", "non-receipt"]
CLAIMS: tuple[Claim, ...] = ("non-delivery", "non-receipt")
Outcome = Literal["upheld", "rejected"]
MAX_SLOT = 2**40
MAX_TRADE = 2**32 - 1


@dataclass(frozen=True)
class ClaimMsg(Record):
    """``disputes/claim``: the buyer of trade ``trade`` of ``slot`` claims ``claim``."""

    slot: int
    trade: int
    claim: Claim


def parse_claim(body: Body) -> ClaimMsg:
    """Exactly ``slot`` (0..2^40), ``trade`` (0..2^32-1) and ``claim`` (non-delivery or
    non-receipt). Raises ``InvalidBody``."""
    require_fields(body, CLAIM, ("slot", "trade", "claim"))
    claim: Claim = "non-delivery" if require_str(body, "claim", choices=CLAIMS) == "non-delivery" \
        else "non-receipt"
    return ClaimMsg(require_int(body, "slot", maximum=MAX_SLOT),
                    require_int(body, "trade", maximum=MAX_TRADE), claim)


@dataclass(frozen=True)
class Evidence(Record):
    """What a decision rests on: the trade as settled and both meters (None: no reading)."""

    energy_wh: int
    delivered_wh: int
    received_wh: int
    seller_export_wh: int | None
    buyer_import_wh: int | None


@dataclass(frozen=True)
class Decision(Record):
    """``disp/c/<slot><trade><claim>``: a decided claim."""

    claimant: bytes
    respondent: bytes
    outcome: Outcome
    evidence: Evidence
    fee_micro: int
    remedy_micro: int
    decided_at: int


def decide(claim: str, trade: SettledTrade) -> Outcome:
    """Decide a buyer's claim on a settled trade from the settled meter evidence.

    * ``non-delivery`` (the seller did not inject): upheld iff the seller's metered export
      allocated to this trade is below its energy (``delivered_wh < energy_wh``).
    * ``non-receipt`` (the buyer did not get the energy): upheld iff the buyer's metered
      import allocated to this trade is below its energy (``received_wh < energy_wh``);
      when the buyer's meter shows the import, the claim is false and rejected.

    A missing buyer reading counts as import of everything delivered (settlement rule 1),
    so withholding one's own reading can never win a claim.
    """
    if claim == "non-delivery":
        return "upheld" if (trade.delivered_wh or 0) < trade.energy_wh else "rejected"
    return "upheld" if (trade.received_wh or 0) < trade.energy_wh else "rejected"
