"""Disputes handlers: claims decided at once from the meter evidence in state."""

from __future__ import annotations

from gridledger.errors import InsufficientFunds
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.disputes import keeper
from gridledger.ledger.modules.disputes.errors import (
    AlreadyDecided,
    DisputeWindowClosed,
    NotParty,
    NoTrade,
    NotSettled,
)
from gridledger.ledger.modules.disputes.expected import (
    Bank,
    Market,
    Metering,
    Registry,
    Reputation,
)
from gridledger.ledger.modules.disputes.types import ClaimMsg, Decision, Evidence, decide
from gridledger.ledger.params import load_params, slot_of
from gridledger.ledger.state import State


class Handlers:
    """The disputes handler; its dependencies are wired by the catalog."""

    def __init__(self, market: Market, metering: Metering, registry: Registry, bank: Bank,
                 reputation: Reputation) -> None:
        self.market, self.metering, self.registry = market, metering, registry
        self.bank, self.reputation = bank, reputation

    def _metered(self, state: State, addr: bytes, slot: int, what: str) -> int | None:
        cp = self.registry.cp_of(state, addr)
        r = self.metering.trusted_reading_of(state, slot, cp) if cp else None
        if r is None:
            return None
        return r.export_wh if what == "export" else r.import_wh

    def claim(self, state: State, ctx: TxContext, msg: ClaimMsg) -> None:
        """``disputes/claim`` by the trade's buyer, after settlement and within
        ``dispute_window_s``. A rejected claim costs ``dispute_fee_micro`` (paid to the
        wrongly accused seller) and reputation; an upheld one costs nothing. Rules
        ``no-trade``, ``not-party``, ``not-settled``, ``dispute-window-closed``,
        ``already-decided``, ``insufficient-funds``."""
        slot, index = msg.slot, msg.trade
        trade = self.market.trade(state, slot, index)
        if trade is None:
            raise NoTrade(f"slot {slot} has no trade {index}")
        if trade.buyer != ctx.sender:
            raise NotParty("only the trade's buyer can claim non-delivery or non-receipt")
        rec = self.market.slot_record(state, slot)
        if rec is None or rec.status != "settled" or rec.settled_at is None:
            raise NotSettled("claims are decided after settlement, from the meter evidence")
        p = load_params(state)
        if ctx.block.slot_time >= rec.settled_at + p.dispute_window_s:
            raise DisputeWindowClosed(f"slot {slot} settled at {rec.settled_at}")
        if keeper.decision(state, slot, index, msg.claim) is not None:
            raise AlreadyDecided(f"{msg.claim} on slot {slot} trade {index} was decided")
        if self.bank.balance(state, ctx.sender) < p.dispute_fee_micro:
            raise InsufficientFunds(f"a claim needs the dispute fee {p.dispute_fee_micro} available")
        outcome = decide(msg.claim, trade)
        evidence = Evidence(energy_wh=trade.energy_wh, delivered_wh=trade.delivered_wh or 0,
                            received_wh=trade.received_wh or 0,
                            seller_export_wh=self._metered(state, trade.seller, slot, "export"),
                            buyer_import_wh=self._metered(state, trade.buyer, slot, "import"))
        fee = 0
        if outcome == "rejected":
            fee = p.dispute_fee_micro
            self.bank.move(state, ctx.sender, trade.seller, fee)
            ctx.events.append(self.reputation.adjust(state, ctx.sender, "dispute_lost",
                                                     slot_of(ctx.block.slot_time, p)))
        # Settlement already applied the same evidence: an upheld claim's remedy is the
        # compensation settlement paid, recorded here so the receipt shows it.
        remedy = (trade.compensation_micro or 0) if outcome == "upheld" else 0
        keeper.put_decision(state, slot, index, msg.claim, Decision(
            claimant=ctx.sender, respondent=trade.seller, outcome=outcome, evidence=evidence,
            fee_micro=fee, remedy_micro=remedy, decided_at=ctx.block.slot_time))
        ctx.emit("dispute_decided", slot=slot, trade=index, claim=msg.claim, claimant=ctx.sender,
                 respondent=trade.seller, outcome=outcome, evidence=evidence.to_obj(),
                 fee_micro=fee, remedy_micro=remedy)
