"""Metering rules: one exception class per rule (the receipt names ``rule``)."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class NotAMeter(Unauthorized):
    """The sender is not a meter bound to a connection point."""

    rule = "not-a-meter"


class ReadingEarly(InvalidBody):
    """A reading for a slot that has not ended yet (retry after the slot)."""

    rule = "reading-early"


class ReadingLate(InvalidBody):
    """A reading after its slot's settlement deadline (the slot is settled without it)."""

    rule = "reading-late"


class OneReadingPerSlot(InvalidBody):
    """The connection point already reported this slot."""

    rule = "one-reading-per-slot"


class UnknownCp(InvalidBody):
    """No participant holds the connection point a flag names."""

    rule = "unknown-cp"


class FlagWindow(InvalidBody):
    """A flag outside its slot's reading window (end of slot to settlement deadline)."""

    rule = "flag-window"


class OneFlagPerSlot(InvalidBody):
    """The connection point's reading for this slot is already flagged."""

    rule = "one-flag-per-slot"


RULES = (NotAMeter, ReadingEarly, ReadingLate, OneReadingPerSlot, UnknownCp, FlagWindow,
         OneFlagPerSlot)
