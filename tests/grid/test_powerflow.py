"""Power-flow verification: the pandapower wrapper and the fast engine agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.errors import GridError
from gridledger.grid import GridLimits, GridModel, _acpf, verify_schedule
from gridledger.grid.powerflow import (
    _pp_work,
    ac_network,
    cp_q_pu,
    run_checked_pf,
    solve_fast,
    wh_to_pu,
)

from gridledger.grid import powerflow

from .conftest import CLEAR_DAY, DEMO_DAY

NOON = CLEAR_DAY * 96 + 48
EVENING = CLEAR_DAY * 96 + 19 * 4


def _as_dict(model: GridModel, x: np.ndarray) -> dict[str, int]:
    return {cp: int(v) for cp, v in zip(model.cp_ids, x, strict=True)}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scale=st.floats(min_value=-3.0, max_value=3.0), seed=st.integers(0, 2**16))
def test_fast_engine_matches_pandapower(stressed: GridModel, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.rint(stressed.net_injection_wh(NOON) * scale * rng.uniform(0.5, 1.5, len(stressed.cps)))
    x = x.astype(np.int64)
    rep = verify_schedule(stressed, NOON, _as_dict(stressed, x))
    fast = solve_fast(stressed, NOON, x)
    assert fast.converged
    acn = ac_network(stressed)
    net = _pp_work(stressed).net
    vm_pp = np.array([net.res_bus.vm_pu.at[int(b)] for b in acn.pd_bus])
    assert np.max(np.abs(vm_pp - fast.vm_pu)) < 1e-8
    ld_pp = np.array([net[f"res_{k}"].loading_percent.at[int(e)] for k, e in zip(acn.mon_kind, acn.mon_element, strict=True)])
    assert np.max(np.abs(ld_pp - fast.loading_pct)) < 1e-4  # pandapower tol is 1e-8 MVA
    assert abs(rep.max_vm_pu - fast.vm_pu.max()) < 1e-8
    assert abs(rep.max_loading_pct - fast.loading_pct.max()) < 1e-4


def test_verify_reports_violations(stressed: GridModel) -> None:
    rep = verify_schedule(stressed, EVENING, stressed.forecast_wh_by_cp(EVENING))
    assert not rep.ok
    assert {v.kind for v in rep.violations} == {"overload"}
    assert any(v.element == "trafo 0" and v.value > 100 for v in rep.violations)
    assert rep.max_trafo_loading_pct > 100 >= rep.max_line_loading_pct
    assert rep.grid_import_wh > 0 and rep.losses_wh > 0
    # Tighter limits are honoured.
    tight = verify_schedule(stressed, NOON, stressed.forecast_wh_by_cp(NOON), limits=GridLimits(vm_max_pu=1.03))
    assert any(v.kind == "overvoltage" for v in tight.violations)


def test_energy_balance_of_a_verified_flow(lv: GridModel) -> None:
    slot = CLEAR_DAY * 96 + 30
    sched = lv.forecast_wh_by_cp(slot)
    rep = verify_schedule(lv, slot, sched)
    assert rep.ok
    # import = consumption - generation + losses (to rounding).
    assert abs(rep.grid_import_wh - (-sum(sched.values()) + rep.losses_wh)) <= 2


def test_malformed_schedules_are_rejected(lv: GridModel) -> None:
    good = lv.forecast_wh_by_cp(100)
    missing = dict(good)
    missing.pop("cp-00005")
    with pytest.raises(GridError, match="lacks 1 connection points"):
        verify_schedule(lv, 100, missing)
    with pytest.raises(GridError, match="unknown connection points"):
        verify_schedule(lv, 100, {**good, "cp-77777": 0})
    with pytest.raises(GridError, match="must be an integer Wh"):
        verify_schedule(lv, 100, {**good, "cp-00005": 1.5})  # type: ignore[dict-item]


def test_checked_wrapper_refuses_non_convergence(lv: GridModel) -> None:
    # 5 MW drawn at one LV house: no solution exists.
    x = {cp: 0 for cp in lv.cp_ids}
    x["cp-00013"] = -5_000_000 // 4 * 4
    with pytest.raises(GridError, match="did not converge"):
        verify_schedule(lv, 100, x)


def test_checked_wrapper_checks_power_balance(lv: GridModel) -> None:
    import copy

    net = copy.deepcopy(lv.net)
    run_checked_pf(net)
    # A result table that does not add up must be refused: fake a lost generator.
    net.sgen["p_mw"] = 0.01
    run_checked_pf(net)
    net.res_sgen["p_mw"] = 0.0  # tamper with results only: the balance check alone sees it

    from gridledger.grid import powerflow

    with pytest.raises(GridError, match="does not balance"):
        powerflow._check_results(net)


# -- verify_schedule's rerun of pandapower (issue 17, fourteenth session) ------------------


def _runpp_tables(model: GridModel, slot: int, x: np.ndarray) -> dict[str, object]:
    """pandapower's result tables of a fresh ``runpp`` (``run_checked_pf``) of ``x`` on a
    new copy of the model's net: the unoptimised path."""
    import copy

    from gridledger.grid.model import WH_PER_MW_SLOT

    net = copy.deepcopy(model.net)
    net.sgen["p_mw"] = x / WH_PER_MW_SLOT
    net.sgen["q_mvar"] = -model.load_varh[:, model.column(slot)] / WH_PER_MW_SLOT
    run_checked_pf(net)
    return powerflow._result_tables(net)


