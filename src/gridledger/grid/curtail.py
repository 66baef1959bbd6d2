"""Deterministic curtailment of a schedule that breaks grid limits.

Rule (documented in docs/grid.md, applied by the DSO after clearing):

1. Run an AC power flow of the schedule. If no limit is broken, stop.
2. Take the worst violation (largest excess relative to its band; ties by element label).
3. Compute every cp's sensitivity ``g_i`` of the violated quantity (voltage or branch loading,
   signed so that a decrease helps) from the power-flow Jacobian. The *contributors* are the
   cps whose injection pushes the quantity the wrong way (``g_i * x_i > 0``); among them,
   the cps whose |g_i| is at least half of the largest ("the buses with the largest
   sensitivity") share the curtailment.
4. Every sharing cp moves toward zero by the same fraction ``f`` of its own injection (pro
   rata), ``f = min(1, 1.2 * excess / sum g_i x_i)``; curtailment is rounded *up* to whole Wh.
5. Repeat. A cp at zero no longer contributes, so the next round reaches the next cps.

Exports and imports are only ever reduced in magnitude, never reversed; the result is
integer and identical on every machine for the same input (no randomness, fixed order).

Every Wh curtailed carries its cause (``CurtailmentCause``): the limit (voltage band, branch
loading, or the cp's operating envelope), the element whose limit would otherwise be broken
(for an envelope: the constraint that bounds it) and the kind of violation.
``deliver_schedule`` is the whole delivery step: cps follow their envelopes, a pandapower
check, and this rule only if a limit is still broken.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid.envelopes import Envelope, EnvelopeReport
from gridledger.grid.model import GridModel
from gridledger.grid.powerflow import (
    FastFlow,
    FlowReport,
    GridLimits,
    ac_network,
    schedule_array,
    solve_fast,
    verify_schedule,
    wh_to_pu,
)

IntArray = npt.NDArray[np.int64]

_SHARE_OF_MAX_SENSITIVITY = 0.5
_OVERSHOOT = 1.2


CurtailmentLimit = Literal["voltage", "loading", "envelope"]


@dataclass(frozen=True)
class CurtailmentCause:
    """Why energy was taken from one connection point in one slot.

    ``limit`` is what was enforced: the voltage band, a branch's loading limit, or the cp's
    operating envelope. ``element`` (``"bus 12"``, ``"line 3"``, ``"trafo 0"``) and
    ``violation`` (``"overvoltage"``, ``"undervoltage"``, ``"overload"``, ``"collapse"``)
    name the limit that would otherwise be broken; for an envelope, the constraint that
    bounds it (``"export cap"``/``"import cap"`` give violation ``"cap"`` and no element).
    """

    cp_id: str
    curtailed_wh: int
    direction: Literal["export", "import"]
    limit: CurtailmentLimit
    element: str
    violation: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (summary.json)."""
        return {
            "cp": self.cp_id,
            "curtailed_wh": self.curtailed_wh,
            "direction": self.direction,
            "limit": self.limit,
            "element": self.element,
            "violation": self.violation,
        }


@dataclass(frozen=True)
class CurtailmentResult:
    """Curtailment per cp (Wh removed, >= 0), the feasible schedule, and its verified flow."""

    curtailed_wh_by_cp: dict[str, int]
    schedule_wh_by_cp: dict[str, int]
    iterations: int
    report: FlowReport
    causes: tuple[CurtailmentCause, ...] = ()
    """One entry per (cp, violated limit); their Wh add up to ``curtailed_wh_by_cp``."""

    @property
    def total_curtailed_wh(self) -> int:
        return sum(self.curtailed_wh_by_cp.values())


