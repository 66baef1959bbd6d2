"""A network split at its secondary substations: one LV area behind each MV/LV transformer,
and the MV level above them, each as a small ``GridModel`` of its own.

DSOs compute operating envelopes per secondary substation (per LV grid under its MV/LV
transformer) with the MV level as the boundary condition, and so does
``grid.envelopes`` on a network with several LV areas: the cost of a slot then grows with the
number of connection points, not with its square (the dense sensitivities of a
5,141-cp network are 2.7 GB and 12 s a linearisation; 90 LV areas of <= 128 buses are ~5 ms each).

* an **LV area** = the buses an MV/LV transformer's LV busbar reaches without crossing a
  transformer (closed switches only); its model is those buses with the slack at the busbar
  (``vm_pu`` = the busbar's no-load voltage in the MV model, ``boundary_vm_pu``), its cps are
  the network's cps on those buses (LV cps at the busbar itself included: the MV level sees
  them through the area's aggregate);
* the **MV level** = every bus no LV area holds, plus each LV area's busbar with its
  transformer; its cps are the network's cps there plus one aggregate cp per LV area at the
  busbar (``area-<trafo>``: the sum of the area's profiles and capacities), so the MV level's
  envelopes bound each LV area's total.

``substation_areas(model)`` returns None for a network that does not split this way: fewer
than two LV areas (an LV grid alone: the whole network is its one area), or an LV area fed by
two transformers (a meshed LV grid: one area would hold two boundaries).
"""

from __future__ import annotations

import copy
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gridledger.grid.model import ConnectionPoint, GridModel, YearFigures

IntArray = npt.NDArray[np.int64]

LV_MAX_KV = 1.0
"""A transformer whose low-voltage side is at or below this (kV) is an MV/LV transformer."""


@dataclass(frozen=True, eq=False)
class LvArea:
    """One secondary substation's LV grid."""

    name: str
    """``"lv trafo 12"`` (the MV/LV transformer's pandapower index)."""
    trafo: int
    busbar: int
    """pandapower index of the transformer's LV bus (the area's slack)."""
    rows: IntArray
    """Rows of the area's cps in the whole network's cp order."""
    model: GridModel
    mv_index: int
    """Row of the area's aggregate cp in the MV level's cp order."""


@dataclass(frozen=True, eq=False)
class Areas:
    """The MV level and its LV areas."""

    mv: GridModel
    mv_rows: IntArray
    """Rows of the MV level's own cps (the first ``len(mv_rows)`` of ``mv.cps``) in the whole
    network's cp order; the rest of ``mv.cps`` are the areas' aggregates."""
    lv: tuple[LvArea, ...]


def substation_areas(model: GridModel) -> Areas | None:
    """The network's split at its MV/LV transformers (cached on the model), or None if it does
    not split into two or more LV areas (see the module docstring)."""
    key = "areas:substation"
    if key not in model._cache:
        model._cache[key] = _split(model)
    out = model._cache[key]
    assert out is None or isinstance(out, Areas)
    return out


def _split(model: GridModel) -> Areas | None:
    import pandapower.topology as top

    net = model.net
    if not len(net.trafo):
        return None
    trafos = net.trafo[net.trafo.in_service.astype(bool)]
    hv_kv = net.bus.vn_kv.reindex(trafos.hv_bus).to_numpy()
    lv_kv = net.bus.vn_kv.reindex(trafos.lv_bus).to_numpy()
    mvlv = [(int(t), int(lb)) for t, lb, h, lo in zip(trafos.index, trafos.lv_bus, hv_kv, lv_kv,
                                                      strict=True)
            if lo <= LV_MAX_KV < h]
    if len(mvlv) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = top.create_nxgraph(net, include_trafos=False, include_trafo3ws=False,
                                   respect_switches=True)
    slack = {int(b) for b in net.ext_grid.bus[net.ext_grid.in_service.astype(bool)]}
    owner: dict[int, int] = {}
    comps: list[tuple[int, int, set[int]]] = []
    for t, busbar in mvlv:
        if busbar in owner:
            return None  # two transformers feed one LV grid
        buses = {int(b) for b in top.connected_component(graph, busbar)}
        if buses & slack or any(b in owner for b in buses):
            return None
        for b in buses:
            owner[b] = t
        comps.append((t, busbar, buses))
    bus_of = np.array([cp.bus for cp in model.cps], dtype=np.int64)
    area_of = np.array([owner.get(int(b), -1) for b in bus_of], dtype=np.int64)
    mv_rows = np.flatnonzero(area_of < 0).astype(np.int64)
    lv_parts = [(t, busbar, buses, np.flatnonzero(area_of == t).astype(np.int64))
                for t, busbar, buses in comps]
    lv_parts = [p for p in lv_parts if len(p[3])]  # a transformer with no cp behind it
    if len(lv_parts) < 2:
        return None
    mv_buses = {int(b) for b in net.bus.index} - set(owner)
    busbars = [busbar for _t, busbar, _b, _r in lv_parts]
    mv = _mv_model(model, mv_rows, lv_parts, mv_buses | set(busbars))
    mv_v0 = _no_load_vm(mv)
    lv = tuple(
        LvArea(name=f"lv trafo {t}", trafo=t, busbar=busbar, rows=rows,
               model=_lv_model(model, f"lv trafo {t}", rows, buses, busbar,
                               mv_v0[len(mv_rows) + i]),
               mv_index=len(mv_rows) + i)
        for i, (t, busbar, buses, rows) in enumerate(lv_parts)
    )
    return Areas(mv=mv, mv_rows=mv_rows, lv=lv)


