"""Bank rules: one exception class per rule (the receipt names ``rule``)."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class TransferToSelf(InvalidBody):
    """A transfer names its own sender as recipient."""

    rule = "transfer-to-self"


class UnknownRecipient(InvalidBody):
    """The recipient address is not a registered participant (money would be stranded)."""

    rule = "unknown-recipient"


class PseudonymTransfer(Unauthorized):
    """A pseudonym cannot transfer money: its balance is the epoch pool's, returned by claim."""

    rule = "pseudonym-transfer"


class BadAmount(InvalidBody):
    """An amount handed to the bank is negative or not an integer."""

    rule = "bad-amount"


RULES = (TransferToSelf, UnknownRecipient, PseudonymTransfer, BadAmount)
