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

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from gridledger.grid import EnvelopeReport, GridLimits, GridModel, curtail, deliver_schedule, measure_slot
from gridledger.grid.area_workers import area_workers
from gridledger.sim.beside import Ahead
from gridledger.sim.clock import Step
from gridledger.sim.community import forecast_wh_by_cp
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature, ReportSection
from gridledger.sim.records import Delivered
from gridledger.sim.report_fmt import as_list, as_map, esc, fmt, num

_BESIDE_MODEL: list[GridModel] = []
"""The model the delivery worker holds (set in the worker as it starts)."""


def _hold_model(model: GridModel) -> None:
    _BESIDE_MODEL.append(model)


def _deliver_beside(slot: int, planned_wh: dict[str, int], envelopes: EnvelopeReport | None,
                    limits: GridLimits) -> curtail.Delivery:
    """``deliver_schedule`` on the worker's model."""
    return deliver_schedule(_BESIDE_MODEL[-1], slot, planned_wh, envelopes=envelopes,
                            limits=limits)


def _same_plan(a: tuple[dict[str, int], EnvelopeReport | None],
               b: tuple[dict[str, int], EnvelopeReport | None]) -> bool:
    """The same plan and the very same envelope report (an attack may swap the report)."""
    return a[1] is b[1] and a[0] == b[0]


class Delivery(Feature):
    name: ClassVar[str] = "delivery"

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.ahead: Ahead[curtail.Delivery] = Ahead(_hold_model, (ctx.model,), ctx.timings,
                                                    "delivery_beside_s")
        """Each slot's power flow, started in the delivery worker on the plan of block A."""

    def txs_a(self, step: Step) -> list[bytes]:
        """Start the slot's delivery power flow in the worker on the plan as block A leaves
        it: the forecast, the agents' battery plans (made in this phase, by ``Trading``,
        before this feature) and the flexibility ordered for the slot (ordered a step or
        more before). ``deliver`` uses it if the plan it delivers — after the features'
        adjustments and the attacks' ``physical`` — and the envelope report are still
        these; else it runs the power flow itself (issue 17: the main core's own work).
        Not on a network with area workers (the model holds this process's pipes)."""
        ctx, slot = self.ctx, step.slot
        if not step.trading or not self.ahead.available() or area_workers(ctx.model) is not None:
            return []
        planned = self.planned_injection(slot)
        for cp, wh in ctx.data.flex_adjust_wh.get(slot, {}).items():
            if cp in planned:
                planned[cp] += wh
        report = ctx.data.envelope_reports.get(slot)
        self.ahead.start(slot, (planned, report), _deliver_beside, slot, planned, report,
                         ctx.limits)
        return []

    def planned_injection(self, slot: int) -> dict[str, int]:
        """Every cp's intended net injection (Wh, > 0 export) before any limit: the DSO's
        forecast (members PV - load, outsiders their profile) plus each agent's battery plan."""
        ctx = self.ctx
        plan = ctx.data.battery_wh.get(slot, {})
        return {cp: x + plan.get(cp, 0)
                for cp, x in forecast_wh_by_cp(ctx.model, ctx.by_cp, slot).items()}

    def deliver(self, step: Step) -> None:
        ctx, slot = self.ctx, step.slot
        with ctx.timed("grid_s"):
            planned = self.planned_injection(slot)
            for f in ctx.features:
                f.adjust_injection(step, planned)
            for a in ctx.attacks:
                a.physical(slot, planned)
            # inverters and chargers follow the envelope; pandapower checks the result and
            # the fixed curtailment rule answers any limit still broken
            envelopes = ctx.data.envelope_reports.pop(slot, None)
            ahead, done = self.ahead.take(slot, (planned, envelopes), _same_plan)
            if not ahead or done is None:
                done = deliver_schedule(ctx.model, slot, planned, envelopes=envelopes,
                                        limits=ctx.limits)
            report, actual = done.report, done.schedule_wh_by_cp
            rec = ctx.data.slots[slot]
            rec.max_vm_pu = round(float(report.max_vm_pu), 5)
            rec.min_vm_pu = round(float(report.min_vm_pu), 5)
            rec.max_loading_pct = round(float(report.max_loading_pct), 3)
            rec.violations = len(report.violations)
            rec.curtailed_wh = done.total_curtailed_wh
            if done.causes:
                ctx.data.curtailments[slot] = done.causes
            ctx.data.record_truth(slot, actual, [m.cp for m in ctx.members])
            rng = np.random.default_rng([ctx.sc.seed, slot])
            honest = measure_slot(ctx.model, slot, actual, rng=rng)
            meas = honest
            for a in ctx.attacks:
                meas = a.measurements(slot, meas, honest)
            delivered = Delivered(slot, actual, meas)
            ctx.data.record_delivery(delivered)
        for f in ctx.features:
            f.after_delivery(step, delivered)

    def finish(self) -> None:
        self.ahead.close()

    def run_ended(self, summary: dict[str, Any] | None) -> None:
        self.ahead.close()

    def summary(self) -> dict[str, Any]:
        data = self.ctx.data
        recs = [data.slots[s] for s in sorted(data.slots)]
        listed = [{"slot": s, "time": self.ctx.label(s), **c.as_dict()}
                  for s in sorted(data.curtailments) for c in data.curtailments[s]]
        return {"grid": {
            "max_voltage_pu": max((r.max_vm_pu for r in recs), default=None),
            "min_voltage_pu": min((r.min_vm_pu for r in recs), default=None),
            "max_line_loading_pct": max((r.max_loading_pct for r in recs), default=None),
            "violations": sum(r.violations for r in recs),
            "curtailed_wh": sum(r.curtailed_wh for r in recs),
            "curtailments": listed,
            "curtailment_causes": curtailment_causes(listed),
            "envelope_clipped_wh": sum(r.clipped_wh for r in recs)}}

    @staticmethod
    def report_sections(summary: Mapping[str, Any]) -> list[ReportSection]:
        grid = as_map(summary.get("grid"))
        if "curtailed_wh" not in grid:
            return []
        return [ReportSection("curtailment", "Curtailment", curtailment_html(grid),
                              "Energy is only curtailed to keep a limit that would otherwise "
                              "break; each row names the limit and the network element.")]