@pytest.mark.parametrize("name", ["lv", "stressed", "rural3", "demo_grid"])
def test_rerun_gives_runpps_result_tables_bit_for_bit(name: str, request: pytest.FixtureRequest
                                                      ) -> None:
    model: GridModel = request.getfixturevalue(name)
    day = DEMO_DAY if name == "demo_grid" else CLEAR_DAY
    rng = np.random.default_rng(17)
    work = powerflow._pp_work(model)
    for k, slot in enumerate(day * 96 + h for h in (3, 30, 48, 50, 76, 78, 90)):
        scale = (0.3, 1.0, 2.5, -1.5)[k % 4]
        x = np.rint(model.net_injection_wh(slot) * scale * rng.uniform(0.5, 1.5, len(model.cps)))
        x = x.astype(np.int64)
        rep = verify_schedule(model, slot, _as_dict(model, x))
        assert work.rerun is not None  # the first run checked it: used from then on
        assert powerflow._same_bits(powerflow._result_tables(work.net), _runpp_tables(model, slot, x))
        # and the report is the one of runpp's tables: the same floats
        assert rep.max_vm_pu == float(np.nanmax(_runpp_tables(model, slot, x)["res_bus"].vm_pu))  # type: ignore[index]


def test_rerun_reports_equal_runpps(demo_grid: GridModel) -> None:
    """The same reports, violations and floats by the rerun as by runpp (a work net used for
    the first time runs pandapower's runpp)."""
    slot = DEMO_DAY * 96 + 50
    base = demo_grid.net_injection_wh(slot)
    limits = GridLimits(vm_max_pu=1.03)
    xs = [_as_dict(demo_grid, np.rint(base * k).astype(np.int64)) for k in (0.5, 1.0, 3.0, -2.0)]
    verify_schedule(demo_grid, slot, xs[0], limits=limits)
    assert powerflow._pp_work(demo_grid).rerun is not None
    by_rerun = [verify_schedule(demo_grid, slot, x, limits=limits) for x in xs]
    by_runpp = []
    for x in xs:
        demo_grid._cache.pop("net:pp_work")
        by_runpp.append(verify_schedule(demo_grid, slot, x, limits=limits))
    assert by_rerun == by_runpp
    assert any(r.violations for r in by_runpp)


