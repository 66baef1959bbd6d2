"""Operating envelopes: any schedule inside them is safe; integer, deterministic, clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.errors import GridError
from gridledger.grid import (
    Envelope,
    EnvelopeConfig,
    EnvelopeReport,
    GridLimits,
    GridModel,
    _acpf,
    compute_envelope_report,
    compute_envelopes,
    verify_schedule,
)
from gridledger.grid.powerflow import fast_violations, solve_fast

from .conftest import CLEAR_DAY, DEMO_DAY

NOON = CLEAR_DAY * 96 + 48
EVENING = CLEAR_DAY * 96 + 19 * 4


def test_envelope_contains_and_clip() -> None:
    e = Envelope(import_max_wh=300, export_max_wh=100)
    assert e.contains(0) and e.contains(-300) and e.contains(100)
    assert not e.contains(101) and not e.contains(-301)
    assert e.clip(500) == 100 and e.clip(-900) == -300 and e.clip(7) == 7
    assert e.as_tuple() == (300, 100)  # gridledger.market's Envelope = (import, export)


def test_envelopes_are_non_negative_ints_for_every_cp(stressed: GridModel) -> None:
    env = compute_envelopes(stressed, NOON)
    assert list(env) == list(stressed.cp_ids)
    for e in env.values():
        assert type(e.import_max_wh) is int and type(e.export_max_wh) is int
        assert e.import_max_wh >= 0 and e.export_max_wh >= 0
    # The same share of every forecast, plus the same share of every capacity as headroom
    # (equal-share allocation of what the forecasts leave).
    rep = compute_envelope_report(stressed, NOON)
    fc = stressed.forecast_wh_by_cp(NOON)
    for cp in stressed.cps:
        e = env[cp.cp_id]
        want_e = rep.forecast_export_share * max(0, fc[cp.cp_id]) + rep.export_factor * cp.capacity_w / 4
        want_m = rep.forecast_import_share * max(0, -fc[cp.cp_id]) + rep.import_factor * cp.capacity_w / 4
        assert want_e - 2 <= e.export_max_wh <= want_e
        assert want_m - 2 <= e.import_max_wh <= want_m
    # At noon the transformer cannot carry every PV forecast at once: exports get the same
    # share of their forecast (< 1), imports keep theirs plus headroom.
    assert 0 < rep.forecast_export_share < 1 and rep.export_factor == 0
    assert rep.forecast_import_share == pytest.approx(1.0, abs=1e-5) and rep.import_factor > 0
    assert rep.export_limited_by == "overload trafo 0"


def test_envelopes_are_deterministic(stressed: GridModel) -> None:
    assert compute_envelopes(stressed, EVENING) == compute_envelopes(stressed, EVENING)


def test_binding_constraint_is_reported(stressed: GridModel) -> None:
    rep = compute_envelope_report(stressed, EVENING)
    assert "overload trafo 0" in rep.binding
    assert rep.worst_loading_pct <= 100.0
    assert 0.9 <= rep.worst_vm_min_pu and rep.worst_vm_max_pu <= 1.1


def _box_points(
    model: GridModel, env: dict[str, Envelope], rng: np.random.Generator, n: int
) -> list[np.ndarray]:
    e = np.array([env[cp].export_max_wh for cp in model.cp_ids])
    m = np.array([env[cp].import_max_wh for cp in model.cp_ids])
    pts = [e, -m]  # the two corners that bind in a radial feeder
    for _ in range(n):
        kind = rng.integers(0, 3)
        if kind == 0:  # random vertex
            pts.append(np.where(rng.random(len(e)) < 0.5, e, -m))
        else:  # random interior point
            pts.append(np.rint(-m + rng.random(len(e)) * (e + m)).astype(np.int64))
    return pts


@pytest.mark.parametrize("slot", [NOON, EVENING, CLEAR_DAY * 96 + 8])
def test_any_schedule_inside_the_envelopes_is_safe(stressed: GridModel, slot: int) -> None:
    env = compute_envelopes(stressed, slot)
    rng = np.random.default_rng(slot)
    limits = GridLimits()
    for x in _box_points(stressed, env, rng, 60):
        flow = solve_fast(stressed, slot, x)
        assert flow.converged
        assert fast_violations(stressed, flow, limits) == ()
    # And the corners through pandapower itself.
    for x in _box_points(stressed, env, rng, 0):
        rep = verify_schedule(stressed, slot, dict(zip(stressed.cp_ids, map(int, x), strict=True)))
        assert rep.ok, rep.violations


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    day=st.integers(0, 365),
    hour=st.integers(0, 23),
    vm_band=st.floats(min_value=0.04, max_value=0.10),
    load_limit=st.floats(min_value=60.0, max_value=100.0),
)
def test_envelopes_hold_for_any_slot_and_limits(
    rural3: GridModel, day: int, hour: int, vm_band: float, load_limit: float
) -> None:
    # A 129-bus grid with long feeders: voltage limits bind here, not only the transformer.
    limits = GridLimits(vm_min_pu=1 - vm_band, vm_max_pu=1 + vm_band, max_loading_pct=load_limit)
    slot = day * 96 + hour * 4
    try:
        env = compute_envelopes(rural3, slot, config=EnvelopeConfig(limits=limits))
    except GridError as exc:
        # Only legitimate when even zero injection breaks the (tight) band.
        assert "even with every connection point at zero" in str(exc)
        zero = solve_fast(rural3, slot, np.zeros(len(rural3.cps), dtype=np.int64))
        assert fast_violations(rural3, zero, limits)
        return
    rng = np.random.default_rng(slot)
    for x in _box_points(rural3, env, rng, 12):
        flow = solve_fast(rural3, slot, x)
        assert flow.converged and fast_violations(rural3, flow, limits) == ()


def test_no_envelope_when_zero_injection_already_breaks_limits(lv: GridModel) -> None:
    # The slack holds 1.025 p.u.; a 1.02 upper limit cannot be met by anybody.
    cfg = EnvelopeConfig(limits=GridLimits(vm_max_pu=1.02))
    with pytest.raises(GridError, match="overvoltage at bus"):
        compute_envelopes(lv, NOON, config=cfg)


def test_forecast_must_name_every_cp(lv: GridModel) -> None:
    with pytest.raises(GridError, match="forecast lacks"):
        compute_envelopes(lv, NOON, forecast_wh_by_cp={"cp-00000": 0})


def test_envelopes_contain_every_forecast_the_network_carries(demo_grid: GridModel) -> None:
    # The equal-share box over connection capacity cut households' own PV at noon and heat
    # pumps in the afternoon while the feeder was at 30 % (issue 18 item 12). The envelope
    # now starts from the forecast: a forecast the network can carry is never cut.
    for sod in range(0, 96, 4):
        slot = DEMO_DAY * 96 + sod
        fc = demo_grid.forecast_wh_by_cp(slot)
        assert verify_schedule(demo_grid, slot, fc).ok
        rep = compute_envelope_report(demo_grid, slot)
        assert rep.forecast_export_share == pytest.approx(1.0, abs=1e-5)
        assert rep.forecast_import_share == pytest.approx(1.0, abs=1e-5)
        for cp, x in fc.items():
            assert rep.envelopes[cp].contains(x), (slot, cp, x, rep.envelopes[cp])
        # The headroom left over is bounded by a named constraint.
        assert rep.export_limited_by and rep.import_limited_by


def test_headroom_is_shared_fairly_between_directions(demo_grid: GridModel) -> None:
    # A constraint that is nearly all export must not freeze import headroom (and vice versa).
    rep = compute_envelope_report(demo_grid, DEMO_DAY * 96 + 48)
    assert rep.import_factor > 0.3 and rep.export_factor > 0.0


@pytest.mark.parametrize("slot", [DEMO_DAY * 96 + 48, DEMO_DAY * 96 + 72])
def test_demo_grid_box_is_safe(demo_grid: GridModel, slot: int) -> None:
    env = compute_envelopes(demo_grid, slot)
    rng = np.random.default_rng(slot)
    for x in _box_points(demo_grid, env, rng, 30):
        flow = solve_fast(demo_grid, slot, x)
        assert flow.converged and fast_violations(demo_grid, flow, GridLimits()) == ()


def _decisions(rep: EnvelopeReport) -> tuple[object, ...]:
    """What a report decides: the envelopes (whole Wh, published), what binds them and
    the checks made. Its factors and worst values are diagnostics (floats)."""
    return (rep.envelopes, rep.binding, rep.ac_checks, rep.export_limited_by,
            rep.import_limited_by)


def _diagnostics(rep: EnvelopeReport) -> list[float]:
    return [rep.export_factor, rep.import_factor, rep.forecast_export_share,
            rep.forecast_import_share, rep.worst_vm_max_pu, rep.worst_vm_min_pu]


@pytest.mark.parametrize("slot", [NOON, EVENING, CLEAR_DAY * 96 + 40])
@pytest.mark.parametrize("margin", [True, False])
def test_vertex_checks_by_chord_newton_decide_as_full_newton(
        stressed: GridModel, slot: int, margin: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vertex power flows step with the linearisation's factors (``solve_pf_chord``);
    the envelopes, what binds them and the checks are those of full Newton at every vertex
    — with the default margins (the first AC check passes) and without them (it fails, the
    violated rows are tightened by the excess the chord's flows measured, and the LP runs
    again). Removal: a chord that never converges leaves every vertex to the full-Newton
    fallback, the path before the chord (same start, same iterations)."""
    from gridledger.grid import envelopes

    cfg = EnvelopeConfig() if margin else EnvelopeConfig(vm_margin_pu=0.0, loading_margin_pct=0.0)
    used: list[bool] = []
    failed: list[bool] = []
    real = _acpf.solve_pf_chord
    real_check = envelopes._check_vertices_wh

    def counted(*args: Any, **kw: Any) -> _acpf.AcSolution:
        got = real(*args, **kw)
        used.append(got.converged)
        return got

    def checked(*args: Any, **kw: Any) -> Any:
        got = real_check(*args, **kw)
        failed.append(bool(got[0]))
        return got

    monkeypatch.setattr(_acpf, "solve_pf_chord", counted)
    monkeypatch.setattr(envelopes, "_check_vertices_wh", checked)
    with_chord = compute_envelope_report(stressed, slot, config=cfg)
    assert used and sum(used) > len(used) // 2  # most vertices never factorise
    assert any(failed) is not margin  # without margins the first check fails
    monkeypatch.setattr(_acpf, "solve_pf_chord",
                        lambda acn, s, lu, v0, **kw: _acpf.AcSolution(v0, False, 0))
    newton = compute_envelope_report(stressed, slot, config=cfg)
    assert _decisions(with_chord) == _decisions(newton)
    # the same fixed points to the solver's tolerance: where a failed check tightened the
    # LP by the excess it measured, the shares move in their 11th digit, never a whole Wh
    assert _diagnostics(with_chord) == pytest.approx(_diagnostics(newton), rel=1e-9, abs=1e-9)
    assert with_chord.worst_loading_pct == pytest.approx(newton.worst_loading_pct, abs=1e-6)


