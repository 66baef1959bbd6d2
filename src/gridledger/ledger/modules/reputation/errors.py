"""Reputation rules: one exception class per rule (the receipt names ``rule``)."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class AppealNotSanctioned(InvalidBody):
    """The score is not below the watch threshold: there is nothing to appeal."""

    rule = "appeal-not-sanctioned"


class AppealTooEarly(Unauthorized):
    """Fewer than ``appeal_clean_slots`` slots since the last penalty or appeal."""

    rule = "appeal-too-early"


class AppealAlreadyApproved(InvalidBody):
    """This validator already approved this appeal."""

    rule = "appeal-already-approved"


RULES = (AppealNotSanctioned, AppealTooEarly, AppealAlreadyApproved)
