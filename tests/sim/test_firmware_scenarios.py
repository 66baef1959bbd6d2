"""Threat row 10 in the demo: ``vulnerable-firmware`` and ``fake-patch``, each defended
(detected = injected, mitigated, loss 0) and with its defence removed (the damage shows).

The defended scenarios are read from the shared default day (``tests/sim/conftest.py``).
Each removal is one short run of its own; the DSO's false-data tests (row 1) would catch
most of the tampered meters' lies on their own, so these runs blind them (``fdi_blind``: no
false-data flags, the DSO still estimates every slot and still replaces quarantined readings
with its estimate) and what they measure is the loss of the firmware registry's defence
alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import gridledger.sim.features.dso as dso
import gridledger.sim.features.privacy as privacy_feature
from gridledger.grid import SLOTS_PER_DAY, DetectionResult
from gridledger.ledger.modules.firmware import handlers, keeper, module, types
from gridledger.ledger.tx import decode_tx
from gridledger.sim.context import SimContext
from gridledger.sim.demo import run_demo
from gridledger.sim.fleet import SINGLE_PHASE, THREE_PHASE, Fleet
from gridledger.sim.keys import sim_key
from gridledger.sim.scenario import DEFAULT_START_DAY, Scenario
from tests.sim.conftest import DemoRun

MIDDAY = 40
BOTH = ("vulnerable-firmware", "fake-patch")


def fdi_blind(mp: pytest.MonkeyPatch) -> None:
    """The DSO's detector flags nothing as false data (its estimates stay)."""
    real = dso.detect_bad_meters

    def blind(*args: Any, **kw: Any) -> DetectionResult:
        return dataclasses.replace(real(*args, **kw), flagged=frozenset())

    mp.setattr(dso, "detect_bad_meters", blind)


def run(tmp: Path, attacks: tuple[str, ...]) -> dict[str, Any]:
    sc = Scenario(participants=20, slots=20, validators=1, attacks=attacks, seed=7,
                  start_slot_of_day=MIDDAY)
    summary, _ = run_demo(sc, tmp)
    inv = summary["invariants"]
    assert inv["money_conserved"] and inv["energy_balanced"] and inv["validators_agree"]
    return summary


@pytest.fixture(scope="module")
def defended(default_day: DemoRun) -> dict[str, Any]:
    """Both scenarios as ``gridledger demo`` runs them (the shared default day; the DSO's
    false-data tests live, which would also flag some of the tampered readings)."""
    return default_day.summary


def test_fleet_is_two_models_with_a_seeded_old_share() -> None:
    members = [(f"cp{i}", sim_key(1, "meter", i, alg="ml-dsa-44"),
                ("pv",) if i % 3 == 0 else ()) for i in range(12)]
    fleet = Fleet.make(1, members)
    pop = fleet.population()
    assert pop[f"{THREE_PHASE} 2.7.1"] == 4
    assert pop[f"{SINGLE_PHASE} 4.1.2"] >= 2 and pop[f"{SINGLE_PHASE} 4.2.0"] >= 1
    assert sum(pop.values()) == 12
    assert Fleet.make(1, members).population() == pop        # seeded
    section = fleet.genesis_section()
    assert section["vendors"][0]["alg"] == "ml-dsa-87" and len(section["releases"]) == 3


def test_vulnerable_firmware(defended: dict[str, Any]) -> None:
    r = defended["attacks"]["vulnerable-firmware"]
    assert r["injected"] > 0 and r["detected"] == r["injected"], r
    assert r["mitigated"] and r["loss"] == 0, r
    assert r["quarantined"] == r["meters_on_advised_versions"] >= 2
    assert r["tampered_readings_estimated"] == r["tampered_readings"] > 0
    assert r["exploiter_orders_rejected"] == r["exploiter_orders_sent"] > 0
    assert r["orders_placed_unpatched"] == 0
    # the honest meters were patched to the fix the quorum approved, which lifted quarantine
    assert r["honest_patched"] == r["honest_on_advised_versions"] >= 1
    fw = defended["firmware"]
    assert [a["source"] for a in fw["advisories"]] == ["vendor"]
    (fix,) = fw["releases_published"]
    assert fix["version"] == "4.1.3" and fix["approved_slot"] > fix["published_slot"]
    assert fw["estimated_readings"] == fw["quarantined_readings"] > 0
    assert defended["invariants"]["honest_not_worse"]


