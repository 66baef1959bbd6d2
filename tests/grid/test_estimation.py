"""WLS state estimation: statistics, agreement with pandapower's estimator, observability."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from scipy import stats

from gridledger.errors import GridError
from gridledger.grid import GridModel, SensorPlan, SlotMeasurements, measure_slot
from gridledger.grid._acpf import bus_injection, solve_pf
from gridledger.grid.estimation import VM, MeasurementModel, estimate_state, is_observable, jacobian
from gridledger.grid.measurements import METER, SENSOR, build_rows, pandapower_measurement_net
from gridledger.grid.powerflow import ac_network, cp_q_pu, wh_to_pu

from .conftest import CLEAR_DAY

EVENING = CLEAR_DAY * 96 + 76


def _honest(model: GridModel, slot: int, seed: int, plan: SensorPlan = SensorPlan()) -> SlotMeasurements:
    return measure_slot(model, slot, model.forecast_wh_by_cp(slot), rng=seed, plan=plan)


def test_chi2_of_honest_readings_follows_its_distribution(lv: GridModel) -> None:
    acn = ac_network(lv)
    j = []
    for k in range(24):
        slot = EVENING - 40 + 3 * k
        rows = build_rows(lv, _honest(lv, slot, k))
        est = estimate_state(acn, rows.mm, rows.z, rows.sigma)
        j.append(est.chi2 / est.dof)
    # Mean of chi2/dof over 24 draws: 1 +- a few standard errors (sd of chi2/dof = sqrt(2/dof)).
    dof = est.dof
    assert abs(np.mean(j) - 1.0) < 4 * np.sqrt(2 / dof) / np.sqrt(len(j))
    assert max(j) < stats.chi2.isf(1e-4, dof) / dof


def test_estimate_is_close_to_the_true_state(lv: GridModel) -> None:
    acn = ac_network(lv)
    x = lv.net_injection_wh(EVENING)
    true = solve_pf(acn, bus_injection(acn, wh_to_pu(lv, x), cp_q_pu(lv, EVENING))).v
    rows = build_rows(lv, _honest(lv, EVENING, 7))
    est = estimate_state(acn, rows.mm, rows.z, rows.sigma)
    err = np.abs(np.abs(est.v) - np.abs(true))
    every_vm = MeasurementModel(np.full(acn.n_bus, VM), np.arange(acn.n_bus), np.ones(acn.n_bus), ())
    sd = np.sqrt(est.prediction_variance(jacobian(acn, every_vm, est.v)))
    assert np.all(err <= 5 * sd + 1e-9)


def test_agrees_with_pandapower_estimator(rural3: GridModel) -> None:
    from pandapower.estimation import estimate

    acn = ac_network(rural3)
    meas = _honest(rural3, EVENING, 3)
    rows = build_rows(rural3, meas)
    ours = estimate_state(acn, rows.mm, rows.z, rows.sigma)
    net = pandapower_measurement_net(rural3, meas)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = estimate(net, init="flat", zero_injection="no_inj_bus")
    assert res["success"]
    keep = acn.pd_bus >= 0
    vm_pp = net.res_bus_est.vm_pu.loc[acn.pd_bus[keep]].to_numpy()
    assert np.max(np.abs(vm_pp - np.abs(ours.v)[keep])) < 5e-5


def test_largest_normalised_residual_points_at_a_bad_sensor(lv: GridModel) -> None:
    acn = ac_network(lv)
    meas = _honest(lv, EVENING, 11)
    bad = dict(meas.sensor_readings)
    bad["line-9:p_wh"] += 400.0
    rows = build_rows(lv, SlotMeasurements(meas.slot, meas.reported_wh_by_cp, meas.reported_varh_by_cp, meas.vm_pu_by_cp, bad))
    est = estimate_state(acn, rows.mm, rows.z, rows.sigma)
    rn = np.abs(est.normalized_residuals())
    rn[(rows.owner != METER) & (rows.owner != SENSOR)] = 0
    assert rows.mm.labels[int(np.argmax(rn))] == "line-9:p_wh"
    assert est.chi2 > stats.chi2.isf(1e-6, est.dof)


def test_unobservable_measurement_set_names_the_bus(lv: GridModel) -> None:
    # Only customer active energy (no sensors, no voltages) and one meter missing: bus 13's
    # injection cannot be determined from anything.
    plan = SensorPlan(lines="none", trafo_head_meters=False, substation_vm=False, meter_q=False, meter_vm=False)
    meas = _honest(lv, EVENING, 1, plan)
    readings = dict(meas.reported_wh_by_cp)
    readings.pop("cp-00013")
    rows = build_rows(lv, SlotMeasurements(meas.slot, readings))
    acn = ac_network(lv)
    assert not is_observable(acn, rows.mm)
    with pytest.raises(GridError, match=r"unobservable.*bus 13"):
        estimate_state(acn, rows.mm, rows.z, rows.sigma)


def test_minimal_readings_are_still_observable(lv: GridModel) -> None:
    # Meters' energy + head meter: pseudo Q from forecasts and the slack set-point fill in.
    plan = SensorPlan(lines="none", substation_vm=False, meter_q=False, meter_vm=False)
    meas = _honest(lv, EVENING, 2, plan)
    assert meas.head_meter_wh is not None and meas.head_meter_wh > 0
    rows = build_rows(lv, meas)
    est = estimate_state(ac_network(lv), rows.mm, rows.z, rows.sigma)
    assert est.dof >= 1


def _jacobian_by_sparse_algebra(acn, mm, v):  # type: ignore[no-untyped-def]
    """MATPOWER's dSbus_dV / dSbr_dV as sparse products (the estimator's H before it was
    filled entry by entry): the oracle ``jacobian`` must equal."""
    import scipy.sparse as sp

    n, nbr = acn.n_bus, acn.yf.shape[0]
    ref = int(acn.ref[0])
    non_ref = np.array([k for k in range(n) if k != ref])
    vn = v / np.abs(v)
    ibus = acn.ybus @ v
    dv, dvn = sp.diags(v), sp.diags(vn)
    ds_dvm = dv @ (acn.ybus @ dvn).conj() + sp.diags(np.conj(ibus) * vn)
    ds_dva = 1j * dv @ (sp.diags(ibus) - acn.ybus @ dv).conj()

    def branch(y, bus):  # type: ignore[no-untyped-def]
        c = sp.csr_matrix((np.ones(nbr), (np.arange(nbr), bus)), shape=(nbr, n))
        i = y @ v
        vb, di = sp.diags(v[bus]), sp.diags(np.conj(i))
        return (1j * (di @ c @ dv - vb @ (y @ dv).conj()),
                vb @ (y @ dvn).conj() + di @ c @ dvn)

    f_va, f_vm = branch(acn.yf, acn.f_bus)
    t_va, t_vm = branch(acn.yt, acn.t_bus)
    zero = sp.csr_matrix((n, n))
    big_va = sp.vstack([ds_dva.real, ds_dva.imag, zero, f_va.real, f_va.imag, t_va.real,
                        t_va.imag], format="csr")
    big_vm = sp.vstack([ds_dvm.real, ds_dvm.imag, sp.identity(n), f_vm.real, f_vm.imag,
                        t_vm.real, t_vm.imag], format="csr")
    rows = np.cumsum([0, n, n, n, nbr, nbr, nbr, nbr])[mm.kind] + mm.element
    h = sp.hstack([big_va[rows][:, non_ref], big_vm[rows]], format="csr")
    return sp.diags(mm.sign) @ h


@pytest.mark.parametrize("slot_offset", [0, -28])
def test_jacobian_equals_matpowers_sparse_formulas(lv: GridModel, rural3: GridModel,
                                                   slot_offset: int) -> None:
    """Every kind of row (injections, magnitudes, both branch ends; signs; any subset and
    order) at an estimated state and at the flat start."""
    for model in (lv, rural3):
        slot = EVENING + slot_offset
        rows = build_rows(model, _honest(model, slot, 5))
        acn = ac_network(model)
        assert {int(k) for k in rows.mm.kind} >= {0, 1, 2, 3, 4}
        est = estimate_state(acn, rows.mm, rows.z, rows.sigma)
        rng = np.random.default_rng(slot)
        sub = rows.mm.subset(rng.permutation(rows.mm.m)[: rows.mm.m * 2 // 3])
        flows = rows.mm.kind >= 3
        to_side = MeasurementModel(kind=np.array([0, 1, 2, 5, 6, 3, 4])[rows.mm.kind[flows]], element=rows.mm.element[flows],
                                   sign=-rows.mm.sign[flows],
                                   labels=tuple(np.array(rows.mm.labels)[flows]))
        for mm in (rows.mm, sub, to_side):
            for v in (est.v, acn.v_start):
                got = jacobian(acn, mm, v).toarray()
                want = _jacobian_by_sparse_algebra(acn, mm, v).toarray()
                assert got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_one_readings_sigma_is_the_arrays_bit_for_bit() -> None:
    """``build_rows`` prices each row with ``_sigma_one`` (Python floats), the measurement
    model with ``_sigma`` (arrays): the same standard deviations, bit for bit."""
    import numpy as np

    from gridledger.grid.measurements import (
        METER,
        PSEUDO,
        SENSOR,
        MeterNoise,
        _sigma,
        _sigma_one,
    )

    rng = np.random.default_rng(17)
    values = np.r_[rng.normal(0.0, 1e3, 4000), rng.normal(0.0, 1e6, 4000),
                   rng.integers(-10**7, 10**7, 4000).astype(float), 0.0, -0.0, 1e-300, 5e15]
    noise = MeterNoise(meter_p_rel=0.0031, sensor_q_rel=0.0023)
    for owner, unit in ((METER, "wh"), (METER, "varh"), (SENSOR, "wh"), (SENSOR, "varh"),
                        (PSEUDO, "varh"), (METER, "pu"), (SENSOR, "pu")):
        arr = _sigma(noise, owner, unit, values)
        one = np.array([_sigma_one(noise, owner, unit, float(v)) for v in values])
        assert arr.tobytes() == one.tobytes(), (owner, unit)


@pytest.mark.parametrize("seed", range(6))
def test_augmented_matrix_is_bmats_entry_for_entry(seed: int) -> None:
    """``_augmented`` assembles [[I, H~], [H~^T, -D]] directly: the same canonical CSC as
    ``sp.bmat`` (indptr, row indices, values), so SuperLU factorises the same matrix —
    stored zeros of H~ kept, unsorted rows, damping with zeros, and none."""
    import scipy.sparse as sp

    from gridledger.grid.estimation import _augmented

    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(5, 60)), int(rng.integers(3, 30))
    h = sp.random(m, n, density=0.2, random_state=seed, format="csr")
    h.data[rng.random(h.nnz) < 0.1] = 0.0  # stored zeros (a Jacobian entry that is 0)
    h.data[rng.random(h.nnz) < 0.3] *= -1e6
    if seed % 2:  # rows in reverse order, as a sparse product leaves them
        for i in range(m):
            a, b = h.indptr[i], h.indptr[i + 1]
            h.indices[a:b], h.data[a:b] = h.indices[a:b][::-1].copy(), h.data[a:b][::-1].copy()
        h.has_sorted_indices = False
    damped = rng.random(n) * 10.0 ** rng.integers(-30, 3)
    damped[rng.random(n) < 0.2] = 0.0
    for damping in (None, damped):
        low = None if damping is None else sp.diags(-damping)
        want = sp.bmat([[sp.identity(m), h], [h.T, low]], format="csc")
        got = _augmented(h, damping)
        assert got.shape == want.shape
        assert np.array_equal(got.indptr, want.indptr)
        assert np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data, want.data)


@pytest.mark.parametrize("seed", range(6))
def test_row_scaling_is_the_diagonal_products_entry_for_entry(seed: int) -> None:
    """``_scale_rows`` = ``sp.csr_matrix(sp.diags(s) @ h)``: the same values, row order
    (SciPy's product reverses each row) and dropped zeros — so ``ht @ dx``, the estimator's
    convergence test, sums every row in the same order as before."""
    import scipy.sparse as sp

    from gridledger.grid.estimation import _scale_rows

    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 60)), int(rng.integers(1, 30))
    h = sp.random(m, n, density=0.3, random_state=seed, format="csr")
    h.data[rng.random(h.nnz) < 0.1] = 0.0  # stored zeros: the product leaves them out
    s = rng.random(m) * 10.0 ** rng.integers(-300, 300, m).astype(float)  # and underflows
    want = sp.csr_matrix(sp.diags(s) @ h)
    got = _scale_rows(h, s)
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data, want.data)
    x = rng.standard_normal(n)
    assert np.array_equal(got @ x, want @ x)


def test_a_rows_current_is_the_same_from_the_whole_product(rural3: GridModel) -> None:
    """``jacobian`` takes each measured row's current from the whole ``Y @ v``: bit for bit
    the product of the selected rows (each row sums its entries in the same order)."""
    from gridledger.grid.estimation import _structure

    acn = ac_network(rural3)
    rng = np.random.default_rng(3)
    v = acn.v_start * (1 + 0.02 * rng.standard_normal(acn.n_bus))
    for part in _structure(acn).parts:
        e = rng.integers(0, part.y.shape[0], 200)
        assert np.array_equal((part.y @ v)[e], part.y[e] @ v)


def _jacobian_by_coo(acn: Any, mm: MeasurementModel, v: np.ndarray) -> Any:
    """``jacobian`` as it was before its plans (issue 17): every entry's COO position
    worked out per call, SciPy's constructor and ``sum_duplicates`` — the reference the
    planned assembly must equal entry for entry."""
    import scipy.sparse as sp

    from gridledger.grid.estimation import P_FROM, P_INJ, P_TO, Q_FROM, Q_INJ, Q_TO, _structure

    st = _structure(acn)
    vn = v / np.abs(v)
    kinds, elems = mm.kind, mm.element
    out_rows, out_cols, out_vals = [], [], []
    n_va = len(st.non_ref)
    for part, (p_kind, q_kind) in zip(st.parts, ((P_INJ, Q_INJ), (P_FROM, Q_FROM), (P_TO, Q_TO)),
                                      strict=True):
        sel = np.flatnonzero((kinds == p_kind) | (kinds == q_kind))
        if not len(sel):
            continue
        e = elems[sel]
        starts, stops = part.ptr[e], part.ptr[e + 1]
        counts = stops - starts
        take = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
        meas_row = np.repeat(sel, counts)
        r, k, src, own = part.row[take], part.cols[take], part.src[take], part.own[take]
        i_take = np.repeat(part.y[e] @ v, counts)
        ve = v[part.end[r]]
        y_rk = np.where(own, 0.0, part.y.data[np.maximum(src, 0)])
        d_va = 1j * (np.where(own, np.conj(i_take) * v[k], 0.0) - ve * np.conj(y_rk * v[k]))
        d_vm = ve * np.conj(y_rk * vn[k]) + np.where(own, np.conj(i_take) * vn[k], 0.0)
        is_q = kinds[meas_row] == q_kind
        va = np.where(is_q, d_va.imag, d_va.real)
        vm = np.where(is_q, d_vm.imag, d_vm.real)
        cva = st.col_va[k]
        keep = cva >= 0
        out_rows += [meas_row[keep], meas_row]
        out_cols += [cva[keep], n_va + k]
        out_vals += [va[keep], vm]
    vm_rows = np.flatnonzero(kinds == VM)
    out_rows.append(vm_rows)
    out_cols.append(n_va + elems[vm_rows])
    out_vals.append(np.ones(len(vm_rows)))
    rows_all = np.concatenate(out_rows)
    vals = np.concatenate(out_vals) * mm.sign[rows_all]
    h = sp.csr_matrix((vals, (rows_all, np.concatenate(out_cols))), shape=(mm.m, st.n_state))
    h.sum_duplicates()
    return h


@pytest.mark.parametrize("slot_offset", [0, 7])
def test_planned_jacobian_is_the_coo_assembly_entry_for_entry(lv: GridModel, rural3: GridModel,
                                                              slot_offset: int) -> None:
    """``jacobian`` reuses a plan per measurement model (entries, their CSR order, where
    duplicates meet): the same indptr, column indices and values, stored zeros included, as
    the per-call COO assembly, for every kind of row, any subset and order, both ends of a
    flow, at an estimated state and the flat start; the plan is reused for the same model
    object only."""
    from gridledger.grid.estimation import _jacobian_plan

    for model in (lv, rural3):
        slot = EVENING + slot_offset
        rows = build_rows(model, _honest(model, slot, 5))
        acn = ac_network(model)
        est = estimate_state(acn, rows.mm, rows.z, rows.sigma)
        rng = np.random.default_rng(slot)
        sub = rows.mm.subset(rng.permutation(rows.mm.m)[: rows.mm.m * 2 // 3])
        flows = rows.mm.kind >= 3
        to_side = MeasurementModel(kind=np.array([0, 1, 2, 5, 6, 3, 4])[rows.mm.kind[flows]],
                                   element=rows.mm.element[flows], sign=-rows.mm.sign[flows],
                                   labels=tuple(np.array(rows.mm.labels)[flows]))
        for mm in (rows.mm, sub, to_side):
            plan = _jacobian_plan(acn, mm)
            assert plan.order is not None  # at most two entries meet anywhere
            for v in (est.v, acn.v_start, est.v * 1.01):
                got, want = jacobian(acn, mm, v), _jacobian_by_coo(acn, mm, v)
                assert np.array_equal(got.indptr, want.indptr)
                assert np.array_equal(got.indices, want.indices)
                assert np.array_equal(got.data, want.data)
            assert _jacobian_plan(acn, mm) is plan
        copy = rows.mm.subset(np.arange(rows.mm.m))
        assert _jacobian_plan(acn, copy) is not _jacobian_plan(acn, rows.mm)
