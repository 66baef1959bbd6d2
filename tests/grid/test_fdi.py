"""False data injection: honest days stay silent, under-reporting is caught within two slots,
the stealthy a = Hc attack passes the classical tests and the protected set catches it."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.errors import GridError
from gridledger.grid import (
    DetectionConfig,
    DetectionResult,
    GridModel,
    SensorPlan,
    SlotMeasurements,
    choose_protected_set,
    craft_stealthy_attack,
    detect_bad_meters,
    energy_only_readings,
    fdi_detection_report,
    measure_slot,
    under_report,
)
from gridledger.grid.estimation import jacobian
from gridledger.grid.measurements import VIRTUAL, build_rows
from gridledger.grid.powerflow import ac_network

from .conftest import CLEAR_DAY

CLASSICAL = DetectionConfig(protected_defence=False)
PROTECTED = DetectionConfig(protected_defence=True)
EVENING = CLEAR_DAY * 96 + 76


def _honest(model: GridModel, slot: int, rng: np.random.Generator | int) -> SlotMeasurements:
    return measure_slot(model, slot, model.forecast_wh_by_cp(slot), rng=rng)


def test_honest_day_has_no_detections(lv: GridModel) -> None:
    # The demo asserts zero detections without attacks: a whole day, both detectors.
    rng = np.random.default_rng(2024)
    prev_c: DetectionResult | None = None
    prev_p: DetectionResult | None = None
    day = 200 * 96
    for slot in range(day, day + 96):
        m = _honest(lv, slot, rng)
        rc = detect_bad_meters(lv, slot, m, config=CLASSICAL, previous=prev_c)
        rp = detect_bad_meters(lv, slot, m, config=PROTECTED, previous=prev_p)
        assert not rc.alarm and not rp.alarm, (slot, rc, rp)
        assert rp.protected_used and not rc.protected_used
        prev_c, prev_p = rc, rp


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_fdi_meter_flagged_within_two_slots(lv: GridModel, fraction: float) -> None:
    # Three households under-report their evening consumption by `fraction`.
    rng = np.random.default_rng(int(fraction * 100))
    slot0 = EVENING
    loads = lv.load_wh[:, slot0]
    attackers = [lv.cp_ids[i] for i in np.argsort(-loads)[:3]]
    assert all(lv.load_wh[lv.cp_index(cp), slot0] >= 200 for cp in attackers)
    prev: DetectionResult | None = None
    caught: set[str] = set()
    for slot in (slot0, slot0 + 1):
        hidden = {cp: round(fraction * int(lv.load_wh[lv.cp_index(cp), slot])) for cp in attackers}
        res = detect_bad_meters(lv, slot, under_report(_honest(lv, slot, rng), hidden), previous=prev)
        assert res.flagged <= set(attackers)  # never an honest neighbour
        caught |= res.flagged
        prev = res
    assert caught == set(attackers)


def test_feeder_energy_balance_sees_the_missing_energy(lv: GridModel) -> None:
    honest = _honest(lv, EVENING, 5)
    target = "cp-00000"
    hidden = 600
    res = detect_bad_meters(lv, EVENING, under_report(honest, {target: hidden}))
    feeder = next(b for b in res.balances if b.area.startswith("feeder"))
    assert len(feeder.cp_ids) == len(lv.cps)
    assert feeder.alarm and abs(feeder.gap_wh - hidden) < feeder.tolerance_wh
    # Honest: gap within tolerance; losses come from the power flow and are positive.
    ok = detect_bad_meters(lv, EVENING, honest)
    feeder_ok = next(b for b in ok.balances if b.area.startswith("feeder"))
    assert not feeder_ok.alarm and feeder_ok.losses_wh > 0
    # With line sensors every metered area is checked too; the target's area lights up.
    area = [b for b in res.balances if b.alarm and b.area.startswith("area")]
    assert any(b.cp_ids == (target,) for b in area)


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_stealthy_attack_is_the_blind_spot_of_residual_tests(lv: GridModel, fraction: float) -> None:
    honest = _honest(lv, EVENING, 9)
    target = "cp-00004"
    hidden = round(fraction * int(lv.load_wh[lv.cp_index(target), EVENING]))
    attacked = craft_stealthy_attack(lv, honest, target, hidden)
    # The target's meter really lies, and head meter + path sensors were altered to match.
    assert attacked.reported_wh_by_cp[target] - honest.reported_wh_by_cp[target] == pytest.approx(hidden, abs=1)
    assert attacked.head_meter_wh != honest.head_meter_wh
    before = detect_bad_meters(lv, EVENING, honest, config=CLASSICAL)
    after = detect_bad_meters(lv, EVENING, attacked, config=CLASSICAL)
    # Classical tests: no flag, no chi2 alarm, residuals unchanged, energy balance fine.
    assert not after.alarm
    assert after.chi2 == pytest.approx(before.chi2, rel=0.05, abs=2.0)
    assert after.max_normalized_residual < after.lnr_threshold


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_protected_sensors_catch_the_stealthy_attack(lv: GridModel, fraction: float) -> None:
    honest = _honest(lv, EVENING, 9)
    target = "cp-00004"
    hidden = round(fraction * int(lv.load_wh[lv.cp_index(target), EVENING]))
    # The DSO's sensors are authenticated: the attacker can only edit customer meters.
    attacked = craft_stealthy_attack(lv, honest, target, hidden, attacker_can_modify_sensors=False)
    assert attacked.sensor_readings == honest.sensor_readings
    res = detect_bad_meters(lv, EVENING, attacked, config=PROTECTED)
    assert target in res.flagged
    # Defence switched off, attacker back in control of the sensors: the attack passes.
    full = craft_stealthy_attack(lv, honest, target, hidden, attacker_can_modify_sensors=True)
    assert target not in detect_bad_meters(lv, EVENING, full, config=CLASSICAL).flagged


def test_protected_set_is_a_basic_measurement_set(lv: GridModel) -> None:
    honest = _honest(lv, EVENING, 1)
    chosen = choose_protected_set(lv, honest)
    assert set(chosen) <= set(honest.sensor_readings)
    acn = ac_network(lv)
    rows = build_rows(lv, honest)
    keep = (rows.owner == VIRTUAL) | np.isin(np.array(rows.mm.labels), chosen)
    h = jacobian(acn, rows.mm.subset(np.flatnonzero(keep)), acn.v_start).toarray()
    # Full column rank: H_p c = 0 forces c = 0, so no a = Hc can leave these rows untouched.
    assert np.linalg.matrix_rank(h) == h.shape[1]
    assert len(chosen) < len(honest.sensor_readings)


def test_protected_set_needs_enough_sensors(lv: GridModel) -> None:
    few = measure_slot(lv, EVENING, lv.forecast_wh_by_cp(EVENING), rng=0, plan=SensorPlan(lines="none"))
    with pytest.raises(GridError, match="cannot form a basic measurement set"):
        choose_protected_set(lv, few)
    # Without a basic set the detector falls back to the classical tests, and says so.
    res = detect_bad_meters(lv, EVENING, few)
    assert not res.protected_used


def test_readings_for_another_slot_or_unknown_devices_are_rejected(lv: GridModel) -> None:
    m = _honest(lv, EVENING, 0)
    with pytest.raises(GridError, match="measurements are for slot"):
        detect_bad_meters(lv, EVENING + 1, m)
    with pytest.raises(GridError, match="unknown sensor"):
        detect_bad_meters(lv, EVENING, SlotMeasurements(EVENING, m.reported_wh_by_cp, sensor_readings={"line-999:p_wh": 1.0}))
    with pytest.raises(GridError, match="unknown meters"):
        detect_bad_meters(lv, EVENING, m.with_reported({"cp-55555": 3}))


def test_detection_report_shape_and_headline(lv: GridModel) -> None:
    rep = fdi_detection_report(lv, magnitudes=(0.5,), trials=3, honest_slots=6, seed=3)
    cells = {(r.attack, r.defence): r for r in rep.rates}
    assert set(cells) == {(a, d) for a in ("random", "stealthy") for d in ("classical", "protected")}
    assert cells[("stealthy", "classical")].tpr == 0.0
    assert cells[("stealthy", "protected")].tpr == 1.0
    assert cells[("random", "protected")].tpr == 1.0
    assert rep.fpr_classical == rep.fpr_protected == 0.0
    assert all(r.wrong_flag_rate == 0.0 for r in rep.rates)
    d = rep.as_dict()
    assert d["network"] == lv.name and len(d["rates"]) == 4  # type: ignore[arg-type]


def test_flagged_meters_get_a_network_estimate_for_settlement(lv: GridModel) -> None:
    honest = _honest(lv, EVENING, 5)
    truth = lv.forecast_wh_by_cp(EVENING)["cp-00000"]
    for cfg in (PROTECTED, CLASSICAL):
        res = detect_bad_meters(lv, EVENING, under_report(honest, {"cp-00000": 300}), config=cfg)
        assert res.flagged == {"cp-00000"}
        # Within a few Wh of what really flowed, far from the 300 Wh lie.
        assert abs(res.corrected_wh_by_cp["cp-00000"] - truth) < 30


def test_energy_only_readings_alarm_but_never_blame_the_wrong_meter(lv: GridModel) -> None:
    # Only meters' Wh and the head meter (the brief's minimal interface): redundancy one.
    plan = SensorPlan(lines="none", substation_vm=False, meter_q=False, meter_vm=False)
    for k in range(3):
        slot = EVENING + k
        h = measure_slot(lv, slot, lv.forecast_wh_by_cp(slot), rng=k, plan=plan)
        assert h.head_meter_wh is not None
        readings = energy_only_readings(lv, slot, h.reported_wh_by_cp, h.head_meter_wh)
        assert not detect_bad_meters(lv, slot, readings).alarm
        res = detect_bad_meters(lv, slot, under_report(readings, {"cp-00000": 600}))
        assert res.alarm and res.flagged == frozenset()
        feeder = res.balances[0]
        assert feeder.alarm and abs(feeder.gap_wh - 600) < feeder.tolerance_wh
