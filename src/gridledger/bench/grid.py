"""Grid benchmark: one slot's grid work, and our state estimator against pandapower's.

``slot_grid_work_s`` is what the DSO does every 15 minutes: compute the operating envelopes,
verify the cleared schedule with a pandapower power flow, and run state estimation with
bad-data detection (``detect_bad_meters``: WLS + chi2/LNR, the protected-set test and the
energy balances). ``gridledger_se_s`` and ``pandapower_se_s`` time one WLS estimate on the
same measurement set (GridLedger's with its covariance, which the detector needs;
``pandapower.estimation.estimate`` as the reference), in the same process.

Run: ``gridledger bench grid`` (or ``python -m gridledger.bench.grid [--quick]``).
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from typing import Any

import numpy as np

NETWORKS = ("1-LV-rural1--0-sw", "1-LV-rural3--0-sw", "1-MV-semiurb--0-sw")
"""The default SimBench LV grid, a 129-bus LV feeder and a 117-bus MV grid."""
DAYS = (20, 137, 200, 300)
HOURS = (12, 19)
TARGET_S = 1.0


def _slots(quick: bool) -> list[int]:
    days = DAYS[1:2] if quick else DAYS
    return [d * 96 + h * 4 for d in days for h in HOURS]


def _bench_network(code: str, quick: bool) -> dict[str, Any]:
    from pandapower.estimation import estimate

    from gridledger.grid import (
        clip_to_envelopes,
        compute_envelopes,
        detect_bad_meters,
        load_grid,
        measure_slot,
        verify_schedule,
    )
    from gridledger.grid.estimation import estimate_state
    from gridledger.grid.measurements import build_rows, pandapower_measurement_net
    from gridledger.grid.powerflow import ac_network

    model = load_grid(code)
    acn = ac_network(model)
    slots = _slots(quick)
    work, env_t, ver_t, det_t, ours_t, pp_t, dvm = [], [], [], [], [], [], []
    n_meas = 0
    for k, slot in enumerate([slots[0], *slots]):
        warm = k == 0  # first pass builds caches (AC matrices, pandapower work net)
        readings = measure_slot(model, slot, model.forecast_wh_by_cp(slot), rng=slot)
        t0 = time.perf_counter()
        env = compute_envelopes(model, slot)
        t1 = time.perf_counter()
        cleared = clip_to_envelopes(model.forecast_wh_by_cp(slot), env)
        verify_schedule(model, slot, cleared)
        t2 = time.perf_counter()
        detect_bad_meters(model, slot, readings)
        t3 = time.perf_counter()
        rows = build_rows(model, readings)
        t4 = time.perf_counter()
        est = estimate_state(acn, rows.mm, rows.z, rows.sigma)
        t5 = time.perf_counter()
        net = pandapower_measurement_net(model, readings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t6 = time.perf_counter()
            res = estimate(net, init="flat", zero_injection="no_inj_bus")
            t7 = time.perf_counter()
        if warm:
            continue
        if not res["success"]:
            raise RuntimeError(f"pandapower state estimation failed on {code} slot {slot}")
        keep = acn.pd_bus >= 0
        vm_pp = net.res_bus_est.vm_pu.loc[acn.pd_bus[keep]].to_numpy()
        dvm.append(float(np.max(np.abs(vm_pp - np.abs(est.v)[keep]))))
        env_t.append(t1 - t0)
        ver_t.append(t2 - t1)
        det_t.append(t3 - t2)
        work.append(t3 - t0)
        ours_t.append(t5 - t4)
        pp_t.append(t7 - t6)
        n_meas = rows.mm.m
    return {
        "name": code,
        "buses": int(len(model.net.bus)),
        "connection_points": len(model.cps),
        "measurements": n_meas,
        "slots_timed": len(work),
        "slot_grid_work_s": round(statistics.median(work), 4),
        "envelopes_s": round(statistics.median(env_t), 4),
        "verify_s": round(statistics.median(ver_t), 4),
        "detect_s": round(statistics.median(det_t), 4),
        "gridledger_se_s": round(statistics.median(ours_t), 4),
        "pandapower_se_s": round(statistics.median(pp_t), 4),
        "se_max_vm_diff_pu": float(f"{max(dvm):.2e}"),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Time one slot's grid work on each network; medians over noon and evening slots."""
    rows = [_bench_network(code, quick) for code in NETWORKS]
    return {
        "networks": rows,
        "target_slot_grid_work_s": TARGET_S,
        "quick": quick,
    }


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
