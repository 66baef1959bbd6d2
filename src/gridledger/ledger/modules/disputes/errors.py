"""Disputes rules: one exception class per rule (the receipt names ``rule``). A claimant
without the dispute fee fails with the core rule ``insufficient-funds``."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class NoTrade(InvalidBody):
    """The slot has no such trade (or it was pruned after the dispute window)."""

    rule = "no-trade"


class NotParty(Unauthorized):
    """Only the trade's buyer can claim non-delivery or non-receipt."""

    rule = "not-party"


class NotSettled(InvalidBody):
    """Claims are decided after settlement, from the meter evidence."""

    rule = "not-settled"


class DisputeWindowClosed(InvalidBody):
    """The slot was settled more than ``dispute_window_s`` ago."""

    rule = "dispute-window-closed"


class AlreadyDecided(InvalidBody):
    """This claim on this trade was already decided (one decision per trade and claim)."""

    rule = "already-decided"


RULES = (NoTrade, NotParty, NotSettled, DisputeWindowClosed, AlreadyDecided)