def curtail_schedule(
    model: GridModel,
    slot: int,
    net_injection_wh_by_cp: Mapping[str, int],
    *,
    limits: GridLimits = GridLimits(),
    max_iterations: int = 200,
) -> CurtailmentResult:
    """Curtail ``net_injection_wh_by_cp`` (export > 0) until a pandapower flow shows no violation.

    Raises ``GridError`` if limits stay broken with every cp curtailed to zero.
    """
    slot = model.check_slot(slot)
    acn = ac_network(model)
    x0 = schedule_array(model, net_injection_wh_by_cp)
    x = x0.copy()
    # A touch inside the limits so the pandapower check agrees with the fast engine.
    inner = GridLimits(
        vm_min_pu=limits.vm_min_pu + 1e-5,
        vm_max_pu=limits.vm_max_pu - 1e-5,
        max_loading_pct=limits.max_loading_pct - 1e-3,
    )
    iterations = 0
    v_prev = None
    cut_by: dict[tuple[int, str, str], int] = {}  # (cp index, violation, element) -> Wh
    while True:
        flow = solve_fast(model, slot, x, v0=v_prev)
        if not flow.converged:
            flow = solve_fast(model, slot, x)
        worst = _worst_violation(acn, flow, inner)
        if worst is None:
            break
        if iterations >= max_iterations or not np.any(x):
            raise GridError(
                f"curtailment cannot fix slot {slot} of {model.name}: {worst[0]} at "
                f"{worst[3]} persists after {iterations} rounds"
                + (" with every connection point at zero" if not np.any(x) else "")
            )
        iterations += 1
        x_new = _curtail_step(model, acn, flow, x, worst)
        for i in np.flatnonzero(x_new != x):
            key = (int(i), worst[0], worst[3])
            cut_by[key] = cut_by.get(key, 0) + int(abs(x[i]) - abs(x_new[i]))
        x = x_new
        v_prev = flow.v if flow.converged else None
    schedule = dict(zip(model.cp_ids, (int(v) for v in x), strict=True))
    report = verify_schedule(model, slot, schedule, limits=limits)
    curtailed = np.abs(x0) - np.abs(x)
    ids = model.cp_ids
    causes = tuple(
        CurtailmentCause(
            cp_id=ids[i],
            curtailed_wh=wh,
            direction="export" if x0[i] > 0 else "import",
            limit="loading" if kind == "overload" else "voltage",
            element=element,
            violation=kind,
        )
        for (i, kind, element), wh in sorted(cut_by.items())
        if wh > 0
    )
    return CurtailmentResult(
        curtailed_wh_by_cp=dict(zip(ids, (int(v) for v in curtailed), strict=True)),
        schedule_wh_by_cp=schedule,
        iterations=iterations,
        report=report,
        causes=causes,
    )


@dataclass(frozen=True)
class Delivery:
    """What one slot physically delivers after every limit is enforced."""

    schedule_wh_by_cp: dict[str, int]
    """Net injection each cp really delivered (export > 0)."""
    curtailed_wh_by_cp: dict[str, int]
    """Wh taken from each cp's plan (>= 0): envelope clips plus rule curtailment."""
    causes: tuple[CurtailmentCause, ...]
    """Why, per cp and limit; the Wh add up to ``curtailed_wh_by_cp``."""
    report: FlowReport
    """pandapower check of the delivered schedule."""

    @property
    def total_curtailed_wh(self) -> int:
        return sum(self.curtailed_wh_by_cp.values())


def deliver_schedule(
    model: GridModel,
    slot: int,
    planned_wh_by_cp: Mapping[str, int],
    *,
    envelopes: EnvelopeReport | None = None,
    limits: GridLimits = GridLimits(),
) -> Delivery:
    """Deliver a slot: each cp follows its envelope (inverters and chargers cap there), a
    pandapower check of the result, and ``curtail_schedule`` only if a limit is still broken.

    Parameters: ``planned_wh_by_cp`` is every cp's intended net injection (export > 0);
    ``envelopes`` the DSO's published envelopes for the slot (None: no envelope). Curtailment
    happens only to answer a limit: an envelope (itself bounded by the constraint its report
    names) or a violation the power flow shows.
    Raises ``GridError`` for a malformed plan or if limits stay broken with every cp at zero.
    """
    planned = schedule_array(model, planned_wh_by_cp, "plan")
    ids = model.cp_ids
    actual = planned.copy()
    causes: list[CurtailmentCause] = []
    if envelopes is not None:
        for i, cp in enumerate(ids):
            env: Envelope | None = envelopes.envelopes.get(cp)
            if env is None:
                raise GridError(f"envelope report for slot {envelopes.slot} lacks {cp}")
            y = env.clip(int(planned[i]))
            if y == planned[i]:
                continue
            actual[i] = y
            exporting = bool(planned[i] > 0)
            bound = envelopes.limited_by(cp, exporting)
            violation, _, element = bound.partition(" ")
            if bound.endswith(" cap"):
                violation, element = "cap", ""
            causes.append(
                CurtailmentCause(
                    cp_id=cp,
                    curtailed_wh=int(abs(planned[i] - y)),
                    direction="export" if exporting else "import",
                    limit="envelope",
                    element=element,
                    violation=violation,
                )
            )
    schedule = dict(zip(ids, (int(v) for v in actual), strict=True))
    report = verify_schedule(model, slot, schedule, limits=limits)
    if report.violations:
        fix = curtail_schedule(model, slot, schedule, limits=limits)
        schedule, report = dict(fix.schedule_wh_by_cp), fix.report
        causes += fix.causes
    final = schedule_array(model, schedule, "delivered schedule")
    curtailed = np.abs(planned) - np.abs(final)
    return Delivery(
        schedule_wh_by_cp=schedule,
        curtailed_wh_by_cp=dict(zip(ids, (int(v) for v in curtailed), strict=True)),
        causes=tuple(sorted(causes, key=lambda c: (c.cp_id, c.limit, c.element))),
        report=report,
    )


