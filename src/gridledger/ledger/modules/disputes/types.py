"""Dispute claims and the deterministic rules that decide them from meter evidence."""

from __future__ import annotations

from typing import Any, Literal

Claim = Literal["non-delivery", "non-receipt"]
CLAIMS: tuple[str, ...] = ("non-delivery", "non-receipt")
Outcome = Literal["upheld", "rejected"]


def decide(claim: str, trade: dict[str, Any]) -> Outcome:
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
        return "upheld" if trade["delivered_wh"] < trade["energy_wh"] else "rejected"
    return "upheld" if trade["received_wh"] < trade["energy_wh"] else "rejected"
