"""Per-secondary-substation envelopes (grid.areas): an MV feeder with three LV grids behind
MV/LV transformers. Whatever every cp does inside its own area's envelope, a full pandapower
power flow of the whole MV+LV network keeps every limit."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.errors import GridError
from gridledger.grid import (
    DetectionConfig,
    EnvelopeConfig,
    GridModel,
    compute_envelope_report,
    detect_bad_meters,
    measure_slot,
    verify_schedule,
)
from gridledger.grid.areas import boundary_vm_pu, substation_areas
from gridledger.grid.model import ConnectionPoint, YearFigures

N_SLOTS = 96
NOON = 50
EVENING = 19 * 4


@pytest.fixture(scope="module")
def mvlv() -> GridModel:
    """20 kV feeder (3 km of cable) with an industrial MV load and three 400 kVA substations,
    each feeding a 6-bus LV cable of households with 60-90 kWp of PV: the noon PV overloads
    the transformers and lifts LV voltages; the evening peak pulls them down. One day of
    profiles (a PV bell at noon, household loads peaking at 19:00)."""
    import pandapower as pp

    net = pp.create_empty_network(sn_mva=1.0)
    hv = pp.create_bus(net, 20.0, name="MV source")
    pp.create_ext_grid(net, hv, vm_pu=1.02)
    prev = hv
    pv_kw: list[float] = []
    load_kw: list[float] = []
    buses: list[int] = []
    for k in range(3):
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
    t = np.arange(N_SLOTS)
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
                     pv_wh=pv_wh, storage_wh=zeros, year=year, first_slot=0, year_slots=N_SLOTS,
                     profile_source="standard")


def test_the_network_splits_at_its_substations(mvlv: GridModel, lv: GridModel) -> None:
    areas = substation_areas(mvlv)
    assert areas is not None and len(areas.lv) == 3
    assert [len(a.rows) for a in areas.lv] == [6, 6, 6] and len(areas.mv_rows) == 1
    # every cp in exactly one area; the MV level carries one aggregate per LV area
    rows = sorted([*areas.mv_rows.tolist(), *(i for a in areas.lv for i in a.rows.tolist())])
    assert rows == list(range(len(mvlv.cps)))
    assert [cp.cp_id for cp in areas.mv.cps][1:] == [f"area-{a.trafo}" for a in areas.lv]
    for a in areas.lv:
        agg = areas.mv.cps[a.mv_index]
        assert agg.capacity_w == sum(mvlv.cps[int(i)].capacity_w for i in a.rows)
        assert np.array_equal(areas.mv.load_wh[a.mv_index], mvlv.load_wh[a.rows].sum(axis=0))
        assert 0.95 < boundary_vm_pu(a) < 1.05
    # an LV grid alone is its own single area
    assert substation_areas(lv) is None


@pytest.mark.parametrize("slot", [NOON, EVENING])
def test_any_schedule_inside_the_area_envelopes_is_safe_on_the_whole_network(
        mvlv: GridModel, slot: int) -> None:
    rep = compute_envelope_report(mvlv, slot)
    assert rep.areas == 4 and rep.ac_checks > 0
    env = rep.envelopes
    assert list(env) == list(mvlv.cp_ids)
    assert any(e.export_max_wh > 0 for e in env.values())
    assert any(e.import_max_wh > 0 for e in env.values())
    rng = np.random.default_rng(slot)
    ids = mvlv.cp_ids
    schedules = [{cp: env[cp].export_max_wh for cp in ids}, {cp: -env[cp].import_max_wh for cp in ids}]
    for _ in range(12):
        ends = rng.random(len(ids))
        schedules.append({cp: (env[cp].export_max_wh if ends[i] < 0.5 else -env[cp].import_max_wh)
                          if rng.random() < 0.8 else int(rng.integers(-env[cp].import_max_wh,
                                                                      env[cp].export_max_wh + 1))
                          for i, cp in enumerate(ids)})
    for sched in schedules:
        flow = verify_schedule(mvlv, slot, sched)  # pandapower, the whole MV+LV network
        assert flow.ok, flow.violations


def test_noon_names_each_areas_own_bound(mvlv: GridModel) -> None:
    rep = compute_envelope_report(mvlv, NOON)
    # the forecast PV alone overloads the biggest substation: its exports are cut, named by
    # that area's transformer; the MV cp is bounded by the MV level
    areas = substation_areas(mvlv)
    assert areas is not None
    bounds = {rep.limited_by(mvlv.cp_ids[int(a.rows[0])], True) for a in areas.lv}
    assert any(b.startswith(("overload", "overvoltage")) for b in bounds), bounds
    whole = compute_envelope_report(mvlv, NOON, config=EnvelopeConfig(per_substation=False))
    assert whole.areas == 1 and whole.limited_by_cp == {}


def test_per_substation_required_on_a_network_without_substations(lv: GridModel) -> None:
    with pytest.raises(GridError, match="fewer than two LV areas"):
        compute_envelope_report(lv, 40, config=EnvelopeConfig(per_substation=True))


def test_false_data_detection_runs_per_substation(mvlv: GridModel) -> None:
    areas = substation_areas(mvlv)
    assert areas is not None
    truth = mvlv.forecast_wh_by_cp(EVENING)
    honest = measure_slot(mvlv, EVENING, truth, rng=3)
    # the head meters also read their busbar's voltage: each LV area's boundary value
    assert all(f"bus-{a.busbar}:vm_pu" in honest.sensor_readings for a in areas.lv)
    clean = detect_bad_meters(mvlv, EVENING, honest)
    assert len(clean.parts) == 4 and clean.protected_used and clean.converged
    assert not clean.flagged and not clean.alarm
    assert set(clean.estimated_wh_by_cp) == set(mvlv.cp_ids)
    for cp in mvlv.cp_ids:  # the network's own estimate is close to the truth
        assert abs(clean.estimated_wh_by_cp[cp] - truth[cp]) <= 0.02 * abs(truth[cp]) + 20
    # one LV household and the MV plant under-report their import by a third
    lv_cp = mvlv.cp_ids[int(areas.lv[2].rows[3])]
    mv_cp = mvlv.cp_ids[int(areas.mv_rows[0])]
    lie = honest.with_reported({cp: honest.reported_wh_by_cp[cp] * 2 // 3 for cp in (lv_cp, mv_cp)})
    caught = detect_bad_meters(mvlv, EVENING, lie, previous=clean)
    assert caught.flagged == {lv_cp, mv_cp}
    assert abs(caught.corrected_wh_by_cp[lv_cp] - truth[lv_cp]) <= 0.02 * abs(truth[lv_cp]) + 20
    # the same readings through one whole-network estimate flag the same meters
    whole = detect_bad_meters(mvlv, EVENING, lie, config=DetectionConfig(per_substation=False))
    assert whole.flagged == caught.flagged and whole.parts == ()