def curtailment_causes(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The curtailments grouped by cause (limit, element, violation, direction): Wh, slots,
    connection points; largest first."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for c in listed:
        key = (c["limit"], c["element"], c["violation"], c["direction"])
        g = groups.setdefault(key, {"limit": key[0], "element": key[1], "violation": key[2],
                                    "direction": key[3], "curtailed_wh": 0,
                                    "slots": set(), "cps": set()})
        g["curtailed_wh"] += c["curtailed_wh"]
        g["slots"].add(c["slot"])
        g["cps"].add(c["cp"])
    out = [{**g, "slots": len(g["slots"]), "cps": len(g["cps"])} for g in groups.values()]
    return sorted(out, key=lambda g: (-g["curtailed_wh"], g["limit"], g["element"]))


def curtailment_html(grid: Mapping[str, Any]) -> str:
    """The report's curtailment section: total, causes table, and the largest single cuts."""
    total = num(grid.get("curtailed_wh")) or 0
    causes = [as_map(c) for c in as_list(grid.get("curtailment_causes"))]
    if not total:
        return ('<p>No energy was curtailed: every plan fitted its envelope and no grid limit '
                'was at risk.</p>')
    head = (f"<p><b>{esc(fmt(total / 1000, 3))} kWh</b> curtailed in "
            f"{esc(fmt(len({c.get('slot') for c in as_list(grid.get('curtailments'))})))} "
            "slot(s).</p>")
    rows = "".join(
        f"<tr><td>{esc(c.get('limit', '–'))}</td><td>{esc(c.get('element') or '–')}</td>"
        f"<td>{esc(c.get('violation', '–'))}</td><td>{esc(c.get('direction', '–'))}</td>"
        f"<td class=\"num\">{esc(fmt((num(c.get('curtailed_wh')) or 0) / 1000, 3))}</td>"
        f"<td class=\"num\">{esc(fmt(c.get('slots')))}</td>"
        f"<td class=\"num\">{esc(fmt(c.get('cps')))}</td></tr>" for c in causes)
    table = ('<div class="scroll"><table><thead><tr><th>limit enforced</th><th>element</th>'
             '<th>would have broken</th><th>direction</th><th class="num">curtailed (kWh)</th>'
             '<th class="num">slots</th><th class="num">connection points</th></tr></thead>'
             f"<tbody>{rows}</tbody></table></div>")
    biggest = sorted((as_map(c) for c in as_list(grid.get("curtailments"))),
                     key=lambda c: -(num(c.get("curtailed_wh")) or 0))[:10]
    rows = "".join(
        f"<tr><td>{esc(c.get('time', c.get('slot', '–')))}</td><td>{esc(c.get('cp', '–'))}</td>"
        f"<td>{esc(c.get('limit', '–'))} {esc(c.get('element') or '')}</td>"
        f"<td class=\"num\">{esc(fmt(c.get('curtailed_wh')))}</td></tr>" for c in biggest)
    cuts = ('<div class="scroll"><table><thead><tr><th>slot</th><th>connection point</th>'
            '<th>cause</th><th class="num">curtailed (Wh)</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")
    return head + table + '<p class="note">Largest single curtailments:</p>' + cuts