def test_constraint_labels_are_formatted_once_per_network(stressed: GridModel) -> None:
    """``_row_labels`` (cached per network) names every constraint row as before: one
    overvoltage and one undervoltage row per PQ bus, one overload per monitored branch."""
    from gridledger.grid.envelopes import _row_labels
    from gridledger.grid.powerflow import ac_network

    acn = ac_network(stressed)
    over, under, overload = _row_labels(acn)
    assert over == [f"overvoltage {acn.bus_label(int(k))}" for k in acn.pq]
    assert under == [f"undervoltage {acn.bus_label(int(k))}" for k in acn.pq]
    assert overload == [f"overload {acn.mon_label(j)}" for j in range(len(acn.mon_row))]
    assert _row_labels(acn)[0] is over


# -- the 3-variable LP of _raise_pair, through SciPy's HiGHS directly (issue 17) -------------


def _pair_lp(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        list[tuple[float, float]]]:
    """An LP shaped like ``_raise_pair``'s: max y0 + y1 + w z, z <= y0, z <= y1, m rows."""
    a = rng.normal(size=(m, 2)) * rng.choice([0.0, 1e-3, 1.0, 5.0], size=(m, 2))
    b = rng.normal(size=m) + rng.choice([0.0, 1.0, 5.0, 100.0], size=m, p=[.1, .2, .3, .4])
    a_ub = np.vstack([np.column_stack([a, np.zeros(m)]), [[-1.0, 0.0, 1.0], [0.0, -1.0, 1.0]]])
    b_ub = np.r_[b + 1e-12, 0.0, 0.0]
    low = float(rng.choice([0.0, 0.0, 0.0, 0.2, 0.9]))
    hi = (float(rng.choice([0.5, 1.0, 3.0, np.inf])), float(rng.choice([0.5, 1.0, 3.0])))
    bounds = [(low, hi[0]), (low, hi[1]), (0.0, max(hi))]
    return np.array([-1.0, -1.0, -0.01]), a_ub, b_ub, bounds


