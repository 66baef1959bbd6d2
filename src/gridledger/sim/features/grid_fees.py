"""The DSO changes the evening grid fee in the middle of the demo day (issue 13.3).

Once the community runs governance v3 (see ``features/governance.py``), the DSO — one
signed transaction, ``governance/set_grid_fees``, within the bounds genesis set — raises
the time-of-use surcharge of the evening peak (17:00–21:00) from the next slot whose gate
is still open. The market prices each later slot's trades with the new fee when it clears
it, so the change shows in the trades' fee rates, in every buyer's bill and in the report.

Outputs: ``summary.grid_fees`` — the change as the ledger recorded it (event and change
log), and what the evening's trades paid in grid fees against what the same energy would
have paid at the old rates.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, ClassVar

from gridledger.grid import SLOTS_PER_DAY
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature, ReportSection
from gridledger.types import payment_micro

EVENING = range(68, 84)
"""Slots of the day of the evening peak (17:00–21:00)."""


class GridFees(Feature):
    name: ClassVar[str] = "grid_fees"
    CHANGE_AT: ClassVar[float] = 0.45
    """When the DSO changes the fee, as a fraction of the trading slots."""
    EVENING_SURCHARGE: ClassVar[int] = 60_000
    """The new evening time-of-use surcharge (micro/kWh)."""

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.sent = False
        self.changes: list[dict[str, Any]] = []

    def txs_a(self, step: Step) -> list[bytes]:
        ctx = self.ctx
        if self.sent or not step.trading:
            return []
        if step.slot - ctx.first < int(ctx.sc.slots * self.CHANGE_AT):
            return []
        if ctx.ledger.governance("versions")["versions"].get("governance", 0) < 3:
            return []  # the community has not upgraded yet: fees are genesis parameters
        self.sent = True
        p = ctx.params
        tou = list(p.grid_fee_tou_micro_per_kwh) or [0] * SLOTS_PER_DAY
        for s in EVENING:
            tou[s] = self.EVENING_SURCHARGE
        # the next slot's gate is still open at this block (900 L - 450 < 900 (L+1) - 300)
        return [ctx.tx(ctx.community.dso, "governance/set_grid_fees", {
            "from_slot": step.slot + 1, "flat_micro_per_kwh": p.grid_fee_flat_micro_per_kwh,
            "tou_micro_per_kwh": tou})]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for e in events:
            if e.get("type") == "grid_fees_set":
                self.changes.append({"height": fb.header.height, "from_slot": e["from_slot"],
                                     "from": self.ctx.label(e["from_slot"]),
                                     "flat_micro_per_kwh": e["flat_micro_per_kwh"],
                                     "evening_before_micro_per_kwh": _evening(
                                         e["previous_flat_micro_per_kwh"],
                                         e["previous_tou_micro_per_kwh"]),
                                     "evening_after_micro_per_kwh": _evening(
                                         e["flat_micro_per_kwh"], e["tou_micro_per_kwh"])})

    def summary(self) -> dict[str, Any]:
        ctx = self.ctx
        out: dict[str, Any] = {"changes": self.changes}
        if self.changes:
            start = self.changes[0]["from_slot"]
            old = {s: ctx.params.grid_fee_flat_micro_per_kwh
                   + (ctx.params.grid_fee_tou_micro_per_kwh[s % SLOTS_PER_DAY]
                      if ctx.params.grid_fee_tou_micro_per_kwh else 0)
                   for s in ctx.data.trades}
            paid = at_old = energy = 0
            for s, trades in ctx.data.trades.items():
                if s < start or s % SLOTS_PER_DAY not in EVENING:
                    continue
                for t in trades:
                    paid += t["grid_fee_micro"]
                    at_old += payment_micro(t["energy_wh"], old[s])
                    energy += t["energy_wh"]
            bills = sum(b.get("grid_fee_micro", 0) for s, by in ctx.data.bills.items()
                        if s >= start and s % SLOTS_PER_DAY in EVENING for b in by.values())
            out["evening_after_change"] = {"energy_wh": energy, "grid_fee_micro": paid,
                                           "at_old_rates_micro": at_old,
                                           "billed_grid_fee_micro": bills}
        return {"grid_fees": out}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        g = summary.get("grid_fees")
        if not g or not g["changes"]:
            return []
        c = g["changes"][0]
        ev = g.get("evening_after_change", {})
        body = (f"<p>The DSO changed the grid fee from slot {html.escape(c['from'])} on "
                f"(block {c['height']}): evening rate {c['evening_before_micro_per_kwh']:,} → "
                f"{c['evening_after_micro_per_kwh']:,} µ/kWh.</p>")
        if ev:
            body += (f"<p>Evening trades after the change: {ev['energy_wh']:,} Wh, grid fees "
                     f"{ev['grid_fee_micro']:,} µ (at the old rates: {ev['at_old_rates_micro']:,}"
                     f" µ); billed to buyers: {ev['billed_grid_fee_micro']:,} µ.</p>")
        return [ReportSection("grid-fees", "Grid fees set by the DSO", body,
                              note="One signed DSO transaction within the genesis bounds; "
                                   "served by the governance/grid_fees view.")]


def _evening(flat: int, tou: list[int]) -> int:
    return flat + (tou[EVENING[0]] if tou else 0)