def test_fake_patch(defended: dict[str, Any]) -> None:
    r = defended["attacks"]["fake-patch"]
    assert r["injected"] == 3 and r["detected"] == 3 and r["mitigated"] and r["loss"] == 0, r
    assert r["rules"] == {"unsigned": "vendor-signature", "unapproved": "release-unapproved",
                          "wrong-hash": "patch-hash-mismatch"}
    assert r["stages"]["wrong-hash"] == "admission"
    assert r["quarantine_escapes"] == 0 and r["orders_accepted"] == 0
    assert r["orders_rejected"] == r["orders_while_compromised"] > 0


def test_firmware_rejections_are_the_attackers(defended: dict[str, Any]) -> None:
    """Each patch rule fired once (the three fake patches; the wrong hash at admission), and
    every order refused ``meter-quarantined`` came from a member no honest client would
    send it for: the two firmware attackers, or another scenario's attacker on a 4.1.x
    meter (honest clients do not bid while their meter is quarantined)."""
    rules = defended["ledger"].get("rejected_by_rule", {})
    assert rules.get("vendor-signature") == 1 and rules.get("release-unapproved") == 1
    v, f = defended["attacks"]["vulnerable-firmware"], defended["attacks"]["fake-patch"]
    assert rules.get("meter-quarantined", 0) >= v["exploiter_orders_rejected"] + f["orders_rejected"]
    assert defended["detections"]["quarantined_meters"] >= 3


