"""Governance rules: one exception class per rule (the receipt names ``rule``).

The validator-set rules shared with the registry (``validator-exists``, ``key-registered``,
``unknown-validator``, ``last-validator``) are in ``gridledger.ledger.valset``.
"""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class NotValidator(Unauthorized):
    """Only members of the active validator set propose or vote on validator-set changes."""

    rule = "not-validator"


class ProposalExists(InvalidBody):
    """An open or passed proposal already names this validator."""

    rule = "proposal-exists"


class TooManyProposals(InvalidBody):
    """At most ``MAX_OPEN_PROPOSALS`` proposals are open at once."""

    rule = "too-many-proposals"


class ValidatorPop(InvalidBody):
    """The new validator key's proof of possession (``gl/validator-pop``) does not verify."""

    rule = "validator-pop"


class BadEvidence(InvalidBody):
    """Equivocation evidence is malformed or does not verify under the target's key."""

    rule = "bad-evidence"


class MinValidators(InvalidBody):
    """A removal would leave fewer than ``min_validators`` validators."""

    rule = "min-validators"


class UnknownProposal(InvalidBody):
    """No validator-set proposal has this id."""

    rule = "unknown-proposal"


class ProposalExpired(InvalidBody):
    """The proposal took votes until its expiry height, which has passed."""

    rule = "proposal-expired"


class ProposalClosed(InvalidBody):
    """The proposal already passed, was applied or failed."""

    rule = "proposal-closed"


class AlreadyVoted(InvalidBody):
    """One vote per validator and proposal."""

    rule = "already-voted"


RULES = (NotValidator, ProposalExists, TooManyProposals, ValidatorPop, BadEvidence, MinValidators,
         UnknownProposal, ProposalExpired, ProposalClosed, AlreadyVoted)
