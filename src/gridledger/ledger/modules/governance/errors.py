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
    """An open or passed proposal already names this validator (or upgrades this module)."""

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


class UnknownModule(InvalidBody):
    """An upgrade names a module this chain does not run."""

    rule = "unknown-module"


class VersionNotNewer(InvalidBody):
    """An upgrade's version is not above the version the module runs (or is scheduled)."""

    rule = "version-not-newer"


class ActivationHeight(InvalidBody):
    """An upgrade activates sooner than ``upgrade_notice_blocks`` from now (validators need
    time to dry-run it and vote) or further than ``MAX_UPGRADE_HORIZON`` blocks."""

    rule = "activation-height"


class ParamNotVotable(InvalidBody):
    """The slot length, the grid account and every grid-fee parameter cannot be changed by
    a validator vote (fees: the DSO, within the genesis bounds)."""

    rule = "param-not-votable"


class BadParams(InvalidBody):
    """Proposed parameters do not parse or break a cross-parameter rule (the detail names
    it)."""

    rule = "bad-params"


class FeeBounds(InvalidBody):
    """A grid-fee rate (flat + a time-of-use entry) outside the genesis bounds
    ``[grid_fee_min_micro_per_kwh, grid_fee_max_micro_per_kwh]``, or a chain whose genesis
    set no bounds (fees fixed)."""

    rule = "fee-bounds"


class FeeTooLate(InvalidBody):
    """A fee change for a slot whose gate has closed: only future slots' fees change."""

    rule = "fee-too-late"


class FeeHorizon(InvalidBody):
    """A fee change more than ``MAX_FEE_HORIZON_DAYS`` ahead, or a schedule already holding
    ``MAX_TARIFFS`` entries."""

    rule = "fee-horizon"


class TouLength(InvalidBody):
    """A time-of-use table needs one entry per slot of the day (or none)."""

    rule = "tou-length"


RULES = (NotValidator, ProposalExists, TooManyProposals, ValidatorPop, BadEvidence, MinValidators,
         UnknownProposal, ProposalExpired, ProposalClosed, AlreadyVoted, UnknownModule,
         VersionNotNewer, ActivationHeight, ParamNotVotable, BadParams, FeeBounds, FeeTooLate,
         FeeHorizon, TouLength)
