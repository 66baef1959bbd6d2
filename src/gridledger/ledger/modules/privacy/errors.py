"""Privacy rules: one exception class per rule (the receipt names ``rule``)."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


# -- configuration and membership --------------------------------------------------------------
class PrivacyDisabled(InvalidBody):
    """The chain's genesis has no privacy section."""

    rule = "privacy-disabled"


class JoinNeedsMember(Unauthorized):
    """Only a member holding a connection point (not a pseudonym) joins an epoch pool."""

    rule = "join-needs-member"


class JoinEpoch(InvalidBody):
    """A member joins the current or the next epoch only."""

    rule = "join-epoch"


class EpochClosed(InvalidBody):
    """The epoch no longer takes joins, attestations, certificates or registrations."""

    rule = "epoch-closed"


class AlreadyJoined(InvalidBody):
    """One join per member and epoch."""

    rule = "already-joined"


class TicketCap(Unauthorized):
    """More tickets than the member's reputation tier allows."""

    rule = "ticket-cap"


# -- attestation, certification, registration -----------------------------------------------
class NotTrustee(Unauthorized):
    """Batch certificates and escrow shares come from the community's trustees."""

    rule = "not-trustee"


class BatchExists(InvalidBody):
    """This batch root is already certified."""

    rule = "batch-exists"


class TicketsExceeded(InvalidBody):
    """More pseudonyms certified, or reading keys attested, than tickets sold in the epoch."""

    rule = "tickets-exceeded"


class BatchEndorsements(InvalidBody):
    """Fewer than k valid, distinct trustee signatures on the batch root."""

    rule = "batch-endorsements"


class AttestationExists(InvalidBody):
    """This root of reading keys is already attested."""

    rule = "attestation-exists"


class NoBatch(InvalidBody):
    """No certified batch with this root."""

    rule = "no-batch"


class PseudonymSlots(InvalidBody):
    """A pseudonym's slots must lie inside its epoch."""

    rule = "pseudonym-slots"


class UnknownFeeder(InvalidBody):
    """The feeder is not in the genesis privacy section."""

    rule = "unknown-feeder"


class NotCertified(InvalidBody):
    """The leaf is not in the certified batch."""

    rule = "not-certified"


class ReadingNotAttested(InvalidBody):
    """The pseudonym's reading key is not in an attested root of its epoch: its readings
    would not be vouched for by a meter."""

    rule = "reading-not-attested"


class PseudonymRegistered(InvalidBody):
    """The pseudonym's key or its reading key is already on the ledger."""

    rule = "pseudonym-registered"


# -- claims and late money ----------------------------------------------------------------------
class NotInPool(Unauthorized):
    """The sender did not join this epoch's pool."""

    rule = "not-in-pool"


class ClaimsClosed(InvalidBody):
    """The epoch is not taking claims."""

    rule = "claims-closed"


class AlreadyClaimed(InvalidBody):
    """One claim per member and epoch."""

    rule = "already-claimed"


class ClaimAboveDue(InvalidBody):
    """A claim above what the epoch can owe the member: its deposit when the pool pays out
    by bill, the pool's unclaimed money otherwise."""

    rule = "claim-above-due"


class CarryRefused(InvalidBody):
    """Only a pseudonym of a paid-out epoch carries money, into an open epoch's pool."""

    rule = "carry-refused"


# -- disputes and openings ---------------------------------------------------------------------
class NoDecision(InvalidBody):
    """No decided trade dispute with these coordinates."""

    rule = "no-decision"


class UnknownPseudonym(InvalidBody):
    """No registered pseudonym has this address."""

    rule = "unknown-pseudonym"


class PseudonymRetired(InvalidBody):
    """The pseudonym's epoch has paid out: its identity, reading key and firmware of record
    are retired (only its public record stays)."""

    rule = "pseudonym-retired"


class PseudonymPruned(InvalidBody):
    """The pseudonym's epoch paid out a dispute window ago and its record was pruned (only
    its used marker is left): it can no longer be opened."""

    rule = "pseudonym-pruned"


class NotPseudonymous(InvalidBody):
    """The party at fault trades under its own name: nothing to open."""

    rule = "not-pseudonymous"


class OpeningRequested(InvalidBody):
    """This dispute is already recorded."""

    rule = "opening-requested"


class NoDispute(InvalidBody):
    """Identities are opened only for a dispute recorded on the ledger."""

    rule = "no-dispute"


class NotDisputed(InvalidBody):
    """The dispute does not name this pseudonym."""

    rule = "not-disputed"


class EscrowPosted(InvalidBody):
    """The pseudonym's escrow is already on the ledger."""

    rule = "escrow-posted"


class EscrowMismatch(InvalidBody):
    """The escrow does not hash to the certified digest."""

    rule = "escrow-mismatch"


