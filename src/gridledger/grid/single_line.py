"""A single-line view of a network and its state in one slot (the dashboard's network panel).

``single_line(model)`` places every bus of the network for a single-line diagram: the network
as a tree grown breadth-first from the external grid over in-service lines, transformers and
closed bus-bus switches; a bus is drawn at x = its hops from the slack and y = its place in a
depth-first walk of the tree (children in bus order, a parent at the middle of its
children), the usual feeder-by-feeder drawing of a radial distribution network. Branches
outside the tree (a meshed network) are drawn too, between their two buses.

``network_state(model, slot, net_injection_wh_by_cp)`` runs the fast AC power flow
(``grid.powerflow.solve_fast``, checked against pandapower in tests/grid) for the slot's net
injections and returns the dashboard's grid feed: every bus with its position and voltage
(p.u.), every line and transformer with its loading (%), and the limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridledger.errors import GridError
from gridledger.grid.model import GridModel
from gridledger.grid.powerflow import GridLimits, ac_network, schedule_array, solve_fast


@dataclass(frozen=True)
class SingleLine:
    """Drawing positions: ``buses`` ``{pandapower bus: (x, y)}``; ``branches`` ``(kind,
    element, from bus, to bus)`` with kind ``line``/``trafo``/``switch``; ``cps_at``
    ``{bus: cp ids}``."""

    buses: dict[int, tuple[float, float]]
    branches: tuple[tuple[str, int, int, int], ...]
    cps_at: dict[int, tuple[str, ...]]


def _branches(net: Any) -> list[tuple[str, int, int, int]]:
    out: list[tuple[str, int, int, int]] = []
    for i, row in net.line.iterrows():
        if bool(row.in_service):
            out.append(("line", int(i), int(row.from_bus), int(row.to_bus)))
    for i, row in net.trafo.iterrows():
        if bool(row.in_service):
            out.append(("trafo", int(i), int(row.hv_bus), int(row.lv_bus)))
    if len(net.switch):
        for i, row in net.switch.iterrows():
            if row.et == "b" and bool(row.closed):
                out.append(("switch", int(i), int(row.bus), int(row.element)))
    return out


def single_line(model: GridModel) -> SingleLine:
    """The model's single-line drawing (computed once per model).

    Raises ``GridError`` if no bus is reached from the external grid.
    """
    cached = model._cache.get("single_line")
    if isinstance(cached, SingleLine):
        return cached
    net = model.net
    branches = tuple(sorted(_branches(net)))
    adj: dict[int, list[int]] = {}
    for _, _, a, b in branches:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    roots = sorted(int(b) for b in net.ext_grid.bus[net.ext_grid.in_service.astype(bool)])
    if not roots:
        raise GridError(f"network {model.name} has no in-service external grid to draw from")
    depth: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    frontier = []
    for r in roots:
        if r not in depth:
            depth[r] = 0
            frontier.append(r)
    while frontier:  # breadth-first: each bus hangs off its nearest parent
        nxt = []
        for bus in frontier:
            for other in sorted(set(adj.get(bus, ()))):
                if other not in depth:
                    depth[other] = depth[bus] + 1
                    children.setdefault(bus, []).append(other)
                    nxt.append(other)
        frontier = nxt
    y: dict[int, float] = {}
    leaf = [0]

    def place(bus: int) -> float:  # depth-first; iterative depth is bounded by the feeders
        kids = children.get(bus, [])
        if not kids:
            y[bus] = float(leaf[0])
            leaf[0] += 1
        else:
            ys = [place(k) for k in kids]
            y[bus] = (ys[0] + ys[-1]) / 2
        return y[bus]

    for r in roots:
        place(r)
    cps_at: dict[int, list[str]] = {}
    for cp in model.cps:
        cps_at.setdefault(cp.bus, []).append(cp.cp_id)
    out = SingleLine(buses={b: (float(depth[b]), y[b]) for b in sorted(depth)},
                     branches=tuple(br for br in branches if br[2] in depth and br[3] in depth),
                     cps_at={b: tuple(c) for b, c in sorted(cps_at.items())})
    model._cache["single_line"] = out
    return out


def network_state(model: GridModel, slot: int, net_injection_wh_by_cp: Mapping[str, int], *,
                  limits: GridLimits = GridLimits(), source: str = "") -> dict[str, Any]:
    """The dashboard's grid feed for ``slot``: ``{source, slot, buses: [{bus, x, y, vm_pu,
    cps}], lines: [{line, kind, from_bus, to_bus, loading_pct}], limits: {vm_min_pu,
    vm_max_pu, loading_max_pct}}`` (voltages in p.u., loadings in % of rating).

    ``net_injection_wh_by_cp``: every connection point's net injection in the slot (Wh,
    export > 0); reactive consumption is the network's profile at ``slot`` (an index into
    the model's profile year). Raises ``GridError`` for an unknown or missing cp, or a power
    flow that does not converge.
    """
    drawing = single_line(model)
    x_wh = schedule_array(model, net_injection_wh_by_cp, "network state")
    flow = solve_fast(model, model.check_slot(slot), x_wh)
    if not flow.converged:
        raise GridError(f"the power flow of slot {slot} did not converge")
    acn = ac_network(model)
    vm_by_bus = {int(pd): float(v) for pd, v in zip(acn.pd_bus, flow.vm_pu, strict=True)
                 if pd >= 0}
    # buses joined by a closed bus-bus switch are one bus in the power flow: same voltage
    fused = [(a, b) for kind, _, a, b in drawing.branches if kind == "switch"]
    for _ in fused:
        for a, b in fused:
            if (a in vm_by_bus) != (b in vm_by_bus):
                vm_by_bus.setdefault(a, vm_by_bus.get(b, 0.0))
                vm_by_bus.setdefault(b, vm_by_bus.get(a, 0.0))
    loading = {(kind, int(el)): float(v)
               for kind, el, v in zip(acn.mon_kind, acn.mon_element, flow.loading_pct, strict=True)}
    buses = [{"bus": b, "x": xy[0], "y": xy[1], "vm_pu": round(vm_by_bus[b], 5),
              "cps": list(drawing.cps_at.get(b, ()))}
             for b, xy in drawing.buses.items() if b in vm_by_bus and np.isfinite(vm_by_bus[b])]
    lines = [{"line": f"{kind} {el}", "kind": kind, "from_bus": a, "to_bus": b,
              "loading_pct": (round(loading[(kind, el)], 2) if (kind, el) in loading else None)}
             for kind, el, a, b in drawing.branches]
    return {"source": source, "slot": slot, "buses": buses, "lines": lines,
            "limits": {"vm_min_pu": limits.vm_min_pu, "vm_max_pu": limits.vm_max_pu,
                       "loading_max_pct": limits.max_loading_pct}}


def readings_state(model: GridModel, slot: int, readings: list[dict[str, Any]], *,
                   limits: GridLimits = GridLimits()) -> dict[str, Any]:
    """``network_state`` from what a validator holds: the certified readings of ledger slot
    ``slot`` (``metering/readings/<slot>``: ``{cp, import_wh, export_wh, ...}``), each cp's net
    injection = export − import; a cp of the network with no reading there (not a member,
    or metered under a privacy stand-in) at 0. Reactive power is the network's profile at
    the same slot of its profile year. The feed's ``source`` says how many cps were metered.
    """
    known = set(model.cp_ids)
    injection = dict.fromkeys(model.cp_ids, 0)
    metered = 0
    for r in readings:
        cp = r.get("cp")
        if cp in known:
            injection[cp] = int(r["export_wh"]) - int(r["import_wh"])
            metered += 1
    state = network_state(model, slot % model.n_slots, injection, limits=limits,
                          source=f"power flow of the certified readings: {metered} of "
                                 f"{len(known)} cps metered on the ledger, the others at 0")
    state["slot"] = slot
    return state


def ledger_grid_source(model: GridModel, limits: GridLimits = GridLimits()
                       ) -> Callable[[int | None, list[dict[str, Any]]], dict[str, Any] | None]:
    """A validator's network panel (``api.dashboard.GridSource``): ``readings_state`` of the
    last slot with certified readings, one power flow per newly read slot."""
    last: dict[int, dict[str, Any]] = {}

    def source(slot: int | None, readings: list[dict[str, Any]]) -> dict[str, Any] | None:
        if slot is None:
            return None
        if slot not in last:
            last.clear()
            last[slot] = readings_state(model, slot, readings, limits=limits)
        return last[slot]

    return source
