"""Physics of each trading slot: what every connection point really injects, and what the
devices measure.

After slot L clears: each member's planned net injection is its forecast (PV - load) plus
its battery plan, outsiders follow their profile; features may adjust it
(``adjust_injection``: flexibility, demand response), then attacks (``Attack.physical``).
Inverters and chargers keep to the DSO's envelope; a pandapower power flow checks voltages
and loading, and if a limit would still break, the fixed curtailment rule applies. Then
``measure_slot`` draws seeded meter and DSO-sensor readings, which attacks may edit
(``Attack.measurements``). The result is ``ctx.data.delivered[L]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from gridledger.grid import curtail_schedule, measure_slot, verify_schedule
from gridledger.sim.clock import Step
from gridledger.sim.community import household_net_wh
from gridledger.sim.feature import Feature
from gridledger.sim.records import Delivered

NO_LIMIT_WH = 1 << 62


class Delivery(Feature):
    name: ClassVar[str] = "delivery"

    def planned_injection(self, slot: int) -> dict[str, int]:
        """Every cp's intended net injection (Wh, > 0 export) before any limit."""
        ctx = self.ctx
        fc = ctx.model.forecast_wh_by_cp(slot)
        plan = ctx.data.battery_wh.get(slot, {})
        planned: dict[str, int] = {}
        for cp in ctx.model.cp_ids:
            if cp in ctx.by_cp:
                planned[cp] = household_net_wh(ctx.model, cp, slot) + plan.get(cp, 0)
            else:
                planned[cp] = int(fc[cp])                # outsiders follow their profile
        return planned

    def deliver(self, step: Step) -> None:
        ctx, slot = self.ctx, step.slot
        with ctx.timed("grid_s"):
            planned = self.planned_injection(slot)
            for f in ctx.features:
                f.adjust_injection(step, planned)
            for a in ctx.attacks:
                a.physical(slot, planned)
            env = ctx.data.envelopes.get(slot, {})
            actual: dict[str, int] = {}
            curtailed = 0
            for cp, x in planned.items():
                imp, exp = env.get(cp, (NO_LIMIT_WH, NO_LIMIT_WH))
                y = min(max(x, -imp), exp)               # inverters and chargers follow the envelope
                curtailed += abs(x - y)
                actual[cp] = y
            report = verify_schedule(ctx.model, slot, actual, limits=ctx.limits)
            if report.violations:                        # the envelopes failed: fixed-rule curtailment
                fix = curtail_schedule(ctx.model, slot, actual, limits=ctx.limits)
                curtailed += sum(abs(v) for v in fix.curtailed_wh_by_cp.values())
                actual = dict(fix.schedule_wh_by_cp)
                report = fix.report
            rec = ctx.data.slots[slot]
            rec.max_vm_pu = round(float(report.max_vm_pu), 5)
            rec.min_vm_pu = round(float(report.min_vm_pu), 5)
            rec.max_loading_pct = round(float(report.max_loading_pct), 3)
            rec.violations = len(report.violations)
            rec.curtailed_wh = curtailed
            ctx.data.truth[slot] = actual
            rng = np.random.default_rng([ctx.sc.seed, slot])
            honest = measure_slot(ctx.model, slot, actual, rng=rng)
            meas = honest
            for a in ctx.attacks:
                meas = a.measurements(slot, meas, honest)
            delivered = Delivered(slot, actual, meas)
            ctx.data.delivered[slot] = delivered
        for f in ctx.features:
            f.after_delivery(step, delivered)

    def summary(self) -> dict[str, Any]:
        recs = [self.ctx.data.slots[s] for s in sorted(self.ctx.data.slots)]
        return {"grid": {
            "max_voltage_pu": max((r.max_vm_pu for r in recs), default=None),
            "min_voltage_pu": min((r.min_vm_pu for r in recs), default=None),
            "max_line_loading_pct": max((r.max_loading_pct for r in recs), default=None),
            "violations": sum(r.violations for r in recs),
            "curtailed_wh": sum(r.curtailed_wh for r in recs),
            "envelope_clipped_wh": sum(r.clipped_wh for r in recs)}}