class EscrowNotPosted(InvalidBody):
    """Shares are released against a posted escrow (their commitments are in it)."""

    rule = "escrow-not-posted"


class ShareCommitment(InvalidBody):
    """A released share does not match the trustee's commitment in the certified escrow."""

    rule = "share-commitment"


class AlreadyReleased(InvalidBody):
    """One share per trustee, dispute and pseudonym."""

    rule = "already-released"


class NotBogus(InvalidBody):
    """A pseudonym is attributed through its meter only once its escrow proved bogus."""

    rule = "not-bogus"


class BadAttribution(InvalidBody):
    """The meter evidence does not bind this pseudonym to the connection point's meter."""

    rule = "bad-attribution"


# -- secure aggregation ------------------------------------------------------------------------
class NotAggregator(Unauthorized):
    """Partial sums come from the secure-aggregation committee."""

    rule = "not-aggregator"


class AnonymitySet(InvalidBody):
    """A partial sum covers fewer meters than the minimum anonymity set."""

    rule = "anonymity-set"


class PartialSignature(InvalidBody):
    """``sig`` is not the aggregator's signature over the partial."""

    rule = "partial-signature"


class PartialWindow(InvalidBody):
    """Partial sums for a slot are posted from its end until its settlement deadline."""

    rule = "partial-window"


class PartialPosted(InvalidBody):
    """One partial per aggregator, feeder and slot."""

    rule = "partial-posted"


class AggregateDecoded(InvalidBody):
    """This round's total is already decoded."""

    rule = "aggregate-decoded"


class EvidencePosition(InvalidBody):
    """Evidence partials must name one committee position."""

    rule = "evidence-position"


class NoMisconduct(InvalidBody):
    """The partials are not validly signed statements that prove misconduct."""

    rule = "no-misconduct"


class EvidenceRecorded(InvalidBody):
    """The aggregator is already sanctioned for this round."""

    rule = "evidence-recorded"


# -- roaming --------------------------------------------------------------------------------------
class RoamingNeedsDso(Unauthorized):
    """Roaming is booked and charged by the home DSO."""

    rule = "roaming-needs-dso"


class UnknownRoamingPartner(InvalidBody):
    """No roaming agreement with this foreign community / DSO."""

    rule = "unknown-roaming-partner"


class RoamingAccount(InvalidBody):
    """The billed account must be a registered member under its own name."""

    rule = "roaming-account"


class RoamingSeq(InvalidBody):
    """A booking carries the account's next roaming sequence number."""

    rule = "roaming-seq"


class RoamingBillingSig(Unauthorized):
    """The member's key did not sign this authorisation."""

    rule = "roaming-billing-sig"


class RoamingLimit(InvalidBody):
    """The charge exceeds the energy limit or price cap the member signed."""

    rule = "roaming-limit"


class RoamingAmount(InvalidBody):
    """The amount is not energy x price (``types.payment_micro``)."""

    rule = "roaming-amount"


class NoAuthorisation(InvalidBody):
    """The account has no roaming booking with this sequence number."""

    rule = "no-authorisation"


class RoamingClaimed(InvalidBody):
    """The booking was already charged or released."""

    rule = "roaming-claimed"


class RoamingExpired(InvalidBody):
    """The booking's hold has expired."""

    rule = "roaming-expired"


class NoGridAccount(InvalidBody):
    """Genesis names no grid account to credit."""

    rule = "roaming-no-grid-account"


RULES = (
    PrivacyDisabled, JoinNeedsMember, JoinEpoch, EpochClosed, AlreadyJoined, TicketCap,
    NotTrustee, BatchExists, TicketsExceeded, BatchEndorsements, AttestationExists, NoBatch,
    PseudonymSlots, UnknownFeeder, NotCertified, ReadingNotAttested, PseudonymRegistered,
    NotInPool, ClaimsClosed, AlreadyClaimed, ClaimAboveDue, CarryRefused, NoDecision, NotPseudonymous,
    UnknownPseudonym, PseudonymRetired, PseudonymPruned,
    OpeningRequested, NoDispute, NotDisputed, EscrowPosted, EscrowMismatch, EscrowNotPosted,
    ShareCommitment, AlreadyReleased, NotBogus, BadAttribution, NotAggregator, AnonymitySet,
    PartialSignature, PartialWindow, PartialPosted, AggregateDecoded, EvidencePosition,
    NoMisconduct, EvidenceRecorded, RoamingNeedsDso, UnknownRoamingPartner, RoamingAccount,
    RoamingSeq, RoamingBillingSig, RoamingLimit, RoamingAmount, NoAuthorisation,
    RoamingClaimed, RoamingExpired, NoGridAccount)
