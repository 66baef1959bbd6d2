"""Per-area grid work on every core (grid.area_workers): the same envelopes and the same
detection whoever computes each LV area, a dead worker never loses a slot, and a part's
error is raised as one loop over the areas would raise it."""

from __future__ import annotations

import pytest

from gridledger.errors import GridError
from gridledger.grid import (
    DetectionConfig,
    GridModel,
    compute_envelope_report,
    detect_bad_meters,
    measure_slot,
)
from gridledger.grid.area_workers import (
    area_worker_timings,
    area_workers,
    close_area_workers,
    start_area_workers,
)
from gridledger.grid.areas import substation_areas
from gridledger.grid.fdi import _detect_part
from gridledger.grid.measurements import SlotMeasurements

NOON = 50
EVENING = 19 * 4


def _slot_work(model: GridModel) -> list[object]:
    """Envelopes at noon and in the evening, then detection of an honest and a lying slot."""
    out: list[object] = [compute_envelope_report(model, NOON), compute_envelope_report(model, EVENING)]
    truth = model.forecast_wh_by_cp(EVENING)
    honest = measure_slot(model, EVENING, truth, rng=3)
    clean = detect_bad_meters(model, EVENING, honest)
    liar = model.cp_ids[-2]
    lie = honest.with_reported({liar: honest.reported_wh_by_cp[liar] * 2 // 3})
    out += [clean, detect_bad_meters(model, EVENING, lie, previous=clean)]
    return out


def test_workers_give_what_one_core_gives(mvlv: GridModel) -> None:
    close_area_workers(mvlv)
    assert area_workers(mvlv) is None  # 19 cps: below PARALLEL_FROM_CPS, one core
    inline = _slot_work(mvlv)
    try:
        pool = start_area_workers(mvlv, 2)
        assert pool is not None and len(pool.workers) == 2 and area_workers(mvlv) is pool
        # every LV area but the caller's share is computed in a worker
        assert sorted([*pool.local, *(i for w in pool.workers for i in w.areas)]) == [0, 1, 2]
        assert all(w.areas for w in pool.workers)
        assert area_worker_timings(mvlv) == {"area_here_s": 0.0, "area_wait_s": 0.0}
        assert _slot_work(mvlv) == inline
        assert inline[3].flagged == {mvlv.cp_ids[-2]}  # type: ignore[attr-defined]
        # the caller's share and its waits are timed (the demo's summary reports them)
        got = area_worker_timings(mvlv)
        assert got["area_here_s"] > 0.0 and got["area_wait_s"] >= 0.0
        # a worker that dies: its areas are computed here, the same results, the rest go on
        dead, local = pool.workers[0], pool.local
        assert dead.proc is not None
        dead.proc.kill()
        dead.proc.wait()
        assert _slot_work(mvlv) == inline
        assert len(pool.workers) == 1 and pool.local == sorted([*local, *dead.areas])
    finally:
        close_area_workers(mvlv)
    assert area_worker_timings(mvlv) == {}  # and none are started for it
    assert area_workers(mvlv) is None


def test_a_parts_error_names_its_area_in_area_order(mvlv: GridModel) -> None:
    areas = substation_areas(mvlv)
    assert areas is not None
    good = measure_slot(mvlv, EVENING, mvlv.forecast_wh_by_cp(EVENING), rng=3)
    cfg = DetectionConfig(per_substation=False)

    def job(i: int, slot: int) -> tuple[object, ...]:
        ids = areas.lv[i].model.cp_ids
        meas = SlotMeasurements(slot=slot,
                                reported_wh_by_cp={c: good.reported_wh_by_cp[c] for c in ids},
                                reported_varh_by_cp={c: good.reported_varh_by_cp[c] for c in ids},
                                vm_pu_by_cp={c: good.vm_pu_by_cp[c] for c in ids
                                             if c in good.vm_pu_by_cp},
                                sensor_readings={})
        return (areas.lv[i].name, EVENING, meas, cfg, None)

    try:
        pool = start_area_workers(mvlv, 2)
        assert pool is not None
        # areas 1 and 2 (each in a worker or here) carry another slot's readings
        jobs = [job(0, EVENING), job(1, EVENING + 1), job(2, EVENING + 1)]
        with pytest.raises(GridError, match=f"^{areas.lv[1].name}: measurements are for slot"):
            pool.map(_detect_part, jobs)
        assert len(pool.workers) == 2  # a part's error is not a dead worker
        ok = pool.map(_detect_part, [job(i, EVENING) for i in range(3)])
        assert [r.slot for r in ok] == [EVENING] * 3
        with pytest.raises(ValueError, match="2 argument tuples for 3 LV areas"):
            pool.map(_detect_part, jobs[:2])
        # what a library prints in a worker never reaches the message stream
        assert pool.map(print, [("printed by an area's work",)] * 3) == [None] * 3
        assert len(pool.workers) == 2
        assert [r.slot for r in pool.map(_detect_part, [job(i, EVENING) for i in range(3)])] \
            == [EVENING] * 3
    finally:
        close_area_workers(mvlv)
