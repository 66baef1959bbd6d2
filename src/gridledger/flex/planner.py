"""The DSO's side of flexibility, outside block execution: predict a violation with a power
flow, turn it into a flexibility request, and check an order's selection with an AC power
flow before signing it.

* ``predict`` runs pandapower on the DSO's forecast schedule of a slot (``verify_schedule``)
  and, for the worst violation, finds the connection points that can relieve it: every cp
  downstream of an overloaded line (radial LV feeder: the cps the line supplies), every cp
  for the transformer or a voltage violation. Their weight is 10^6 (in a radial feeder
  every downstream cp moves the line's flow one for one; voltage sensitivities differ by
  location, which the AC check below absorbs). The direction follows the flow: a feeder
  importing beyond its limit (or undervoltage) needs ``up``, exporting (overvoltage) ``down``.
* The energy asked is the downstream flow times the relative overload (to a target 3 %
  below the limit), with a 50 % margin: the request is a ceiling, the order takes less.
* ``order_for`` walks the merit order (the selection validators recompute) with growing
  effective energy and keeps the smallest that an AC power flow of the forecast plus the
  activations finds free of violations: what the DSO signs is checked physics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gridledger.flex.merit import PPM, MeritOffer, select
from gridledger.grid import FlowReport, GridLimits, GridModel, Violation, verify_schedule

TARGET_MARGIN_PCT = 3.0
REQUEST_MARGIN_PCT = 50
ORDER_STEPS = 8


@dataclass(frozen=True)
class Prediction:
    """A predicted violation and what can relieve it."""

    slot: int
    violation: Violation
    direction: str                # "up" | "down"
    cps: tuple[str, ...]          # connection points downstream of it (sorted)
    need_wh: int                  # effective energy asked (with the margin)
    report: FlowReport


def _downstream(model: GridModel, element: str) -> set[str]:
    """The cps a line supplies (radial: unreachable from the slack without it); every cp
    for the transformer, a bus or anything else."""
    kind, _, idx = element.partition(" ")
    cps = {cp.cp_id for cp in model.cps}
    if kind != "line" or not idx.isdigit():
        return cps
    net = model.net
    adj: dict[int, set[int]] = {}

    def link(a: int, b: int) -> None:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)

    opened = {int(r.element) for _, r in net.switch.iterrows()
              if r.et == "l" and not bool(r.closed)}
    for i, row in net.line.iterrows():
        if bool(row.in_service) and int(i) != int(idx) and int(i) not in opened:
            link(int(row.from_bus), int(row.to_bus))
    for _, row in net.trafo.iterrows():
        if bool(row.in_service):
            link(int(row.hv_bus), int(row.lv_bus))
    for _, row in net.switch.iterrows():
        if row.et == "b" and bool(row.closed):
            link(int(row.bus), int(row.element))
    seen = {int(b) for b in net.ext_grid.bus}
    todo = list(seen)
    while todo:
        b = todo.pop()
        for n in adj.get(b, ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return {cp.cp_id for cp in model.cps if cp.bus not in seen}


def _worst(report: FlowReport) -> Violation:
    def excess(v: Violation) -> float:
        return abs(v.value - v.limit) / max(abs(v.limit), 1e-9)
    return max(report.violations, key=lambda v: (excess(v), v.element))


def predict(model: GridModel, slot: int, forecast_wh: Mapping[str, int],
            limits: GridLimits) -> Prediction | None:
    """The worst violation the forecast schedule of ``slot`` would cause (None: none)."""
    report = verify_schedule(model, slot, forecast_wh, limits=limits)
    if not report.violations:
        return None
    v = _worst(report)
    cps = _downstream(model, v.element)
    flow = sum(forecast_wh[cp] for cp in cps)         # > 0: the area exports
    voltage = v.kind in ("undervoltage", "overvoltage")
    up = v.kind == "undervoltage" if voltage else flow < 0
    if voltage:
        # no flow to scale: ask the downstream flow's share the voltage drop exceeds by
        rel = abs(v.value - v.limit) / max(abs(1.0 - v.value), 1e-3)
    else:
        target = v.limit * (1 - TARGET_MARGIN_PCT / 100)
        rel = max(0.0, (v.value - target) / v.value)
    need = int(abs(flow) * min(rel, 1.0) * (100 + REQUEST_MARGIN_PCT) / 100) + 1
    return Prediction(slot, v, "up" if up else "down", tuple(sorted(cps)), need, report)


def order_for(model: GridModel, slot: int, forecast_wh: Mapping[str, int],
              limits: GridLimits, offers: Sequence[MeritOffer], cps: Sequence[str],
              direction: str, need_wh: int) -> tuple[int, list[tuple[int, ...]], FlowReport]:
    """``(effective Wh, activations in offer order, AC report)``: the smallest effective
    energy (in ``ORDER_STEPS`` steps up to ``need_wh``) whose merit-order selection leaves
    the slot without violations; ``need_wh`` itself if none does (the best the offers can).

    ``offers`` are single-slot; ``cps[i]`` is offer i's connection point."""
    sign = 1 if direction == "up" else -1
    best: tuple[int, list[tuple[int, ...]], FlowReport] | None = None
    for k in range(1, ORDER_STEPS + 1):
        eff = -(-need_wh * k // ORDER_STEPS)
        acts = select(offers, [eff])
        sched = dict(forecast_wh)
        for cp, o, a in zip(cps, offers, acts, strict=True):
            sched[cp] += sign * a[0] * o.weight_ppm // PPM
        report = verify_schedule(model, slot, sched, limits=limits)
        best = (eff, acts, report)
        if not report.violations:
            break
    assert best is not None
    return best
