"""False-data-injection attacks on meter readings, for the simulator and the measured rates.

``under_report`` is the plain ``fdi-meter`` attack (one or more meters hide consumption);
``craft_stealthy_attack`` is the coordinated ``fdi-stealthy`` attack a = H c that leaves
every residual unchanged (Liu, Ning & Reiter, ACM CCS 2009; exact AC form after Hug &
Giampapa, IEEE Trans. Smart Grid 2012). Detection lives in ``fdi.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridledger.grid.estimation import (
    P_INJ,
    Q_INJ,
    VM,
    MeasurementModel,
    estimate_state,
    jacobian,
    measure,
    state_to_voltage,
    voltage_to_state,
)
from gridledger.grid.measurements import (
    METER,
    SENSOR,
    MeterNoise,
    Rows,
    SlotMeasurements,
    build_rows,
)
from gridledger.grid.model import WH_PER_MW_SLOT, GridModel
from gridledger.grid.powerflow import ac_network

FloatArray = npt.NDArray[np.float64]


def under_report(measurements: SlotMeasurements, hidden_wh_by_cp: Mapping[str, int]) -> SlotMeasurements:
    """The ``fdi-meter`` attack: each named meter hides ``hidden_wh`` of its consumption
    (reports that much less import, or more export)."""
    return measurements.with_reported(
        {cp: int(measurements.reported_wh_by_cp[cp]) + int(h) for cp, h in hidden_wh_by_cp.items()}
    )


def craft_stealthy_attack(
    model: GridModel,
    measurements: SlotMeasurements,
    target_cp: str,
    hidden_wh: int,
    *,
    attacker_can_modify_sensors: bool = True,
    noise: MeterNoise = MeterNoise(),
) -> SlotMeasurements:
    """The ``fdi-stealthy`` attack: hide ``hidden_wh`` of ``target_cp``'s consumption with a
    coordinated, physically consistent change of every reading the attacker controls.

    The attacker estimates the state x^ from the honest readings, picks the smallest state
    change c that raises the target's injection by ``hidden_wh`` and leaves every other
    connection point's P and Q (and the substation voltage) unchanged, and adds
    a = h(x^ + c) - h(x^) to the readings (the exact AC form of a = H c; Hug & Giampapa,
    IEEE Trans. Smart Grid 3(3), 2012). With ``attacker_can_modify_sensors=False`` the DSO
    sensors keep their honest values (the protected-measurement defence).
    """
    acn = ac_network(model)
    ti = model.cp_index(target_cp)
    rows = build_rows(model, measurements, noise)
    est = estimate_state(acn, rows.mm, rows.z, rows.sigma, with_covariance=False)
    x_hat = voltage_to_state(acn, est.v)
    scale = WH_PER_MW_SLOT * acn.base_mva
    # Constraint rows: P and Q at every cp bus and every zero-injection bus, |V| at the slack.
    ref_set = {int(r) for r in acn.ref}
    kinds, elems, target = [], [], []
    for k in range(acn.n_bus):
        if k in ref_set:
            kinds.append(VM)
            elems.append(k)
            target.append(0.0)
            continue
        kinds += [P_INJ, Q_INJ]
        elems += [k, k]
        is_t = k == int(acn.cp_bus[ti])
        target += [hidden_wh / scale if is_t else 0.0, 0.0]
    if len(acn.pv):
        pv_set = {int(k) for k in acn.pv}
        keep = [
            i
            for i, (kd, e) in enumerate(zip(kinds, elems, strict=True))
            if not (kd == Q_INJ and e in pv_set)
        ]
        kinds = [kinds[i] for i in keep]
        elems = [elems[i] for i in keep]
        target = [target[i] for i in keep]
    cm = MeasurementModel(
        np.array(kinds), np.array(elems), np.ones(len(kinds)), tuple(f"c{i}" for i in range(len(kinds)))
    )
    b = np.array(target)
    h0 = measure(acn, cm, est.v)
    a_mat = sp.csr_matrix(jacobian(acn, cm, est.v))
    c = np.zeros(len(x_hat))
    for _ in range(4):  # Newton on the nonlinear constraints h_c(x^ + c) - h_c(x^) = b
        g = measure(acn, cm, state_to_voltage(acn, x_hat + c)) - h0 - b
        if np.max(np.abs(g)) < 1e-13:
            break
        c = c - _min_norm_solve(a_mat, g)
    v_att = state_to_voltage(acn, x_hat + c)
    a = measure(acn, rows.mm, v_att) - measure(acn, rows.mm, est.v)
    return _apply_attack(model, measurements, rows, a * rows.unit_scale, attacker_can_modify_sensors)


def _min_norm_solve(a_mat: sp.csr_matrix, g: FloatArray) -> FloatArray:
    """argmin ||d|| with A d = g (A has full row rank here)."""
    aat = sp.csc_matrix(a_mat @ a_mat.T)
    try:
        y = spla.splu(aat).solve(g)
        out = np.asarray(a_mat.T @ y)
        if np.all(np.isfinite(out)):
            return out
    except RuntimeError:
        pass
    return np.asarray(spla.lsqr(a_mat, g, atol=1e-15, btol=1e-15, iter_lim=10_000)[0])


def _apply_attack(
    model: GridModel,
    meas: SlotMeasurements,
    rows: Rows,
    a_units: FloatArray,
    modify_sensors: bool,
) -> SlotMeasurements:
    wh = dict(meas.reported_wh_by_cp)
    varh = dict(meas.reported_varh_by_cp)
    vm = dict(meas.vm_pu_by_cp)
    sensors = dict(meas.sensor_readings)
    for i, lb in enumerate(rows.mm.labels):
        delta = float(a_units[i])
        owner = rows.owner[i]
        if owner == METER:
            cp, _, qty = lb.partition(":")
            if qty == "p_wh":
                wh[cp] = int(round(wh[cp] + delta))
            elif qty == "q_varh":
                varh[cp] = int(round(varh[cp] + delta))
            elif qty == "vm_pu":
                vm[cp] = round(vm[cp] + delta, 6)
        elif owner == SENSOR and modify_sensors:
            if lb.endswith(":vm_pu"):
                sensors[lb] = round(sensors[lb] + delta, 6)
            else:
                sensors[lb] = float(int(round(sensors[lb] + delta)))
    return replace(
        meas, reported_wh_by_cp=wh, reported_varh_by_cp=varh, vm_pu_by_cp=vm, sensor_readings=sensors
    )

