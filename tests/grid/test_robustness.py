"""Grid robustness (issue 18 item 8): gross bad data never stops detection, every element at a
bus is in the measurement model, and unsupplied connection points are refused by name at
every entry point."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridledger.errors import GridError
from gridledger.grid import (
    DetectionConfig,
    DetectionResult,
    GridModel,
    SensorPlan,
    compute_envelopes,
    craft_stealthy_attack,
    curtail_schedule,
    detect_bad_meters,
    load_grid,
    measure_slot,
    under_report,
    verify_schedule,
)
from gridledger.grid.estimation import EstimationDiverged, estimate_state
from gridledger.grid.measurements import build_rows
from gridledger.grid.powerflow import ac_network

from .conftest import CLEAR_DAY, DEMO_DAY

EVENING = CLEAR_DAY * 96 + 76
DEMO_EVENING = DEMO_DAY * 96 + 76
LIAR = "cp-00007"
CLASSICAL = DetectionConfig(protected_defence=False)


# --------------------------------------------------------------------------- (a) divergence


def _gross(model: GridModel, slot: int, plan: SensorPlan, liar: str, wh: int) -> Any:
    honest = measure_slot(model, slot, model.forecast_wh_by_cp(slot), rng=11, plan=plan)
    return honest, honest.with_reported({liar: wh})


def test_a_reading_no_state_fits_diverges_the_plain_estimator(demo_grid: GridModel) -> None:
    # 1 MWh of export in 15 minutes from a household: no state of the feeder fits it.
    _, bad = _gross(demo_grid, DEMO_EVENING, SensorPlan(), LIAR, 1_000_000)
    rows = build_rows(demo_grid, bad)
    with pytest.raises(EstimationDiverged, match="did not converge"):
        estimate_state(ac_network(demo_grid), rows.mm, rows.z, rows.sigma)
    assert issubclass(EstimationDiverged, GridError)


@pytest.mark.parametrize("plan", [SensorPlan(), SensorPlan(lines="feeder-heads")], ids=["full", "heads"])
@pytest.mark.parametrize("config", [DetectionConfig(), CLASSICAL], ids=["protected", "classical"])
def test_gross_bad_data_is_flagged_and_detection_carries_on(
    demo_grid: GridModel, plan: SensorPlan, config: DetectionConfig
) -> None:
    # Issue 18 item 8a: this GridError used to stop the demo's slot loop.
    model, slot = demo_grid, DEMO_EVENING
    _, bad = _gross(model, slot, plan, LIAR, 1_000_000)
    res = detect_bad_meters(model, slot, bad, config=config)
    assert res.flagged == {LIAR}
    assert not res.converged and res.alarm
    assert f"leaving out {LIAR}:p_wh" in res.reason
    assert res.lnr_removed[0] == f"{LIAR}:p_wh"
    # Settlement gets the network's estimate, not the absurd reading.
    truth = model.forecast_wh_by_cp(slot)[LIAR]
    assert abs(res.corrected_wh_by_cp[LIAR] - truth) < 200
    # The next slot's two-slot test runs on this result; an honest slot stays clean.
    nxt = measure_slot(model, slot + 1, model.forecast_wh_by_cp(slot + 1), rng=12, plan=plan)
    after = detect_bad_meters(model, slot + 1, nxt, config=config, previous=res)
    assert after.converged and not after.flagged


def test_several_gross_liars_of_every_quantity(lv: GridModel) -> None:
    honest = measure_slot(lv, EVENING, lv.forecast_wh_by_cp(EVENING), rng=3)
    bad = dataclasses.replace(
        honest,
        reported_wh_by_cp={**honest.reported_wh_by_cp, "cp-00002": -5_000_000},
        reported_varh_by_cp={**honest.reported_varh_by_cp, "cp-00008": 2_000_000},
        vm_pu_by_cp={**honest.vm_pu_by_cp, "cp-00011": 40.0},
    )
    for config in (DetectionConfig(), CLASSICAL):
        res = detect_bad_meters(lv, EVENING, bad, config=config)
        assert res.flagged == {"cp-00002", "cp-00008", "cp-00011"}, res.reason


def test_ordinary_slots_report_no_reason(lv: GridModel) -> None:
    honest = measure_slot(lv, EVENING, lv.forecast_wh_by_cp(EVENING), rng=4)
    res = detect_bad_meters(lv, EVENING, honest)
    assert res.converged and res.reason == "" and not res.alarm


# --------------------------------------------------------------------------- (b) IEEE cases


@pytest.fixture(scope="module")
def ieee14() -> GridModel:
    return load_grid("ieee-case14")


def _gen_cps(model: GridModel) -> list[str]:
    acn = ac_network(model)
    pv = {int(k) for k in acn.pv}
    return [cp for i, cp in enumerate(model.cp_ids) if int(acn.cp_bus[i]) in pv]


@pytest.mark.parametrize(
    ("spec", "slots"),
    [("ieee-case14", 4), ("ieee-case30", 4), pytest.param("ieee-case118", 2, marks=pytest.mark.slow)],
)
def test_honest_readings_at_generator_buses_are_never_flagged(spec: str, slots: int) -> None:
    model = load_grid(spec)
    assert _gen_cps(model), "the case must have connection points sharing a bus with a generator"
    for config in (DetectionConfig(), CLASSICAL):
        prev: DetectionResult | None = None
        for slot in range(EVENING, EVENING + slots):
            meas = measure_slot(model, slot, model.forecast_wh_by_cp(slot), rng=slot)
            res = detect_bad_meters(model, slot, meas, config=config, previous=prev)
            assert not res.flagged and not res.alarm, (spec, slot, res.flagged, res.chi2, res.balances)
            prev = res


def test_meters_at_generator_buses_read_their_own_connection(ieee14: GridModel) -> None:
    meas = measure_slot(ieee14, EVENING, ieee14.forecast_wh_by_cp(EVENING), rng=1)
    q_true = -ieee14.load_varh[:, EVENING]
    for cp in _gen_cps(ieee14):
        i = ieee14.cp_index(cp)
        # The generator's reactive output is not on the household's meter.
        assert abs(meas.reported_varh_by_cp[cp] - q_true[i]) < 0.05 * abs(q_true[i]) + 5


def test_lying_meter_at_a_generator_bus_is_caught_and_corrected(ieee14: GridModel) -> None:
    honest = measure_slot(ieee14, EVENING, ieee14.forecast_wh_by_cp(EVENING), rng=9)
    for cp in _gen_cps(ieee14):
        load = int(ieee14.load_wh[ieee14.cp_index(cp), EVENING])
        hidden = load // 20
        for config in (DetectionConfig(), CLASSICAL):
            res = detect_bad_meters(ieee14, EVENING, under_report(honest, {cp: hidden}), config=config)
            assert res.flagged == {cp}
            truth = ieee14.forecast_wh_by_cp(EVENING)[cp]
            assert abs(res.corrected_wh_by_cp[cp] - truth) < 0.01 * load
        stealthy = craft_stealthy_attack(ieee14, honest, cp, hidden, attacker_can_modify_sensors=False)
        assert detect_bad_meters(ieee14, EVENING, stealthy).flagged == {cp}


# --------------------------------------------------------------------------- (c) supply


def _cut(raw_lv_net: Any, tmp_path: Path, how: str) -> Path:
    import copy

    import pandapower as pp

    net = copy.deepcopy(raw_lv_net)
    # Bus 2 hangs off line 0 (9 -> 2) through switch 3 and carries a household.
    if how == "switch":
        net.switch.loc[3, "closed"] = False
    elif how == "bus":
        net.bus.loc[2, "in_service"] = False
    else:
        net.line.loc[0, "in_service"] = False
    path = tmp_path / f"cut-{how}.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.to_json(net, str(path))
    return path


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("switch", r"cp-00002 \(bus 2: isolated from the slack\); open switches at the cut: 3"),
        ("line", r"cp-00002 \(bus 2: isolated from the slack\)"),
        ("bus", r"cp-00002 \(bus 2: bus out of service\)"),
    ],
)
def test_unsupplied_connection_points_are_refused_by_name(
    raw_lv_net: Any, tmp_path: Path, how: str, why: str
) -> None:
    with pytest.raises(GridError, match=why):
        load_grid(str(_cut(raw_lv_net, tmp_path, how)))


def test_every_entry_point_refuses_an_unsupplied_cp(lv: GridModel, raw_lv_net: Any) -> None:
    # A model whose net lost supply after loading (e.g. a switch opened in a copy): every
    # entry point gives the same refusal instead of leaving the cp out of its power flow.
    import copy

    net = copy.deepcopy(lv.net)
    net.switch.loc[3, "closed"] = False
    cut = dataclasses.replace(lv, net=net, _cache={})
    slot = EVENING
    sched = lv.forecast_wh_by_cp(slot)
    calls = [
        lambda: verify_schedule(cut, slot, sched),
        lambda: compute_envelopes(cut, slot),
        lambda: curtail_schedule(cut, slot, sched),
        lambda: measure_slot(cut, slot, sched, rng=1),
        lambda: detect_bad_meters(cut, slot, measure_slot(lv, slot, sched, rng=1)),
    ]
    for call in calls:
        with pytest.raises(GridError, match=r"cp-00002 \(bus 2: isolated from the slack\)"):
            call()
    assert np.isfinite(verify_schedule(lv, slot, sched).max_vm_pu)  # the original is untouched