def test_rerun_is_not_used_when_it_does_not_reproduce_runpp(
        lv: GridModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Removal test of the self-check: a rerun that moves one result by one ulp is refused
    at its first use, and runpp's results stand."""
    real = powerflow._rerun_pf

    def off_by_an_ulp(net: object, rerun: object) -> None:
        real(net, rerun)  # type: ignore[arg-type]
        vm = net.res_bus.vm_pu.to_numpy()  # type: ignore[attr-defined]
        net.res_bus["vm_pu"] = np.nextafter(vm, 2.0)  # type: ignore[attr-defined]

    monkeypatch.setattr(powerflow, "_rerun_pf", off_by_an_ulp)
    lv._cache.pop("net:pp_work", None)
    slot = CLEAR_DAY * 96 + 48
    x = lv.net_injection_wh(slot).astype(np.int64)
    try:
        verify_schedule(lv, slot, _as_dict(lv, x))
        work = powerflow._pp_work(lv)
        assert work.checked and work.rerun is None
        assert powerflow._same_bits(powerflow._result_tables(work.net), _runpp_tables(lv, slot, x))
        x2 = np.rint(x * 1.7).astype(np.int64)
        verify_schedule(lv, slot, _as_dict(lv, x2))
        assert powerflow._same_bits(powerflow._result_tables(work.net), _runpp_tables(lv, slot, x2))
    finally:
        lv._cache.pop("net:pp_work", None)


def test_rerun_refuses_non_convergence_and_recovers(lv: GridModel) -> None:
    slot = CLEAR_DAY * 96 + 48
    good = lv.net_injection_wh(slot).astype(np.int64)
    verify_schedule(lv, slot, _as_dict(lv, good))
    assert powerflow._pp_work(lv).rerun is not None
    x = {cp: 0 for cp in lv.cp_ids}
    x["cp-00013"] = -5_000_000 // 4 * 4
    with pytest.raises(GridError, match="did not converge"):
        verify_schedule(lv, slot, x)
    verify_schedule(lv, slot, _as_dict(lv, good))
    assert powerflow._same_bits(powerflow._result_tables(powerflow._pp_work(lv).net),
                                _runpp_tables(lv, slot, good))


# -- chord Newton (the envelopes' vertex checks, issue 17) ---------------------------------


def _linearised(model: GridModel, slot: int, x: np.ndarray
                ) -> tuple[_acpf.AcNetwork, _acpf.Sensitivities, np.ndarray, np.ndarray]:
    """The power flow at ``x`` (cp Wh): its network, sensitivities (with the Jacobian's
    factors), voltages and injections (p.u.)."""
    acn = ac_network(model)
    flow = solve_fast(model, slot, x)
    assert flow.converged
    return acn, _acpf.sensitivities(acn, flow.v), flow.v, wh_to_pu(model, x)


@pytest.mark.parametrize("scale", [0.5, 1.2, -0.8])
def test_chord_newton_reaches_full_newtons_solution(stressed: GridModel, scale: float) -> None:
    x = stressed.net_injection_wh(NOON)
    acn, sens, v, x_pu = _linearised(stressed, NOON, x)
    assert sens.lu is not None
    x2 = np.rint(x * scale).astype(np.int64)
    dv = v[:, None] * (1j * sens.dva + sens.dvm / np.abs(v)[:, None])
    v0 = v + dv @ (wh_to_pu(stressed, x2) - x_pu)
    s = _acpf.bus_injection(acn, wh_to_pu(stressed, x2), cp_q_pu(stressed, NOON))
    chord = _acpf.solve_pf_chord(acn, s, sens.lu, v0)
    full = _acpf.solve_pf(acn, s, v0=v0)
    assert chord.converged and full.converged
    assert chord.iterations > full.iterations  # linear, not quadratic, convergence
    # the same power flow: mismatch under the same tolerance, the same voltages and loading
    mis = chord.v * np.conj(acn.ybus @ chord.v) - s
    assert np.max(np.abs(np.r_[mis[np.r_[acn.pv, acn.pq]].real, mis[acn.pq].imag])) < 1e-10
    assert np.max(np.abs(chord.v - full.v)) < 1e-9
    assert np.max(np.abs(_acpf.loading_pct(acn, chord.v) - _acpf.loading_pct(acn, full.v))) < 1e-6
    fast = solve_fast(stressed, NOON, x2, v0=v0, chord=sens.lu)
    assert fast.converged and np.array_equal(fast.v, chord.v)  # solve_fast took the chord path


def test_chord_newton_gives_up_and_solve_fast_falls_back_to_full_newton(stressed: GridModel) -> None:
    # factors of the no-load Jacobian, a schedule far from it: the chord does not contract
    acn, sens, v, _ = _linearised(stressed, EVENING, np.zeros(len(stressed.cps), dtype=np.int64))
    x = np.rint(stressed.net_injection_wh(EVENING) * 3.0).astype(np.int64)
    s = _acpf.bus_injection(acn, wh_to_pu(stressed, x), cp_q_pu(stressed, EVENING))
    assert not _acpf.solve_pf_chord(acn, s, sens.lu, v).converged
    full = _acpf.solve_pf(acn, s, v0=v)
    assert full.converged
    fast = solve_fast(stressed, EVENING, x, v0=v, chord=sens.lu)
    # the fallback is full Newton from the same start: exactly the flow without the chord
    assert fast.converged and np.array_equal(fast.v, full.v)
    assert np.array_equal(fast.v, solve_fast(stressed, EVENING, x, v0=v).v)
    # a chord step budget too small to converge falls back the same way
    near = np.rint(stressed.net_injection_wh(EVENING) * 0.1).astype(np.int64)
    s = _acpf.bus_injection(acn, wh_to_pu(stressed, near), cp_q_pu(stressed, EVENING))
    assert not _acpf.solve_pf_chord(acn, s, sens.lu, v, max_iter=1).converged
