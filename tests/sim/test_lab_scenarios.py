"""Issue 14's scenarios: price manipulation against market surveillance, Sybil onboarding
against the DSO's attestation, a validator crash against the BFT quorum — defended, on the
shared default day (detected, mitigated, loss 0), and with the defence removed on one short
run each (the damage shows)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gridledger.ledger.modules.privacy.market import MarketDisputes
from gridledger.ledger.modules.surveillance import hooks
from gridledger.sim.demo import run_demo, scenario_from_flags
from gridledger.sim.features import onboarding
from gridledger.sim.scenario import Scenario
from tests.sim.conftest import DemoRun
from tests.sim.test_demo import EVENING, MIDDAY, check_defended, run


@pytest.fixture
def defended(default_day: DemoRun) -> dict[str, Any]:
    return default_day.summary


def test_price_manipulation_is_found_mitigated_and_sanctioned(defended: dict[str, Any]) -> None:
    r = check_defended(defended, "price-manipulation")
    assert r["cheater_gain_micro"] <= 0 and r["sanctions"] > 0
    if defended["privacy"]["mode"] == "on":
        # under pseudonyms a spoof is bounded by the pseudonym's pool allowance: the
        # spoofer's large bid is refused before it reaches the book (and it gives up)
        assert r["spoof_orders"] == r["spoofs_refused"] > 0 or \
            r["findings_by_kind"].get("layering", 0) > 0, r
    else:
        assert r["findings_by_kind"].get("layering", 0) > 0
    # the withholder ends suspended, yet its supply stays on the market (must-offer, mitigated
    # to the feed-in tariff): honest buyers pay nothing above the re-clearing of those slots
    # with its own agent's asks (it was +1.37 M µ when suspension refused its sells). Under
    # pseudonyms each withheld offer is found and mitigated under a fresh pseudonym, none
    # suspended: the suspension touches no slot there. (The must-offer rule itself, and its
    # removal, are tested in tests/ledger/modules/test_reputation.py.)
    assert r["honest_loss_after_sanction"] == 0
    assert r["withheld_slots"] == 0 or r["findings_by_kind"].get("withholding", 0) > 0
    # every withheld slot where the withholding moved the market was found (daylight: it did)
    assert r["withheld_slots_with_impact"] > 0 and r["withheld_slots_with_impact_unfound"] == []
    if defended["privacy"]["mode"] == "off":
        # suspended after its first findings, its client keeps offering (it used to stop
        # bidding at suspension: 3 withheld slots a day); it goes on withholding and the
        # ledger mitigates each ask on entry (seed 7: 47 withheld slots, 44 of them touched
        # by the suspension, 3 withholding findings, coalition gain -1.54 M µ)
        assert r["sanctioned_slots"] > 0
        assert r["withheld_slots"] > r["findings_by_kind"].get("withholding", 0)
    assert defended["surveillance"]["findings"] == defended["detections"]["market_abuse_findings"]
    assert defended["threat_rows"]["6"]["mitigated"] is True


def test_sybil_admits_at_most_one_identity(defended: dict[str, Any]) -> None:
    r = check_defended(defended, "sybil")
    # the one identity its physical cp entitles the attacker to, at most: how many of its 20
    # applications reach the ledger depends on the rest of the day (a colluding sponsor that
    # another scenario gets suspended can no longer sponsor), the bound does not
    ob = defended["onboarding"]
    assert r["injected"] == 20 and r["admitted"] <= 1 and ob["admitted"] <= 1
    assert ob["attested"] <= 1 and ob["attested"] + ob["refused"] == ob["applications"] > 0
    assert sum(ob["refused_by_reason"].values()) == ob["refused"]
    assert defended["threat_rows"]["11"]["scenarios"] == ["sybil"]


def test_crash_every_slot_clears_and_the_validator_catches_up(defended: dict[str, Any]) -> None:
    r = check_defended(defended, "crash")
    assert r["blocks_certified_without_it"] > 0 and r["blocks_caught_up"] > 0
    assert r["slots_cleared_while_down"] >= r["down_slots"] and r["roots_agree"]
    assert defended["invariants"]["all_slots_settled"] and defended["ledger"]["validators_agree"]


def test_every_threat_row_is_in_the_default_run(defended: dict[str, Any]) -> None:
    rows = defended["threat_rows"]
    for row in ("6", "7", "11"):
        assert rows[row]["scenarios"] and rows[row]["mitigated"], (row, rows[row])


@pytest.mark.slow
def test_price_manipulation_without_surveillance(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing finds the coalition: the spoofer keeps its score and spoofs all run, the
    withheld supply stays off the market and honest buyers pay the raised price (measured,
    seed 7, 20 members, 10:00-16:00: +140 000 µ/kWh in 14 of 21 withheld slots, honest loss
    3 501 554 µ, coalition premium 575 593 µ; defended: 0, 0, 0)."""
    monkeypatch.setattr(hooks.Surveillance, "end_block", lambda self, state, ctx, events: None)
    off = run(tmp_path, ("price-manipulation",), start=MIDDAY)["attacks"]["price-manipulation"]
    assert off["injected"] > 0 and off["detected"] == 0 and off["sanctions"] == 0
    assert not off["mitigated"] and off["spoofs_refused"] == 0
    assert off["coalition_reputation"][off["coalition"][2]] >= 500
    assert off["loss"] > 0 and off["cheater_gain_micro"] > 0
    assert off["withheld_slots_with_impact_unfound"], off  # each named, none found


