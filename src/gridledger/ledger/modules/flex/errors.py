"""Flexibility rules: one exception class per rule (the receipt names ``rule``).

A request from anyone but the DSO fails the envelope's role check (core rule
``unauthorized``, naming the roles the kind needs); a deposit or escrow that cannot be
locked fails with the core rule ``insufficient-funds``.
"""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class RequestWindow(InvalidBody):
    """A request's gate must lie after the block time and no later than its first slot."""

    rule = "request-window"


class UnknownRequest(InvalidBody):
    """No such flexibility request (or it is finished and pruned)."""

    rule = "unknown-request"


class FlexGateClosed(InvalidBody):
    """Offers, revocations and cancellations of a request close at its gate."""

    rule = "flex-gate-closed"


class NotEligible(Unauthorized):
    """The sender's connection point is not one the request names."""

    rule = "not-eligible"


class AbovePriceCap(InvalidBody):
    """An offer's price is above the request's price cap."""

    rule = "above-price-cap"


class AboveEnvelope(InvalidBody):
    """An offer asks more in a slot than the DSO's envelope leaves the cp in that direction."""

    rule = "above-envelope"


class AboveCapacity(InvalidBody):
    """An offer asks more in a slot than the registered device can move in one slot."""

    rule = "above-capacity"


class UnregisteredDevice(InvalidBody):
    """The cp has no registered flexible device of the offer's kind."""

    rule = "unregistered-device"


class MaxOffers(InvalidBody):
    """At most ``max_offers_per_request`` offers per participant and request."""

    rule = "max-offers"


class NoOffer(InvalidBody):
    """No such offer in the request."""

    rule = "no-offer"


class NotOfferOwner(Unauthorized):
    """Only an offer's owner may revoke it."""

    rule = "not-offer-owner"


class NotRequester(Unauthorized):
    """Only the DSO identity that posted a request may order or cancel it."""

    rule = "not-requester"


class OrderWindow(InvalidBody):
    """An order is accepted from the request's gate until its first slot starts."""

    rule = "order-window"


class AlreadyOrdered(InvalidBody):
    """A request is ordered once (or it was cancelled or expired)."""

    rule = "already-ordered"


class NotMeritOrder(InvalidBody):
    """The order's activations are not the merit-order selection for its effective energy."""

    rule = "not-merit-order"


class AboveRequest(InvalidBody):
    """An order's effective energy in a slot is more than the request asked for."""

    rule = "above-request"


class OverBudget(InvalidBody):
    """The order costs more than the request's escrowed budget."""

    rule = "over-budget"


class NotActivated(InvalidBody):
    """A report for a slot in which the offer was not activated."""

    rule = "not-activated"


class ReportWindow(InvalidBody):
    """A delivery report for a slot is accepted from its end until its settlement deadline."""

    rule = "report-window"


class AlreadyReported(InvalidBody):
    """One report per activated offer and slot."""

    rule = "already-reported"


class NotDelegate(Unauthorized):
    """A VEN reports only for the offers of the member that enrolled it."""

    rule = "not-delegate"


class FlexSuspended(Unauthorized):
    """A participant the reputation module suspended offers no flexibility until an appeal
    (as it places no market orders: no new exposure for the one already failing)."""

    rule = "flex-suspended"


class PseudonymDevice(InvalidBody):
    """No device record at a pseudonym's stand-in cp (``ps:<addr>``): a kind and power per
    pseudonym would label each of a household's per-slot pseudonyms with its equipment and
    link them. The DSO, which knows its customers' devices, caps the pseudonym's eligible
    ``max_wh`` by the device's power instead."""

    rule = "pseudonym-device"


class PseudonymVen(Unauthorized):
    """A pseudonym enrols no VEN: the enrolment (an identity, a name) would outlive the
    pseudonym's retirement and its name would link the household's pseudonyms; the
    pseudonym reports its delivery itself."""

    rule = "pseudonym-ven"


class VenTaken(InvalidBody):
    """The VEN name (OAuth client id) or its key is already enrolled."""

    rule = "ven-taken"


RULES = (RequestWindow, UnknownRequest, FlexGateClosed, NotEligible, AbovePriceCap,
         AboveEnvelope, AboveCapacity, UnregisteredDevice, MaxOffers, NoOffer, NotOfferOwner,
         NotRequester, OrderWindow, AlreadyOrdered, NotMeritOrder, AboveRequest, OverBudget,
         NotActivated, ReportWindow, AlreadyReported, NotDelegate, VenTaken, FlexSuspended,
         PseudonymDevice, PseudonymVen)
