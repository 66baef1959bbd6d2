"""Market rules: one exception class per rule (the receipt names ``rule``). An order whose
escrow cannot be locked fails with the core rule ``insufficient-funds``; a pseudonym
outside its slots with the registry's ``pseudonym-slot``."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class MarketDisabled(InvalidBody):
    """No grid account (a dso in genesis or param ``grid_account``): nobody can trade."""

    rule = "market-disabled"


class NoConnectionPoint(Unauthorized):
    """Only identities holding a connection point trade energy."""

    rule = "no-connection-point"


class SellNeedsProsumer(Unauthorized):
    """Consumers can only buy."""

    rule = "sell-needs-prosumer"


class ReputationSuspended(Unauthorized):
    """A suspended participant places no buy orders, replacements or commitments (its open
    sell orders are admitted, mitigated to the feed-in tariff: must-offer)."""

    rule = "reputation-suspended"


class GateClosed(InvalidBody):
    """Orders, cancels, replaces and commitments for a slot close at its gate."""

    rule = "gate-closed"


class BeyondHorizon(InvalidBody):
    """The slot is more than ``order_horizon_slots`` ahead."""

    rule = "beyond-horizon"


class MaxOrdersPerSlot(InvalidBody):
    """At most ``max_orders_per_slot`` orders and commitments per participant and slot."""

    rule = "max-orders-per-slot"


class OneSidePerSlot(InvalidBody):
    """A participant's orders in one slot are all buys or all sells."""

    rule = "one-side-per-slot"


class NoOrder(InvalidBody):
    """No such order (or commitment) in the slot."""

    rule = "no-order"


class NotOwner(Unauthorized):
    """Only an order's or commitment's owner may change, cancel or reveal it."""

    rule = "not-owner"


class NoCommitment(InvalidBody):
    """No such sealed-bid commitment in the slot."""

    rule = "no-commitment"


class OutsideRevealWindow(InvalidBody):
    """Reveals for a slot are accepted from its gate until its reveal deadline."""

    rule = "outside-reveal-window"


class CommitmentMismatch(InvalidBody):
    """The revealed order does not open the commitment."""

    rule = "commitment-mismatch"


class EnvelopeLate(InvalidBody):
    """Operating envelopes for a slot are accepted until it clears (its reveal deadline)."""

    rule = "envelope-late"


class DuplicateEnvelope(InvalidBody):
    """One ``market/envelope`` names a connection point twice."""

    rule = "duplicate-envelope"


RULES = (MarketDisabled, NoConnectionPoint, SellNeedsProsumer,
         ReputationSuspended, GateClosed, BeyondHorizon, MaxOrdersPerSlot, OneSidePerSlot,
         NoOrder, NotOwner, NoCommitment, OutsideRevealWindow, CommitmentMismatch,
         EnvelopeLate, DuplicateEnvelope)