@pytest.mark.slow
def test_vulnerable_firmware_without_quarantine(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence removed: the registry never quarantines. Meters on the advised version keep
    trading, the exploiter included, and its tampered readings settle on their own
    figures: the grid account loses the energy it hid."""
    fdi_blind(monkeypatch)
    monkeypatch.setattr(keeper, "reason_of", lambda state, rec: None)
    r = run(tmp_path, ("vulnerable-firmware",))["attacks"]["vulnerable-firmware"]
    assert not r["mitigated"] and r["detected"] == 0 and r["quarantined"] == 0
    assert r["exploiter_orders_placed"] > 0 and r["orders_placed_unpatched"] > 0
    assert r["tampered_readings_estimated"] == 0 and r["loss"] > 0


@pytest.mark.slow
def test_fake_patch_without_patch_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence removed: a registry that takes a patch at its word (no vendor signature, no
    approval, no image check). The approved manifest with the meter's own image lifts the
    quarantine, and the household trades from a meter running home-made firmware."""
    fdi_blind(monkeypatch)
    monkeypatch.setattr(handlers.Handlers, "verify_patch", lambda self, state, rec, msg: None)

    def parse_unchecked(body: dict[str, Any]) -> types.Patch:
        return types.Patch(types.parse_manifest(body["manifest"]), body["sig"], body["firmware"])

    monkeypatch.setattr(module, "parse_patch", parse_unchecked)
    r = run(tmp_path, ("fake-patch",))["attacks"]["fake-patch"]
    assert not r["mitigated"] and r["patches_accepted"] > 0
    assert r["quarantine_escapes"] > 0 and r["orders_accepted"] > 0


@pytest.mark.slow
def test_under_privacy_mode_pseudonymous_readings_are_checked(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Privacy mode: every household reads and trades under per-slot pseudonyms, so the
    ledger checks each reading's firmware by the slot's stand-in cp. Readings from the
    exploited and the flashed meters are quarantined and settle on the DSO's estimate (loss
    0), every fake patch is refused naming its rule, and every quarantine is mapped back to
    its household. A pseudonym's orders precede its first reading: the image its meter runs
    is bound at registration (issue 19), sealed (a salted commitment, item 4), and the DSO
    opens each pseudonym of an advised meter one slot ahead, so no order is placed from one
    before it is patched — and no meter's image is in the store outside those openings."""
    fdi_blind(monkeypatch)
    sc = Scenario(participants=20, slots=20, validators=1, attacks=BOTH, seed=7,
                  start_slot_of_day=MIDDAY, privacy=True)
    s, _ = run_demo(sc, tmp_path)
    assert s["invariants"]["money_conserved"] and s["invariants"]["energy_balanced"]
    v, f = s["attacks"]["vulnerable-firmware"], s["attacks"]["fake-patch"]
    assert v["tampered_readings"] > 0 and v["loss"] == 0, v
    assert v["tampered_readings_estimated"] == v["tampered_readings"], v
    assert v["quarantined"] == v["meters_on_advised_versions"], v
    assert v["orders_placed_unpatched"] == 0 and v["mitigated"], v
    assert v["honest_patched"] == v["honest_on_advised_versions"], v
    assert f["rules"] == {"unsigned": "vendor-signature", "unapproved": "release-unapproved",
                          "wrong-hash": "patch-hash-mismatch"}
    assert f["loss"] == 0 and f["quarantine_escapes"] == 0, f
    # the flashed meter's later pseudonyms: the DSO reports the image it saw (privacy/
    # meter_image) before each trades, so none of their orders is accepted
    assert f["orders_while_compromised"] > 0 and f["orders_accepted"] == 0 and f["mitigated"], f
    fw = s["firmware"]
    assert all(not q["cp"].startswith("ps:") for q in fw["quarantine_spans"])
    assert fw["estimated_readings"] == fw["quarantined_readings"] > 0
    assert s["privacy"]["clear_meter_images"] == 0, s["privacy"]["clear_meter_images_by_kind"]


@pytest.mark.slow
def test_another_scenarios_attacker_on_an_advised_meter_follows_the_registry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (a two-day default run): fdi-meter recruited a household whose meter ran
    an advised version; the advisory quarantined it, its client kept ordering (148 orders
    refused ``meter-quarantined``, blamed on fdi-meter), its meter was never patched, and
    fdi-meter reported 'not mitigated, 0 detected' for lies the DSO's estimate had replaced.
    A member another scenario recruited follows the firmware registry as an honest one
    does (its client sends no order while quarantined, its meter installs the approved fix)
    and a reading the quarantine replaced is corrected, not lost."""
    from gridledger.sim.attacks.firmware import ADVISED
    from gridledger.sim.attacks.metering import FdiMeter

    def on_an_advised_meter(self: FdiMeter) -> None:
        fleet = self.eng.community.fleet
        assert fleet is not None
        advised = set(fleet.cps_on(SINGLE_PHASE, ADVISED))
        self.attacker = self.pick(lambda m: m.cp in advised,
                                  key=lambda m: (self.load_in(m, *self.window), m.cp))
        self.hidden = {}

    monkeypatch.setattr(FdiMeter, "setup", on_an_advised_meter)
    sc = Scenario(participants=20, slots=32, validators=1,
                  attacks=("fdi-meter", "vulnerable-firmware"), seed=7,
                  start_slot_of_day=MIDDAY)
    s, _ = run_demo(sc, tmp_path)
    fdi, vuln = s["attacks"]["fdi-meter"], s["attacks"]["vulnerable-firmware"]
    assert fdi["injected"] > 0, fdi
    assert fdi["failed_txs"] == 0, fdi             # its client saw the quarantine
    assert fdi["mitigated"] and fdi["loss"] == 0, fdi
    assert fdi["detected"] + fdi["replaced_by_quarantine"] == fdi["injected"], fdi
    assert vuln["mitigated"] and s["ledger"]["failed_by_cause"].get("fdi-meter", 0) == 0
    # every quarantined meter but the exploiter's own was patched, fdi-meter's included
    assert len(s["firmware"]["still_quarantined"]) == 1, s["firmware"]


def test_a_community_without_the_advised_firmware_leaves_the_scenario_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kind "a scenario fails the run for its community": on a network where every member
    has DER (so a three-phase meter, e.g. ``1-MVLV-rural-all-2-sw`` at 1,000 members) no meter
    runs the advised single-phase firmware. The run leaves ``vulnerable-firmware`` out, says
    why in the summary's notes, and the other scenarios run (it raised ValueError before)."""
    real = Fleet.cps_on
    monkeypatch.setattr(Fleet, "cps_on", lambda self, model, versions: [] if model == SINGLE_PHASE
                        else real(self, model, versions))
    sc = Scenario(participants=8, slots=2, validators=1, seed=7, start_slot_of_day=MIDDAY,
                  attacks=("vulnerable-firmware", "replay"))
    summary, _ = run_demo(sc, tmp_path)
    assert summary["scenario"]["attacks"] == ["replay"] and set(summary["attacks"]) == {"replay"}
    assert any(n.startswith("vulnerable-firmware left out: no meter in this community runs the "
                            "advised firmware") for n in summary["scenario"]["notes"])
    assert all(summary["invariants"].values())


TWO_EPOCHS_START = 84      # 21:00: the run crosses midnight into the next epoch
TWO_EPOCHS_ISSUE = 94      # the next epoch is registered at 23:30 (the demo: 18:00)


def two_epochs(tmp: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    """A privacy run over two epochs in 14 slots: 20 members from 21:00, the vendor's
    advisory at 22:45, the next day's pseudonyms registered at 23:30 (``ISSUE_SLOT_OF_DAY``
    moved from 18:00 so both epochs fit a short run), 00:00-00:15 under them."""
    fdi_blind(mp)
    mp.setattr(privacy_feature, "ISSUE_SLOT_OF_DAY", TWO_EPOCHS_ISSUE)
    sc = Scenario(participants=20, slots=14, validators=1, attacks=("vulnerable-firmware",),
                  seed=7, start_slot_of_day=TWO_EPOCHS_START, privacy=True)
    summary, _ = run_demo(sc, tmp)
    inv = summary["invariants"]
    assert inv["money_conserved"] and inv["energy_balanced"] and inv["validators_agree"]
    assert len(summary["privacy"]["epochs"]) == 2, summary["privacy"]
    return summary


@pytest.mark.slow
def test_under_privacy_mode_the_quarantine_follows_the_member_across_epochs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 19, a privacy week: `orders_placed_unpatched` 6, one a day). The
    DSO's attestation of the next epoch was signed in block A and sent in block B; the
    DSO's envelope signed after it in block A was refused (nonce gap), and after the nonce
    resync its first opening of the slot after the registration was refused (replayed
    nonce): that slot's pseudonym of an advised meter was never opened and its orders were
    placed. Now every DSO transaction reaches the ledger, each advised meter's pseudonyms
    of both epochs are quarantined before they trade, and none of their orders is placed."""
    s = two_epochs(tmp_path, monkeypatch)
    assert s["ledger"].get("admission_rejected", {}) == {}, s["ledger"]
    v = s["attacks"]["vulnerable-firmware"]
    assert v["disclosed_slot"] < DEFAULT_START_DAY * SLOTS_PER_DAY + TWO_EPOCHS_ISSUE, v
    assert v["exploiter_orders_sent"] > 0 and v["exploiter_orders_placed"] == 0, v
    assert v["orders_placed_unpatched"] == 0 and v["mitigated"] and v["loss"] == 0, v


def lose_dso_openings(mp: pytest.MonkeyPatch, at_s: int) -> None:
    """The DSO's image openings submitted at block time ``at_s`` never reach the ledger (a
    dropped transaction); the DSO's later transactions then meet a nonce gap and are
    refused until it resyncs, as a real client's would."""
    real = SimContext.submit

    def lossy(self: SimContext, raws: Any, now_s: int) -> Any:
        if now_s == at_s:
            raws = [r for r in raws if decode_tx(r).kind != "privacy/meter_image"]
        return real(self, raws, now_s)

    mp.setattr(SimContext, "submit", lossy)


@pytest.mark.slow
def test_a_lost_opening_holds_the_sealed_pseudonyms_back_and_without_the_vouch_they_trade(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger's rule, not the DSO's punctuality, keeps an advised meter's pseudonym out
    of the market: the DSO's openings in the registration step's block C are lost. Defended,
    the vouch signed after them is a nonce gap, so no sealed pseudonym of the next slot
    trades (refused ``meter-quarantined``) and no order of an advised meter is placed.
    Defence removed (a sealed record needs no vouch): those pseudonyms trade unopened."""
    lost_at = (DEFAULT_START_DAY * SLOTS_PER_DAY + TWO_EPOCHS_ISSUE) * 900 + 10
    lose_dso_openings(monkeypatch, lost_at)
    with monkeypatch.context() as mp:
        on = two_epochs(tmp_path / "on", mp)["attacks"]["vulnerable-firmware"]
    assert on["orders_placed_unpatched"] == 0 and on["exploiter_orders_placed"] == 0, on
    monkeypatch.setattr(keeper, "unvouched", lambda state, rec: False)
    off = two_epochs(tmp_path / "off", monkeypatch)["attacks"]["vulnerable-firmware"]
    assert off["orders_placed_unpatched"] > 0 and not off["mitigated"], off
