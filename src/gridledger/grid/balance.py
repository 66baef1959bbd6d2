"""Energy balances of metered areas: what flows in through DSO sensors against what the meters report.

Per slot, the head meter of each feeder is compared with the sum of its customer meters plus
the losses of a power flow of the reported injections; with line sensors, the same is done
for every metered area between sensors ("observer meters", Xiao et al., "Non-technical loss
detection ...", IEEE SmartGridComm 2013). Part of ``detect_bad_meters`` (``fdi.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from gridledger.grid import _acpf
from gridledger.grid.estimation import Q_INJ
from gridledger.grid.measurements import (
    METER,
    PSEUDO,
    MeterNoise,
    Rows,
    SlotMeasurements,
    sensor_catalogue,
)
from gridledger.grid.model import WH_PER_MW_SLOT, GridModel


@dataclass(frozen=True)
class AreaBalance:
    """Energy balance of one metered area for one slot (Wh; gap > 0: energy unaccounted for)."""

    area: str
    cp_ids: tuple[str, ...]
    inflow_wh: int
    reported_consumption_wh: int
    losses_wh: int
    gap_wh: int
    tolerance_wh: int
    alarm: bool


def area_balances(
    model: GridModel,
    acn: _acpf.AcNetwork,
    rows: Rows,
    meas: SlotMeasurements,
    a_test: float,
    noise: MeterNoise,
) -> tuple[AreaBalance, ...]:
    """Feeder balance (cut at head meters) and, with line sensors, per metered area."""
    cat = sensor_catalogue(model)
    p_sensors = {lb: cat[lb] for lb in meas.sensor_readings if lb.endswith(":p_wh") and lb in cat}
    heads = {lb: d for lb, d in p_sensors.items() if lb.startswith("trafo-")}
    if not heads:
        return ()
    scale = WH_PER_MW_SLOT * acn.base_mva
    # Losses from a power flow of the reported injections (reported or forecast Q).
    p_pu = np.zeros(len(model.cps))
    q_pu = np.zeros(len(model.cps))
    for i, cp in enumerate(model.cp_ids):
        p_pu[i] = meas.reported_wh_by_cp.get(cp, 0) / scale
    qsel = (rows.mm.kind == Q_INJ) & ((rows.owner == METER) | (rows.owner == PSEUDO))
    for j in np.flatnonzero(qsel):
        bus = rows.mm.element[j]
        hits = np.flatnonzero(acn.cp_bus == bus)
        if len(hits):
            q_pu[hits[0]] = rows.z[j] - acn.s_fixed[bus].imag  # the row holds the bus's Q
    sol = _acpf.solve_pf(acn, _acpf.bus_injection(acn, p_pu, q_pu))
    if not sol.converged:
        # Reported injections the network could not carry (gross bad data): losses of the
        # forecast stand in; the gap then shows the impossible reading in full.
        p_fore = model.net_injection_wh(meas.slot) / scale
        sol = _acpf.solve_pf(acn, _acpf.bus_injection(acn, p_fore, q_pu))
    v = sol.v if sol.converged else acn.v_start
    pf_ = (v[acn.f_bus] * np.conj(acn.yf @ v)).real
    pt_ = (v[acn.t_bus] * np.conj(acn.yt @ v)).real
    loss_wh = (pf_ + pt_) * scale
    out: list[AreaBalance] = []
    partitions = [("feeder", heads)]
    if len(p_sensors) > len(heads):
        partitions.append(("area", p_sensors))
    n_areas_total = 0
    prepared = []
    for name, cuts in partitions:
        areas = _areas(acn, {d.element for d in cuts.values()})
        prepared.append((name, cuts, areas))
        n_areas_total += len(areas)
    z_thr = float(stats.norm.isf(a_test / (2 * max(1, n_areas_total))))
    cp_of_bus = {int(b): i for i, b in enumerate(acn.cp_bus)}
    for name, cuts, areas in prepared:
        # each area's cuts (in label order) and internal branches, found once for all areas
        # (a scan of every cut and branch per area was quadratic: ~20 % of a detection)
        area_of = np.full(acn.n_bus, -1, dtype=np.int64)
        for k, members in enumerate(areas):
            area_of[sorted(members)] = k
        touching: list[list[tuple[str, Any]]] = [[] for _ in areas]
        for lb, dev in sorted(cuts.items()):
            ends = {int(area_of[int(acn.f_bus[dev.element])]),
                    int(area_of[int(acn.t_bus[dev.element])])}
            for k in sorted(ends - {-1}):
                touching[k].append((lb, dev))
        lab_f, lab_t = area_of[acn.f_bus], area_of[acn.t_bus]
        inside = np.flatnonzero((lab_f == lab_t) & (lab_f >= 0))
        internal_of = np.split(inside[np.argsort(lab_f[inside], kind="stable")],
                               np.cumsum(np.bincount(lab_f[inside], minlength=len(areas)))[:-1])
        for members, area_cuts, internal in zip(areas, touching, internal_of, strict=True):
            inflow = 0.0
            var = 0.0
            boundary_loss = 0.0
            tags: list[str] = []
            for lb, dev in area_cuts:
                row = dev.element
                f, t = int(acn.f_bus[row]), int(acn.t_bus[row])
                val = float(meas.sensor_readings[lb])
                sd = float(np.sqrt((noise.sensor_p_rel * val) ** 2 + noise.sensor_p_abs_wh**2 + 1 / 12))
                if lb.startswith("trafo-"):  # reads energy into the LV (to) side
                    if t in members:
                        inflow += val
                    elif f in members:
                        inflow -= val
                        boundary_loss += loss_wh[row]
                    else:
                        continue
                else:  # reads energy from the from-bus into the line
                    if t in members:
                        inflow += val
                        boundary_loss += loss_wh[row]
                    elif f in members:
                        inflow -= val
                    else:
                        continue
                var += sd**2
                tags.append(lb.partition(":")[0])
            cps = sorted(cp_of_bus[b] for b in members if b in cp_of_bus)
            cp_ids = tuple(model.cp_ids[i] for i in cps)
            # Elements that are not connection points (generators' set-points) feed the
            # area too; they are known exactly, so they add no variance.
            consumption = -float(sum(acn.s_fixed[b].real for b in sorted(members))) * scale
            for cp in cp_ids:
                e = float(meas.reported_wh_by_cp.get(cp, 0))
                consumption -= e
                var += (noise.meter_p_rel * e) ** 2 + noise.meter_p_abs_wh**2 + 1 / 12
            losses = boundary_loss + float(loss_wh[internal].sum())
            var += (0.05 * abs(losses) + 0.5) ** 2  # loss model error (reported values, not truth)
            gap = inflow - consumption - losses
            tol = z_thr * math.sqrt(var)
            label = f"{name} " + "+".join(tags)
            out.append(
                AreaBalance(
                    area=label,
                    cp_ids=cp_ids,
                    inflow_wh=int(round(inflow)),
                    reported_consumption_wh=int(round(consumption)),
                    losses_wh=int(round(losses)),
                    gap_wh=int(round(gap)),
                    tolerance_wh=int(math.ceil(tol)),
                    alarm=abs(gap) > tol,
                )
            )
    return tuple(out)


def _areas(acn: _acpf.AcNetwork, cut_rows: set[int]) -> list[set[int]]:
    """Connected bus sets after cutting the sensored branches, minus the slack's area."""
    parent = list(range(acn.n_bus))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r in range(len(acn.f_bus)):
        if r in cut_rows:
            continue
        a, b = find(int(acn.f_bus[r])), find(int(acn.t_bus[r]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, set[int]] = {}
    for k in range(acn.n_bus):
        groups.setdefault(find(k), set()).add(k)
    ref = {find(int(k)) for k in acn.ref}
    touching = set()
    for r in cut_rows:
        touching.add(find(int(acn.f_bus[r])))
        touching.add(find(int(acn.t_bus[r])))
    return [g for root, g in sorted(groups.items()) if root not in ref and root in touching]
