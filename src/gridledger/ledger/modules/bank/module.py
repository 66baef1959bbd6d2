"""Bank handlers, genesis and invariants."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InvalidBody, InvariantViolation
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules import Module
from gridledger.ledger.modules.bank import keeper
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_addr, require_int


def handle_transfer(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    to = require_addr(body, "to")
    amount = require_int(body, "amount_micro", minimum=1)
    if to == ctx.sender:
        raise InvalidBody("transfer to self")
    from gridledger.ledger.modules.registry.keeper import require_participant

    require_participant(state, to)
    sender = require_participant(state, ctx.sender)
    if "pseudonym" in sender["roles"]:
        # a pseudonym's money is the epoch pool's; it comes back to its owner by claim
        raise InvalidBody("pseudonym-transfer: pseudonyms cannot transfer money")
    keeper.move(state, ctx.sender, to, amount)
    ctx.emit("transfer", **{"from": ctx.sender, "to": to, "amount_micro": amount})


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    for p in genesis.get("participants", []):
        if p.get("balance_micro", 0):
            from gridledger.crypto.sig import address_of

            keeper.mint_genesis(state, address_of(p["alg"], p["pk"]), int(p["balance_micro"]))


def total_supply(state: State) -> None:
    """Invariant total-supply: spendable + locked money equals the supply minted at genesis."""
    total = sum(int(v) for _, v in state.items_with_prefix(keeper.BAL))
    total += sum(int(v) for _, v in state.items_with_prefix(keeper.LOCK))
    supply = state.get_int(keeper.SUPPLY)
    if total != supply:
        raise InvariantViolation(f"total-supply: balances {total} != supply {supply}")


def nonnegative(state: State) -> None:
    """Invariant nonnegative: no balance or locked amount below zero."""
    for prefix in (keeper.BAL, keeper.LOCK):
        for k, v in state.items_with_prefix(prefix):
            if int(v) < 0:
                raise InvariantViolation(f"nonnegative: {k!r} = {v}")


MODULE = Module(
    name="bank",
    version=1,
    handlers={"bank/transfer": handle_transfer},
    init_genesis=init_genesis,
    invariants=(total_supply, nonnegative),
)
