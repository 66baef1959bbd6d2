"""Errors of the privacy package (all under ``GridLedgerError``).

::

    PrivacyError (rule)
    ├── AggregationFailed     a round cannot produce a trustworthy total
    │   └── AnonymitySetTooSmall  the total would cover too few meters
    ├── RoundAlreadySigned    a second check or partial for one round
    ├── BudgetExceeded        a release would overspend the differential-privacy budget
    ├── InvalidCertificate    a pseudonym certificate lacks k valid distinct endorsements
    ├── EndorsementRefused    a trustee will not endorse a malformed request
    ├── OpeningRefused        an identity opening lacks a recorded dispute or k trustees
    └── RoamingRejected       a roaming session or claim does not check out

Each carries ``rule``, a stable kebab-case name the ledger integration can put in receipts.
"""

from __future__ import annotations

from gridledger.errors import GridLedgerError


class PrivacyError(GridLedgerError):
    """Base of the privacy package's errors."""

    rule: str = "privacy"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.rule}: {detail}" if detail else self.rule)


class AggregationFailed(PrivacyError):
    """Too few valid partial sums, or more bad ones than can be located."""

    rule = "aggregation-failed"


class BudgetExceeded(PrivacyError):
    """The release would take a (feeder, day) past its epsilon budget."""

    rule = "dp-budget-exceeded"


class InvalidCertificate(PrivacyError):
    """The pseudonym certificate does not carry k valid, distinct trustee endorsements."""

    rule = "invalid-pseudonym-certificate"


class EndorsementRefused(PrivacyError):
    """The pseudonym request is malformed: bad proof of possession or escrow share."""

    rule = "endorsement-refused"


class OpeningRefused(PrivacyError):
    """The identity opening is not for a recorded dispute, or lacks k valid trustee shares."""

    rule = "opening-refused"


class RoamingRejected(PrivacyError):
    """A roaming admission, receipt or claim fails a check."""

    rule = "roaming-rejected"


class AnonymitySetTooSmall(AggregationFailed):
    """A total would cover fewer meters than the committee's minimum anonymity set."""

    rule = "anonymity-set"


class RoundAlreadySigned(PrivacyError):
    """An aggregator signs one share check and one partial sum per round, never a second."""

    rule = "one-per-round"
