"""Flexibility in the demo (issue 15): the evening-peak scenario with and without the DSO
buying flexibility, the ``fake-flexibility`` attack, and its defence removed.

Three short runs of the evening (16:00-22:00, 20 participants, 4 validators): flexibility
on with the attack, flexibility off, and the attack with the baseline cap removed. Each is
module-scoped and shared by the tests that read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridledger.ledger.modules.flex import settlement
from gridledger.ledger.modules.flex.types import Config, Eligible, Offer, Request
from gridledger.sim.demo import run_demo, scenario_from_flags
from gridledger.sim.features import dso as dso_feature

pytestmark = pytest.mark.slow

HOURS = 6
PARTICIPANTS = 20


def _run(tmp: Path, flexibility: bool, attacks: str) -> dict[str, Any]:
    sc = scenario_from_flags(PARTICIPANTS, HOURS, 4, attacks, 7, None, privacy=False,
                             scenario="evening-peak", flexibility=flexibility)
    summary, _ = run_demo(sc, tmp)
    # shown with -s (what the assertions below read)
    print(f"flexibility={flexibility} attacks={attacks}:", summary["flexibility"],
          summary["attacks"].get("fake-flexibility"), summary["invariants"])
    return summary


@pytest.fixture(scope="module")
def peak_on(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("peak-on"), True, "fake-flexibility")


@pytest.fixture(scope="module")
def peak_off(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("peak-off"), False, "none")


def test_without_flexibility_the_evening_peak_breaks_limits_or_curtails(peak_off) -> None:
    f = peak_off["flexibility"]
    assert f["requests"] == 0 and f["paid_micro"] == 0
    assert f["violations"] > 0 or f["curtailed_wh"] > 0
    assert all(peak_off["invariants"].values())


def test_flexibility_removes_violations_halves_curtailment_and_costs_less_than_it(
        peak_on, peak_off) -> None:
    on, off = peak_on["flexibility"], peak_off["flexibility"]
    assert on["requests"] > 0 and on["offers"] > 0 and on["activated_wh"] > 0
    assert on["violations"] == 0
    assert on["curtailed_wh"] * 2 <= off["curtailed_wh"]
    # the DSO pays no more for flexibility than the curtailed energy was worth at retail
    assert on["dso_cost_micro"] <= off["curtailed_value_micro"]
    # members who delivered were paid for it
    assert on["delivered_wh"] > 0 and on["paid_micro"] > 0
    assert any(v > 0 for v in on["member_income_micro"].values())
    assert all(peak_on["invariants"].values())
    assert peak_on["ledger"]["validators_agree"]


def test_fake_flexibility_is_detected_and_paid_only_what_its_meter_shows(peak_on) -> None:
    """Its inflated baselines are capped (detected); the DSO's envelope for its cp includes
    the ordered reduction, so its charger is held to it: what it is paid is what its meter
    shows against the DSO's reference (loss 0)."""
    r = peak_on["attacks"]["fake-flexibility"]
    assert r["injected"] > 0, r
    assert r["detected"] >= r["injected"] and r["mitigated"] and r["loss"] == 0, r
    assert peak_on["flexibility"]["baselines_capped"] >= r["injected"]


def test_without_the_baseline_cap_and_the_envelope_hold_fake_flexibility_is_paid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defences removed: settlement takes the declared baseline as it is, and the DSO's
    envelopes ignore the flexibility it ordered (the charger is not held to it)."""

    def uncapped(r: Request, elig: Eligible, o: Offer, k: int, cfg: Config) -> tuple[int, bool]:
        return (o.baseline_wh[k] if r.baseline == "declared" else elig.reference_wh[k]), False

    plain = dso_feature.compute_envelope_report

    def envelopes_without_flex(model: Any, slot: int, **_kw: Any) -> Any:
        return plain(model, slot)  # the forecast without the flexibility the DSO ordered

    monkeypatch.setattr(settlement, "baseline_of", uncapped)
    monkeypatch.setattr(dso_feature, "compute_envelope_report", envelopes_without_flex)
    summary = _run(tmp_path, True, "fake-flexibility")
    r = summary["attacks"]["fake-flexibility"]
    assert r["injected"] > 0 and r["loss"] > 0 and not r["mitigated"], r


def test_default_day_has_no_congestion_so_no_flexibility_is_bought(default_day: Any) -> None:
    """The stock feeder in May stays below its limits: the DSO requests nothing, and the
    fake-flexibility attack (in the default set) finds nothing to sell against."""
    s = default_day.summary
    f = s["flexibility"]
    assert f["enabled"] and f["requests"] == 0 and f["paid_micro"] == 0
    r = s["attacks"]["fake-flexibility"]
    assert r["injected"] == 0 and r["loss"] == 0 and r["attacker"] is None
    assert s["detections"]["flex_baselines_capped"] == s["detections"]["flex_claims_rejected"] == 0
