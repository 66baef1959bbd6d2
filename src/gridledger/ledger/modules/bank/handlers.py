"""Bank handlers: typed message -> keeper calls + events."""

from __future__ import annotations

from typing import Any

from gridledger.crypto.sig import address_of
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.bank import keeper
from gridledger.ledger.modules.bank.errors import (
    PseudonymTransfer,
    TransferToSelf,
    UnknownRecipient,
)
from gridledger.ledger.modules.bank.expected import Registry
from gridledger.ledger.modules.bank.types import Transfer
from gridledger.ledger.state import State


class Handlers:
    """The bank's message handlers; ``registry`` is wired by the catalog."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def transfer(self, state: State, ctx: TxContext, msg: Transfer) -> None:
        """``bank/transfer``: rules ``transfer-to-self``, ``unknown-recipient``,
        ``pseudonym-transfer``, ``insufficient-funds``."""
        if msg.to == ctx.sender:
            raise TransferToSelf("transfer to self")
        if self.registry.participant(state, msg.to) is None:
            raise UnknownRecipient(f"{msg.to.hex()[:16]}… is not a registered participant")
        sender = self.registry.participant(state, ctx.sender)
        if sender is not None and "pseudonym" in sender.roles:
            raise PseudonymTransfer("pseudonyms cannot transfer money; their owner claims "
                                    "from the epoch pool")
        keeper.move(state, ctx.sender, msg.to, msg.amount_micro)
        ctx.emit("transfer", **{"from": ctx.sender, "to": msg.to, "amount_micro": msg.amount_micro})


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Mint each genesis participant's ``balance_micro`` (the only minting rule)."""
    for p in genesis.get("participants", []):
        if p.get("balance_micro", 0):
            keeper.mint_genesis(state, address_of(p["alg"], p["pk"]), int(p["balance_micro"]))