@pytest.mark.slow
def test_withholding_that_moves_nothing_is_no_abuse_to_find(tmp_path: Path) -> None:
    """Regression (`gridledger bench demo --quick`: 16 slots from midnight, privacy mode,
    default attacks): the withholder's few night offers found no buyer at its own prices
    either, so the ledger's conduct-and-impact test rightly found nothing — and the scenario
    reported the defence failed (detected 0 of 6 withheld slots, loss 0, gain 0). A withheld
    slot counts against the defence only if the withholding moved the market."""
    base = scenario_from_flags(30, 24, 4, "default", 7, None, True)
    summary, _ = run_demo(dataclasses.replace(base, slots=16), tmp_path)
    r = summary["attacks"]["price-manipulation"]
    assert r["withheld_slots"] > 0 and r["withheld_slots_with_impact"] == 0, r
    assert r["detected"] == 0 and r["loss"] == 0 and r["cheater_gain_micro"] <= 0
    assert r["mitigated"], r


@pytest.mark.slow
def test_price_manipulation_under_pseudonyms_without_the_market_dispute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Privacy mode, findings not recorded as disputes: every withholding is still found and
    mitigated, but each sanction lands on a throwaway per-slot pseudonym — no identity is
    opened and the withholder's own score stays neutral (measured, seed 7, 20 members,
    10:00-14:00, defended: 12 findings on 12 pseudonyms, all 12 opened by 2 of 3 trustees,
    the withholder's own score 500 -> 0; the ledger-level case is
    tests/ledger/modules/test_privacy_market.py)."""
    monkeypatch.setattr(MarketDisputes, "step", lambda self, state, ctx, events: None)
    sc = Scenario(participants=20, slots=8, validators=1, attacks=("price-manipulation",),
                  seed=7, start_slot_of_day=MIDDAY, privacy=True)
    summary, _ = run_demo(sc, tmp_path)
    off = summary["attacks"]["price-manipulation"]
    assert off["detected"] > 0 and off["pseudonyms_found"] > 0 and off["loss"] == 0
    assert off["pseudonyms_opened"] == 0 and off["owner_sanctions"] == 0
    assert off["coalition_reputation"][off["coalition"][0]] == 500
    assert not off["mitigated"]  # the sanction never reached the owner
    assert summary["privacy"]["identities_opened_for_market_abuse"] == 0


@pytest.mark.slow
def test_sybil_without_the_dsos_attestation_check(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A DSO that attests whatever connection point it is asked for: every invented one is
    admitted (the ledger still refuses a second identity at the one real point)."""
    monkeypatch.setattr(onboarding.Onboarding, "_why_not", lambda self, cp: None)
    off = run(tmp_path, ("sybil",), start=EVENING, slots=8)["attacks"]["sybil"]
    assert off["admitted"] > 1 and not off["mitigated"] and off["loss"] == off["admitted"] - 1
