"""Disputes handlers: claims decided at once from the meter evidence in state."""

from __future__ import annotations

from typing import Any

from gridledger.errors import InsufficientFunds, InvalidBody, Unauthorized
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.disputes import keeper
from gridledger.ledger.modules.disputes.types import CLAIMS, decide
from gridledger.ledger.modules.governance.keeper import load_params
from gridledger.ledger.modules.market.keeper import get_slot, get_trade
from gridledger.ledger.modules.metering.keeper import trusted_reading_of
from gridledger.ledger.modules.registry.keeper import cp_of
from gridledger.ledger.modules.reputation.keeper import adjust
from gridledger.ledger.state import State
from gridledger.ledger.validate import require_int, require_str


def _metered(state: State, addr: bytes, slot: int, field: str) -> int | None:
    cp = cp_of(state, addr)
    r = trusted_reading_of(state, slot, cp) if cp else None
    return None if r is None else int(getattr(r, field))


def handle_claim(state: State, ctx: TxContext, body: dict[str, Any]) -> None:
    """``disputes/claim {slot, trade, claim}`` by the trade's buyer, after settlement and
    within ``dispute_window_s``. A rejected claim costs ``dispute_fee_micro`` (paid to the
    wrongly accused seller) and reputation; an upheld one costs nothing."""
    if set(body) != {"slot", "trade", "claim"}:
        raise InvalidBody("disputes/claim has exactly the fields claim, slot, trade")
    slot = require_int(body, "slot", maximum=2**40)
    index = require_int(body, "trade", maximum=2**32 - 1)
    claim = require_str(body, "claim", choices=CLAIMS)
    trade = get_trade(state, slot, index)
    if trade is None:
        raise InvalidBody(f"no-trade: slot {slot} has no trade {index}")
    if trade["buyer"] != ctx.sender:
        raise Unauthorized("not-party: only the trade's buyer can claim non-delivery or non-receipt")
    rec = get_slot(state, slot)
    if rec is None or rec["status"] != "settled":
        raise InvalidBody("not-settled: claims are decided after settlement, from the meter evidence")
    p = load_params(state)
    if ctx.block.slot_time >= rec["settled_at"] + p.dispute_window_s:
        raise InvalidBody("dispute-window-closed")
    if keeper.get_decision(state, slot, index, claim) is not None:
        raise InvalidBody(f"already-claimed: {claim} on slot {slot} trade {index} was decided")
    if bank.balance(state, ctx.sender) < p.dispute_fee_micro:
        raise InsufficientFunds(f"a claim needs the dispute fee {p.dispute_fee_micro} available")
    outcome = decide(claim, trade)
    evidence = {"energy_wh": trade["energy_wh"], "delivered_wh": trade["delivered_wh"],
                "received_wh": trade["received_wh"],
                "seller_export_wh": _metered(state, trade["seller"], slot, "export_wh"),
                "buyer_import_wh": _metered(state, trade["buyer"], slot, "import_wh")}
    fee = 0
    if outcome == "rejected":
        fee = p.dispute_fee_micro
        bank.move(state, ctx.sender, trade["seller"], fee)
        slot_now = ctx.block.slot_time // p.slot_seconds
        ctx.events.append(adjust(state, ctx.sender, "dispute_lost", slot_now))
    # Settlement already applied the same evidence: an upheld claim's remedy is the
    # compensation settlement paid, recorded here so the receipt shows it.
    remedy = trade["compensation_micro"] if outcome == "upheld" else 0
    keeper.put_decision(state, slot, index, claim, {
        "claimant": ctx.sender, "respondent": trade["seller"], "outcome": outcome,
        "evidence": evidence, "fee_micro": fee, "remedy_micro": remedy,
        "decided_at": ctx.block.slot_time})
    ctx.emit("dispute_decided", slot=slot, trade=index, claim=claim, claimant=ctx.sender,
             respondent=trade["seller"], outcome=outcome, evidence=evidence, fee_micro=fee,
             remedy_micro=remedy)
