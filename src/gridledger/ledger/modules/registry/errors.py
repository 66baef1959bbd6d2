"""Registry rules: one exception class per rule (the receipt names ``rule``).

The validator-set rules (``validator-exists``, ``key-registered``, ``unknown-validator``,
``last-validator``) live in ``gridledger.ledger.valset`` because governance raises them too;
the registry declares them.
"""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized
from gridledger.ledger.committee import BadCommittee
from gridledger.ledger.valset import VALSET_RULES


class RotatePop(InvalidBody):
    """The new key's proof of possession (``gl/rotate`` over the sender) does not verify."""

    rule = "rotate-pop"


class MeterPop(InvalidBody):
    """The meter key's proof of possession (``gl/meter-pop``) does not verify."""

    rule = "meter-pop"


class ApplyPop(InvalidBody):
    """The applicant key's proof of possession (``gl/apply``) does not verify."""

    rule = "apply-pop"


class CpTaken(InvalidBody):
    """The connection point already has (another) trading identity."""

    rule = "cp-taken"


class CpAlreadyAttested(InvalidBody):
    """The connection point is already attested for a pending applicant."""

    rule = "cp-already-attested"


class CpAttestedForAnother(InvalidBody):
    """The DSO attested this connection point for a different applicant."""

    rule = "cp-attested-for-another-applicant"


class CpHasMeter(InvalidBody):
    """The connection point already has a meter."""

    rule = "cp-has-meter"


class MeterKeyRegistered(InvalidBody):
    """The meter key is already a registered identity."""

    rule = "meter-key-registered"


class ApplicantRegistered(InvalidBody):
    """The applicant key is already a participant."""

    rule = "applicant-registered"


class ApplicationExists(InvalidBody):
    """The applicant key already has a pending application."""

    rule = "application-exists"


class NoApplication(InvalidBody):
    """Nothing is pending for this applicant."""

    rule = "no-application"


class AlreadyEndorsed(InvalidBody):
    """One endorsement per endorser and applicant."""

    rule = "already-endorsed"


class EndorserInactive(Unauthorized):
    """The endorser is not a registered participant."""

    rule = "endorser-inactive"


class EndorserPseudonym(Unauthorized):
    """Pseudonyms cannot endorse or sponsor applicants (one household, many pseudonyms)."""

    rule = "endorser-pseudonym"


class EndorserRole(Unauthorized):
    """The endorser has none of the endorser roles."""

    rule = "endorser-role"


class EndorserIsAttester(Unauthorized):
    """The DSO that attested the connection point cannot also endorse the applicant."""

    rule = "endorser-is-attester"


class EndorserReputation(Unauthorized):
    """The endorser's score is below ``endorse_min_reputation``."""

    rule = "endorser-reputation"


class PseudonymSlot(Unauthorized):
    """A pseudonym acts (trades, reports readings) only in the slots its certificate names."""

    rule = "pseudonym-slot"


class CommitteeRole(InvalidBody):
    """Validators and meters sign with one key (block votes, readings): they cannot be
    k-of-n committees, and a committee cannot take those roles."""

    rule = "committee-role"


RULES = (RotatePop, CommitteeRole, BadCommittee, MeterPop, ApplyPop, CpTaken, CpAlreadyAttested,
         CpAttestedForAnother, CpHasMeter, MeterKeyRegistered, ApplicantRegistered,
         ApplicationExists, NoApplication, AlreadyEndorsed, EndorserInactive, EndorserPseudonym,
         EndorserRole, EndorserIsAttester, EndorserReputation, PseudonymSlot, *VALSET_RULES)