_EMPTY_NET: list[Any] = []
"""One ``create_empty_network(add_stdtypes=False)`` of this process (``_empty_network``)."""
_SUBNET_LOCK = threading.Lock()


def _empty_network(add_stdtypes: bool = False) -> Any:
    """A copy of one empty pandapower net made once per process: ``select_subnet`` starts
    every sub-network from ``create_empty_network`` (~0.1 s: it builds ~60 typed empty
    tables), ~150 times for a network's LV areas (17 s of a 1,000-member run's setup, issue
    17); a deep copy of the same empty net is the same net, 13x faster."""
    import pandapower as pp

    if add_stdtypes:  # not what select_subnet asks for: no shortcut
        return pp.create_empty_network(add_stdtypes=True)
    if not _EMPTY_NET:
        _EMPTY_NET.append(pp.create_empty_network(add_stdtypes=False))
    return copy.deepcopy(_EMPTY_NET[0])


def _subnet(net: Any, buses: set[int]) -> Any:
    """pandapower's ``select_subnet`` of ``buses`` (no switch buses), without its sgens."""
    import pandapower.toolbox.grid_modification as gm

    # select_subnet calls its module's create_empty_network; it is swapped for the copy of
    # an empty net for the call (under a lock: one sub-network at a time in this process)
    with _SUBNET_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = gm.create_empty_network
        gm.create_empty_network = _empty_network
        try:
            sub = gm.select_subnet(net, sorted(buses), include_switch_buses=False)
        finally:
            gm.create_empty_network = made
    sub.sgen = sub.sgen.iloc[0:0]
    return sub


def _with_sgens(net: Any, cps: list[ConnectionPoint]) -> None:
    import pandapower as pp

    pp.create_sgens(net, [cp.bus for cp in cps], p_mw=np.zeros(len(cps)), q_mvar=np.zeros(len(cps)),
                    name=[cp.cp_id for cp in cps])


def _rows_model(model: GridModel, name: str, net: Any, cps: list[ConnectionPoint],
                groups: list[IntArray]) -> GridModel:
    """A model whose cp ``k`` carries the sum of the whole model's rows ``groups[k]``."""

    def fold(a: IntArray) -> IntArray:
        out = np.stack([a[g].sum(axis=0) for g in groups]).astype(np.int64)
        out.setflags(write=False)
        return out

    y = model.year
    year = YearFigures(*(fold(a) for a in (y.pv_peak_wh, y.storage_peak_wh, y.load_sum_wh,
                                           y.load_varh_sum)))
    sub = GridModel(name=name, net=net, cps=tuple(cps), load_wh=fold(model.load_wh),
                    load_varh=fold(model.load_varh), pv_wh=fold(model.pv_wh),
                    storage_wh=fold(model.storage_wh), year=year, first_slot=model.first_slot,
                    year_slots=model.year_slots, profile_source=model.profile_source)
    sub._cache["areas:substation"] = None  # a part is never split again
    return sub


def _mv_model(model: GridModel, mv_rows: IntArray,
              lv_parts: list[tuple[int, int, set[int], IntArray]], buses: set[int]) -> GridModel:
    net = _subnet(model.net, buses)
    cps = [model.cps[int(i)] for i in mv_rows]
    for t, busbar, _b, rows in lv_parts:
        cps.append(ConnectionPoint(cp_id=f"area-{t}", bus=busbar,
                                   bus_name=str(model.net.bus.at[busbar, "name"]),
                                   vn_kv=float(model.net.bus.at[busbar, "vn_kv"]),
                                   capacity_w=int(sum(model.cps[int(i)].capacity_w for i in rows))))
    _with_sgens(net, cps)
    groups = [np.array([i]) for i in mv_rows] + [rows for *_x, rows in lv_parts]
    return _rows_model(model, f"{model.name}/mv", net, cps, groups)


def _lv_model(model: GridModel, name: str, rows: IntArray, buses: set[int], busbar: int,
              vm_pu: float) -> GridModel:
    import pandapower as pp

    net = _subnet(model.net, buses)
    net.ext_grid = net.ext_grid.iloc[0:0]
    pp.create_ext_grid(net, busbar, vm_pu=float(vm_pu), va_degree=0.0, name="boundary")
    cps = [model.cps[int(i)] for i in rows]
    _with_sgens(net, cps)
    return _rows_model(model, f"{model.name}/{name}", net, cps, [np.array([i]) for i in rows])


def _no_load_vm(mv: GridModel) -> npt.NDArray[np.float64]:
    """Voltage magnitude at each MV-level cp's bus with nothing injected (the base flow)."""
    from gridledger.grid.powerflow import ac_network

    acn = ac_network(mv)
    out: npt.NDArray[np.float64] = np.abs(acn.v_start[acn.cp_bus])
    return out


def boundary_vm_pu(area: LvArea) -> float:
    """The voltage the LV area's model holds its busbar at (p.u.)."""
    return float(area.model.net.ext_grid.vm_pu.iloc[0])