def test_highs_direct_gives_linprogs_solution_bit_for_bit() -> None:
    from scipy.optimize import linprog

    from gridledger.grid import envelopes

    assert envelopes._HIGHS is not None  # SciPy's HiGHS module is where we expect it
    rng = np.random.default_rng(2026)
    solved = refused = 0
    for k in range(400):
        c, a_ub, b_ub, bounds = _pair_lp(rng, 1 + k % 40)
        ref = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
        x = envelopes._linprog_highs_x(c, a_ub, b_ub, bounds)
        if ref.status == 0:
            assert x is not None and x.tobytes() == np.asarray(ref.x).tobytes()
            solved += 1
        else:
            assert x is None
            refused += 1
    assert solved > 100 and refused > 50, (solved, refused)  # both outcomes exercised


def test_highs_direct_falls_back_to_linprog_without_scipys_module(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gridledger.grid import envelopes

    rng = np.random.default_rng(7)
    cases = [_pair_lp(rng, 12) for _ in range(30)]
    direct = [envelopes._linprog_highs_x(*case) for case in cases]
    monkeypatch.setattr(envelopes, "_HIGHS", None)
    for case, x in zip(cases, direct, strict=True):
        y = envelopes._linprog_highs_x(*case)
        assert (x is None) == (y is None)
        assert x is None or y is None or x.tobytes() == y.tobytes()
