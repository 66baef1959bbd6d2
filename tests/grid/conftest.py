"""Grid fixtures: networks are loaded once per session (``load_grid`` also caches)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from gridledger.grid import GridModel, add_der, load_grid
from gridledger.grid.model import ConnectionPoint, YearFigures

LV = "1-LV-rural1--0-sw"
CLEAR_DAY = 137
"""17 May 2016: a clear day in SimBench's PV profiles (noon PV peak, evening EV peak)."""


@pytest.fixture(scope="session")
def lv() -> GridModel:
    """The default SimBench LV grid with its own profiles."""
    return load_grid(LV)


@pytest.fixture(scope="session")
def stressed(lv: GridModel) -> GridModel:
    """rural1 with 15 kWp PV and an 11 kW EV at every connection point (EVs charge 18-21 h)."""
    return add_der(lv, pv_kwp_per_cp=15.0, ev_kw_per_cp=11.0)


@pytest.fixture(scope="session")
def rural3() -> GridModel:
    """A 129-bus SimBench LV grid (long rural feeders: voltage problems, not only loading)."""
    return load_grid("1-LV-rural3--0-sw")


@pytest.fixture(scope="session")
def raw_lv_net() -> Any:
    """The stock SimBench net behind ``lv`` (deep-copy before changing it)."""
    import simbench as sb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sb.get_simbench_net(LV)


DEMO_NETWORK = "1-LV-semiurb4--2-sw"
DEMO_DAY = 136
"""The demo's default network and day (``gridledger.sim.scenario``)."""


@pytest.fixture(scope="session")
def demo_grid() -> GridModel:
    """The demo's SimBench semi-urban grid: households, shops, PV, batteries, heat pumps, EVs."""
    return load_grid(DEMO_NETWORK)


MVLV_SLOTS = 96
MVLV_NOON = 50
MVLV_EVENING = 19 * 4


@pytest.fixture(scope="session")
def mvlv() -> GridModel:
    """20 kV feeder (3 km of cable) with an industrial MV load and three 400 kVA substations,
    each feeding a 6-bus LV cable of households with 60-90 kWp of PV: the noon PV overloads
    the transformers and lifts LV voltages; the evening peak pulls them down. One day of
    profiles (a PV bell at noon, household loads peaking at 19:00)."""
    return mvlv_feeder()


def mvlv_feeder(mv_joints: int = 0, joint_km: float = 0.0) -> GridModel:
    """``mvlv``'s network; ``mv_joints`` zero-injection MV buses (cable joints, switchgear
    busbars) of ``joint_km`` of cable each before every MV bus, as SimBench MV grids have."""
    import pandapower as pp

    net = pp.create_empty_network(sn_mva=1.0)
    hv = pp.create_bus(net, 20.0, name="MV source")
    pp.create_ext_grid(net, hv, vm_pu=1.02)
    prev = hv
    pv_kw: list[float] = []
    load_kw: list[float] = []
    buses: list[int] = []
    for k in range(3):
        for j in range(mv_joints):
            joint = pp.create_bus(net, 20.0, name=f"MV {k} joint {j}")
            pp.create_line(net, prev, joint, joint_km, "NA2XS2Y 1x95 RM/25 12/20 kV")
            prev = joint
        mvb = pp.create_bus(net, 20.0, name=f"MV {k}")
        pp.create_line(net, prev, mvb, 1.0, "NA2XS2Y 1x95 RM/25 12/20 kV")
        prev = mvb
        if k == 1:
            buses.append(mvb)
            pv_kw.append(0.0)
            load_kw.append(400.0)
        lvb = pp.create_bus(net, 0.4, name=f"LV {k} busbar")
        pp.create_transformer(net, mvb, lvb, "0.4 MVA 20/0.4 kV")
        last = lvb
        for j in range(6):
            b = pp.create_bus(net, 0.4, name=f"LV {k}.{j}")
            pp.create_line(net, last, b, 0.08, "NAYY 4x150 SE")
            buses.append(b)
            pv_kw.append(15.0 * (4 + k))
            load_kw.append(12.0)
            last = b
    order = np.argsort(buses, kind="stable")
    buses = [buses[i] for i in order]
    pv = np.array(pv_kw)[order]
    load = np.array(load_kw)[order]
    ids = [f"cp-{b:05d}" for b in buses]
    pp.create_sgens(net, buses, p_mw=np.zeros(len(buses)), q_mvar=np.zeros(len(buses)), name=ids)
    t = np.arange(MVLV_SLOTS)
    bell = np.clip(np.cos((t - 48) / 24 * np.pi / 1.2), 0.0, None) ** 2  # noon peak
    evening = 0.4 + 0.6 * np.exp(-(((t - 76) / 6.0) ** 2))
    wh = 250.0  # kW over a 15-minute slot -> Wh
    load_wh = np.rint(np.outer(load, evening) * wh).astype(np.int64)
    pv_wh = np.rint(np.outer(pv, bell) * wh).astype(np.int64)
    zeros = np.zeros_like(load_wh)
    cps = tuple(ConnectionPoint(cp_id=ids[i], bus=b, bus_name=str(net.bus.at[b, "name"]),
                                vn_kv=float(net.bus.at[b, "vn_kv"]),
                                capacity_w=int(max(pv[i], load[i]) * 1000))
                for i, b in enumerate(buses))
    peak = np.max(np.abs(pv_wh), axis=1)
    year = YearFigures(peak, zeros[:, 0], load_wh.sum(axis=1), (load_wh // 4).sum(axis=1))
    return GridModel(name="mvlv-test", net=net, cps=cps, load_wh=load_wh, load_varh=load_wh // 4,
                     pv_wh=pv_wh, storage_wh=zeros, year=year, first_slot=0, year_slots=MVLV_SLOTS,
                     profile_source="standard")