def _worst_violation(
    acn: _acpf.AcNetwork, flow: FastFlow, lim: GridLimits
) -> tuple[str, int, float, str] | None:
    """(kind, index, excess, label) of the worst violation, or None."""
    if not flow.converged:
        return ("collapse", -1, math.inf, "network")
    cands: list[tuple[float, str, str, int, float]] = []
    band = lim.vm_max_pu - lim.vm_min_pu
    for k in np.flatnonzero(flow.vm_pu > lim.vm_max_pu):
        ex = float(flow.vm_pu[k] - lim.vm_max_pu)
        cands.append((ex / band, acn.bus_label(int(k)), "overvoltage", int(k), ex))
    for k in np.flatnonzero(flow.vm_pu < lim.vm_min_pu):
        ex = float(lim.vm_min_pu - flow.vm_pu[k])
        cands.append((ex / band, acn.bus_label(int(k)), "undervoltage", int(k), ex))
    for j in np.flatnonzero(flow.loading_pct > lim.max_loading_pct):
        ex = float(flow.loading_pct[j] - lim.max_loading_pct)
        cands.append((ex / lim.max_loading_pct, acn.mon_label(int(j)), "overload", int(j), ex))
    if not cands:
        return None
    cands.sort(key=lambda c: (-c[0], c[1]))
    _, label, kind, idx, ex = cands[0]
    return (kind, idx, ex, label)


def _curtail_step(
    model: GridModel,
    acn: _acpf.AcNetwork,
    flow: FastFlow,
    x: IntArray,
    worst: tuple[str, int, float, str],
) -> IntArray:
    kind, idx, excess, _ = worst
    x_pu = wh_to_pu(model, x)
    if kind == "collapse":
        # No Jacobian at a collapsed point: cut every importer by half (voltage collapse is
        # always an import problem in a radial feeder) and retry.
        out = x.copy()
        imp = out < 0
        out[imp] = -((-out[imp]) // 2)
        return out
    sens = _acpf.sensitivities(acn, flow.v)
    if kind in ("overvoltage", "undervoltage"):
        g = sens.dvm[idx] * (1.0 if kind == "overvoltage" else -1.0)
    else:
        i_f = (acn.yf @ flow.v)[acn.mon_row[idx]]
        i_t = (acn.yt @ flow.v)[acn.mon_row[idx]]
        if abs(i_f) * acn.mon_kf[idx] >= abs(i_t) * acn.mon_kt[idx]:
            i0, di, k = i_f, sens.di_f[idx], acn.mon_kf[idx]
        else:
            i0, di, k = i_t, sens.di_t[idx], acn.mon_kt[idx]
        g = 100.0 * k * np.real(np.conj(i0) / max(abs(i0), 1e-12) * di)
    contrib = g * x_pu
    movers = np.flatnonzero(contrib > 0)
    if len(movers) == 0:
        # Nobody pushes the wrong way at first order: fall back to every non-zero cp with the
        # largest |g| (second-order effects, e.g. losses), so the loop always progresses.
        movers = np.flatnonzero(x != 0)
        contrib = np.abs(g * x_pu)
    gmax = np.max(np.abs(g[movers]))
    share = movers[np.abs(g[movers]) >= _SHARE_OF_MAX_SENSITIVITY * gmax]
    total = float(contrib[share].sum())
    f = 1.0 if total <= 0 else min(1.0, _OVERSHOOT * excess / total)
    out = x.copy()
    mag = np.abs(out[share])
    cut = np.minimum(mag, np.ceil(f * mag - 1e-9).astype(np.int64))
    cut = np.maximum(cut, np.minimum(mag, 1))  # at least 1 Wh so every round makes progress
    out[share] = np.sign(out[share]) * (mag - cut)
    return out
