"""The members' trading agents (``sim.agents``): orders at block A, learning after clearing.

Each trading slot: the public ``MarketView`` (tariffs, fee, the DSO's community forecast),
then every member's agent decides its orders and battery plan inside its envelope; attacks
may rewrite a member's intents (``Attack.orders``). Orders are signed with the member's
trading key for the slot (``ctx.identities``). After the slot clears, each agent observes
the price and its own fills.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar, cast

from gridledger.grid import SLOTS_PER_DAY
from gridledger.ledger.modules.governance.types import Params
from gridledger.ledger.modules.market.types import (
    buyer_escrow_micro,
    max_fee_rate,
    seller_deposit_micro,
    seller_deposit_rate,
)
from gridledger.ledger.modules.reputation.types import Tier, deposit_pct_for
from gridledger.ledger.tx import TxSigner
from gridledger.sim.agents import MIN_ORDER_WH, Agent, Intent, MarketView, make_agent
from gridledger.sim.clock import Step
from gridledger.sim.community import household_net_wh
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature

UNLIMITED = (1 << 62, 1 << 62)
"""Envelope of a cp the DSO published none for: nothing limits it."""


def affordable(it: Intent, spendable_micro: int, p: Params, tier: str) -> Intent | None:
    """``it`` cut to what ``spendable_micro`` can back as the market locks it: a sell's
    delivery deposit at the tier's rate, a buy's escrow (its limit + the highest grid fee)
    (``ledger/modules/market/types.py``); None when less than ``MIN_ORDER_WH`` is left.

    A client knows its balance and never sends an order the ledger must refuse
    (``insufficient-funds``). It matters under privacy mode: a per-slot pseudonym's money
    is its pool allowance (5 units in the demo: a sell of ~14.3 kWh), and the largest PV
    household exports up to 15.6 kWh in a slot of the default day; its refused offers left
    it offering nothing, which surveillance read as physical withholding."""
    if it.side == "sell":
        rate = seller_deposit_rate(p, deposit_pct_for(cast(Tier, tier), p))
        wh = min(it.energy_wh, spendable_micro * 1000 // max(1, rate))
        while wh > 0 and seller_deposit_micro(wh, rate) > spendable_micro:
            wh -= 1
    else:
        wh = min(it.energy_wh, spendable_micro * 1000 // max(1, it.price + max_fee_rate(p)))
        while wh > 0 and buyer_escrow_micro(wh, it.price, p) > spendable_micro:
            wh -= 1
    return replace(it, energy_wh=wh) if wh >= MIN_ORDER_WH else None


class Trading(Feature):
    name: ClassVar[str] = "trading"

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.agents: dict[str, Agent] = {
            m.cp: make_agent(m.name, m.strategy, ctx.sc.seed, m.battery) for m in ctx.members}

    def view(self, slot: int) -> MarketView:
        """Public information when orders for ``slot`` are placed."""
        ctx, p = self.ctx, self.ctx.params
        sod = slot % SLOTS_PER_DAY
        fc = ctx.model.forecast_wh_by_cp(slot)
        net = sum(fc[m.cp] for m in ctx.members)
        # the fee in force for the slot, as the DSO set it (governance/grid_fees)
        return MarketView(slot, sod, p.retail_import_micro_per_kwh, p.feed_in_micro_per_kwh,
                          ctx.ledger.grid_fee(slot), net)

    def txs_a(self, step: Step) -> Sequence[bytes]:
        if not step.trading:
            return []
        ctx, slot = self.ctx, step.slot
        with ctx.timed("agents_s"):
            v = self.view(slot)
            ctx.data.views[slot] = v
            rec = ctx.data.slots[slot]
            rec.retail_micro_per_kwh, rec.feed_in_micro_per_kwh = v.retail, v.feed_in
            rec.grid_fee_micro_per_kwh, rec.community_net_wh = v.fee, v.community_net_wh
            envelopes = ctx.data.envelopes.get(slot, {})
            plan = ctx.data.battery_wh.setdefault(slot, {})
            flex = ctx.data.flex_adjust_wh.get(slot, {})
            orders: list[tuple[TxSigner, str, dict[str, Any]]] = []
            for m in ctx.members:
                # the household's own plan includes flexibility it sold for the slot (and the
                # rebound of earlier activations): it does not buy what it will not take
                own = household_net_wh(ctx.model, m.cp, slot) + flex.get(m.cp, 0)
                intents, plan[m.cp] = self.agents[m.cp].decide(
                    v, own, envelopes.get(m.cp, UNLIMITED))
                if ctx.keeps_meter_rules(m) and ctx.ledger.quarantined(ctx.identities.ledger_cp(m, slot)):
                    intents = []  # its client sees the quarantine: orders would only fail
                key = ctx.identities.trading_key(m, slot)
                tier = ctx.ledger.tier(key.address)
                if tier == "suspended":
                    # the client checks its standing: a suspended identity's buys would only
                    # fail (reputation-suspended) and cost it more reputation; its sells are
                    # admitted at the feed-in tariff (must-offer, offer_mitigated), so its
                    # surplus stays on the market; the battery still runs for the home
                    intents = [i for i in intents if i.side == "sell"]
                if intents:
                    spendable = ctx.ledger.balance(key.address)[0]
                    intents = [c for c in (affordable(i, spendable, ctx.params, tier)
                                           for i in intents) if c is not None]
                for a in ctx.attacks:
                    intents = a.orders(m, slot, intents)
                orders += [(key, "market/order", {
                    "slot": slot, "side": it.side, "energy_wh": it.energy_wh,
                    "price_micro_per_kwh": it.price}) for it in intents]
            # each client signs its own: on the signing pool, while the phase goes on
            pending = ctx.txs_ahead(orders)
            ctx.data.order_ids[slot] = list(pending.ids)
        return pending

    def after_clearing(self, step: Step) -> None:
        ctx, slot = self.ctx, step.slot
        price = ctx.data.slots[slot].price_micro_per_kwh
        fills = ctx.data.fills.get(slot, {})
        for m in ctx.members:
            mine = fills.get(ctx.identities.trading_key(m, slot).address, {})
            self.agents[m.cp].observe(ctx.data.views[slot], price, mine)
