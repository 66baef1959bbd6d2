"""Flexibility in the demo (issue 15): the evening-peak scenario with and without the DSO
buying flexibility, the ``fake-flexibility`` attack, and its defence removed.

Three short runs of the evening (16:00-22:00, 20 participants, 4 validators): flexibility
on with the attack, flexibility off (both module-scoped and shared by the tests that read
them, the report of the first opened in headless Chromium), and the attack with the
baseline cap removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridledger.ledger.modules.flex import settlement
from gridledger.ledger.modules.flex.types import Config, Eligible, Offer, Request
from gridledger.sim.demo import run_demo, scenario_from_flags, write_outputs

from .browser import find_chromium

HOURS = 6
PARTICIPANTS = 20


def _run(tmp: Path, flexibility: bool, attacks: str, report: bool = False) -> dict[str, Any]:
    sc = scenario_from_flags(PARTICIPANTS, HOURS, 4, attacks, 7, None, privacy=False,
                             scenario="evening-peak", flexibility=flexibility)
    summary, series = run_demo(sc, tmp)
    if report:
        write_outputs(summary, series, tmp)   # report.html, as `gridledger demo` writes it
    # shown with -s (what the assertions below read)
    print(f"flexibility={flexibility} attacks={attacks}:", summary["flexibility"],
          summary["attacks"].get("fake-flexibility"), summary["invariants"],
          {k: v for k, v in summary["timings"].items() if k.endswith("_s")})
    return {**summary, "_dir": tmp}


@pytest.fixture(scope="module")
def peak_on(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("peak-on"), True, "fake-flexibility", report=True)


@pytest.fixture(scope="module")
def peak_off(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("peak-off"), False, "none")


# The run without flexibility (``peak_off``) is the defence-removed variant: its comparisons
# are slow tests; the on-run measures the same day without flexibility itself (its
# ``*_without`` figures, checked against ``peak_off`` below), which make test reads.
@pytest.mark.slow
def test_without_flexibility_the_evening_peak_breaks_limits_or_curtails(peak_off) -> None:
    f = peak_off["flexibility"]
    assert f["requests"] == 0 and f["paid_micro"] == 0
    assert f["violations"] > 0 or f["curtailed_wh"] > 0
    assert all(peak_off["invariants"].values())


def test_flexibility_removes_violations_halves_curtailment_and_costs_less_than_it(
        peak_on) -> None:
    on = peak_on["flexibility"]
    assert on["requests"] > 0 and on["offers"] > 0 and on["activated_wh"] > 0
    assert on["violations"] == 0
    # against the same day without flexibility, measured in the run
    assert on["curtailed_wh"] * 2 <= on["curtailed_wh_without"]
    # the DSO pays no more for flexibility than the curtailed energy was worth at retail
    assert on["dso_cost_micro"] <= on["curtailed_value_without_micro"]
    # members who delivered were paid for it
    assert on["delivered_wh"] > 0 and on["paid_micro"] > 0
    assert any(v > 0 for v in on["member_income_micro"].values())
    assert all(peak_on["invariants"].values())
    assert peak_on["ledger"]["validators_agree"]


@pytest.mark.slow
def test_the_same_day_without_flexibility_is_measured_in_the_run(peak_on, peak_off) -> None:
    """The on-run delivers every slot flexibility moved a second time without it: its
    "without" figures show the congestion the other run (no flexibility at all) has."""
    on, off = peak_on["flexibility"], peak_off["flexibility"]
    assert on["curtailed_wh"] * 2 <= off["curtailed_wh"]
    assert on["dso_cost_micro"] <= off["curtailed_value_micro"]
    assert on["curtailed_wh_without"] > 0 and on["curtailed_wh_without"] >= 2 * on["curtailed_wh"]
    assert on["curtailed_value_without_micro"] >= on["dso_cost_micro"]
    assert "curtailed_wh_without" in off and off["curtailed_wh_without"] == off["curtailed_wh"]


def test_fake_flexibility_is_paid_nothing_and_penalised(peak_on) -> None:
    """Its charger keeps charging (its envelope notwithstanding) and it claims full
    delivery: its inflated baselines are capped and its claims rejected (detected); its meter
    shows no reduction beyond the meters' error against the DSO's forecast, so it is paid
    nothing for what it claimed (loss 0: at most that error, < 5 % of what was ordered), and
    the shortfall costs its deposit and reputation."""
    r = peak_on["attacks"]["fake-flexibility"]
    assert r["injected"] > 0, r
    assert r["detected"] >= r["injected"] and r["mitigated"] and r["loss"] == 0, r
    assert r["delivered_wh"] * 20 < r["activated_wh"] and r["paid_micro"] * 20 < r["penalty_micro"], r
    assert r["penalty_micro"] > 0 and r["reputation_delta"] < 0, r
    f = peak_on["flexibility"]
    # every activation's baseline capped; every claim that reached the chain rejected (the
    # node's reputation-scaled quota may drop a sanctioned sender's later reports)
    assert f["baselines_capped"] >= r["injected"] and f["claims_rejected"] > 0
    assert f["penalties_micro"] >= r["penalty_micro"]
    assert f["member_income_micro"][r["attacker"]] == r["paid_micro"] - r["penalty_micro"] < 0


@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary")
def test_flexibility_section_of_the_report_in_headless_chromium(peak_on) -> None:
    """The on-run's report.html in a real headless Chromium: no errors, no network, and the
    flexibility section shows the figures of summary.flexibility."""
    from .browser import open_in_chromium

    res = open_in_chromium(peak_on["_dir"] / "report.html", timeout=90, probe=lambda s: s.evaluate(
        "document.getElementById('flexibility') && document.getElementById('flexibility').innerText"))
    assert res.errors == [] and res.requests == [], (res.errors, res.requests)
    text = res.probe
    assert text, "no #flexibility section rendered"
    f = peak_on["flexibility"]

    def kwh(wh: int) -> str:
        return f"{wh / 1000:,.1f} kWh"

    def units(micro: int) -> str:
        return f"{micro / 1e6:,.2f}"

    for needle in (f"{f['violations']} (without: {f['violations_without']})",
                   f"{kwh(f['curtailed_wh'])} (without: {kwh(f['curtailed_wh_without'])})",
                   f"{kwh(f['activated_wh'])} / {kwh(f['delivered_wh'])}",
                   units(f["dso_cost_micro"]), f"DSO paid for flexibility\t{units(f['paid_micro'])}",
                   f"{units(f['curtailed_value_micro'])} (without: "
                   f"{units(f['curtailed_value_without_micro'])})"):
        assert needle in text, (needle, text)
    assert f["member_income_micro"]
    for name, income in f["member_income_micro"].items():
        assert f"{name}\t{units(income)}" in text, (name, text)


@pytest.mark.slow
def test_without_the_baseline_cap_fake_flexibility_is_paid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence removed: settlement takes the declared baseline as it is. The attacker's
    ordinary consumption, measured against three times itself, looks like full delivery."""

    def uncapped(r: Request, elig: Eligible, o: Offer, k: int, cfg: Config) -> tuple[int, bool]:
        return (o.baseline_wh[k] if r.baseline == "declared" else elig.reference_wh[k]), False

    monkeypatch.setattr(settlement, "baseline_of", uncapped)
    summary = _run(tmp_path, True, "fake-flexibility")
    r = summary["attacks"]["fake-flexibility"]
    assert r["injected"] > 0 and r["loss"] > 0 and not r["mitigated"], r
    assert r["paid_micro"] >= r["loss"] > 0 and r["delivered_wh"] > 0, r


def test_default_day_has_no_congestion_so_no_flexibility_is_bought(default_day: Any) -> None:
    """The stock feeder in May stays below its limits: the DSO requests nothing, and the
    fake-flexibility attack (in the default set, in either mode) finds nothing to sell
    against."""
    s = default_day.summary
    f = s["flexibility"]
    assert f["enabled"] and not f["idle"] and f["requests"] == 0 and f["paid_micro"] == 0
    r = s["attacks"]["fake-flexibility"]
    assert r["injected"] == 0 and r["loss"] == 0 and r["attacker"] is None and r["mitigated"]
    assert s["detections"]["flex_baselines_capped"] == s["detections"]["flex_claims_rejected"] == 0


def test_report_section_compares_with_and_without_and_says_when_idle() -> None:
    """The section is rendered from summary.flexibility alone: with/without pairs when the
    run bought flexibility, the idle reason (privacy mode) escaped, nothing without a key."""
    from gridledger.sim.features.flexibility import Flexibility

    f = {"enabled": True, "idle": "", "violations": 0, "violations_without": 3,
         "paid_micro": 4_120_000,
         "curtailed_wh": 22_300, "curtailed_wh_without": 130_300, "activated_wh": 89_100,
         "delivered_wh": 88_800, "dso_cost_micro": 3_970_000, "curtailed_value_micro": 5_575_000,
         "curtailed_value_without_micro": 32_575_000, "member_income_micro": {"<b>m</b>": -5}}
    (sec,) = Flexibility.report_sections({"flexibility": f})
    for text in ("0 (without: 3)", "22.3 kWh (without: 130.3 kWh)", "89.1 kWh / 88.8 kWh",
                 "3.97", "DSO paid for flexibility</td><td class=\"num\">4.12",
                 "5.58 (without: 32.58)", "&lt;b&gt;m&lt;/b&gt;", "-0.00"):
        assert text in sec.body_html, text
    (idle,) = Flexibility.report_sections({"flexibility": {**f, "idle": "privacy <mode>"}})
    assert "Idle: privacy &lt;mode&gt;" in idle.body_html
    off = Flexibility.report_sections({"flexibility": {**f, "enabled": False}})[0].body_html
    assert "without:" not in off
    assert Flexibility.report_sections({}) == []
    assert "stopped naming" not in sec.body_html
    (ps,) = Flexibility.report_sections({"flexibility": {
        **f, "households_excluded": ["h08"], "owners_sanctioned": {"h08": -500}}})
    assert "h08 / h08 (-500)" in ps.body_html


def _privacy_run(tmp: Path) -> dict[str, Any]:
    sc = scenario_from_flags(PARTICIPANTS, HOURS, 4, "fake-flexibility", 7, None, privacy=True,
                             scenario="evening-peak", flexibility=True)
    s, _ = run_demo(sc, tmp)
    return s


@pytest.mark.slow
def test_under_privacy_mode_flexibility_is_bought_from_pseudonyms(tmp_path: Path) -> None:
    """Privacy mode (issue 19): the DSO names each eligible household by its slot's stand-in
    cp (it attested the meters' pseudonym bindings), the household offers, reports and is
    paid under its slot's pseudonym, delivery settles on the stand-in cp's reading. The
    evening's congestion is relieved as in clear mode; no request, offer, order or report
    and no flexibility event in any validator's store names a household's address or cp;
    ``fake-flexibility`` is caught the same way (capped baselines, rejected claims, paid on
    its meter only), the trustees open its non-delivering pseudonyms on the ledger's
    ``flex`` disputes (its score takes their losses) and the DSO stops naming the household
    once its pseudonyms' losses would have suspended it."""
    import sqlite3

    from gridledger.crypto.sig import address_of
    from gridledger.ledger import codec
    from gridledger.ledger.genesis import Genesis
    from gridledger.ledger.tx import decode_tx
    from gridledger.sim.privacy_view import names_any

    s = _privacy_run(tmp_path)
    f = s["flexibility"]
    print("privacy:", f, s["attacks"]["fake-flexibility"])
    assert f["enabled"] and not f["idle"]
    assert f["requests"] > 0 and f["offers"] > 0 and f["orders"] > 0 and f["activated_wh"] > 0
    assert f["delivered_wh"] > 0 and f["paid_micro"] > 0 and f["violations"] == 0
    assert f["curtailed_wh"] * 2 <= f["curtailed_wh_without"]
    # income is booked to the households behind the pseudonyms
    names = {f"h{i:02d}" for i in range(1, PARTICIPANTS + 1)}
    assert f["member_income_micro"] and set(f["member_income_micro"]) <= names
    assert all(s["invariants"].values()) and s["ledger"]["validators_agree"]
    p = s["privacy"]
    assert p["mode"] == "on" and p["clear_household_readings"] == p["clear_household_orders"] == 0
    r = s["attacks"]["fake-flexibility"]
    assert r["injected"] > 0 and r["detected"] >= r["injected"], r
    assert r["mitigated"] and r["loss"] == 0 and r["penalty_micro"] > 20 * r["paid_micro"], r
    assert f["households_excluded"] == [r["attacker"]]
    # ... and the ledger's own sanction follows the owner: each non-delivering pseudonym's
    # settlement recorded a ``flex`` dispute, the trustees opened it (the ordinary escrow
    # path), the household took its pseudonyms' losses; nobody honest was opened
    assert p["opened_for_flexibility"] == [r["attacker"]], p
    assert p["identities_opened_for_flexibility"] >= r["injected"] > 0, p
    assert f["owners_sanctioned"][r["attacker"]] < 0 and list(f["owners_sanctioned"]) == [
        r["attacker"]], f
    # the store itself: every flexibility transaction and event names pseudonyms only
    flex_txs = {"flex/request": 0, "flex/offer": 0, "flex/order": 0, "flex/report": 0}
    db = sqlite3.connect(f"file:{tmp_path / 'ledger' / 'validator-1.sqlite'}?mode=ro&immutable=1",
                         uri=True)
    genesis = Genesis.decode(db.execute("SELECT value FROM meta WHERE key='genesis'").fetchone()[0])
    parts = [x for x in genesis.doc["participants"] if x.get("cp") or x.get("meter_of")]
    addrs = frozenset(address_of(x["alg"], x["pk"]) for x in parts)
    cps = frozenset(x.get("cp") or x.get("meter_of") for x in parts)
    for txs, receipts in db.execute("SELECT txs, receipts FROM blocks"):
        for raw in codec.decode(txs):
            tx = decode_tx(raw)
            if tx.kind in flex_txs:
                flex_txs[tx.kind] += 1
                assert tx.sender not in addrs and not names_any(tx.body, addrs, cps), tx.kind
                if tx.kind == "flex/request":
                    assert all(str(e[0]).startswith("ps:") for e in tx.body["cps"])
        rec = codec.decode(receipts)
        for e in [e for x in rec["txs"] for e in x["events"]] + list(rec["block"]):
            if str(e["type"]).startswith("flex_") or e["type"] in ("baseline_capped",
                                                                    "claim_rejected"):
                assert not names_any(e, addrs, cps), e
    db.close()
    assert all(flex_txs.values()), flex_txs


@pytest.mark.slow
def test_without_the_dsos_exclusion_fresh_pseudonyms_keep_failing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence removed (privacy mode): the DSO keeps naming the household whose pseudonyms
    keep failing. Each slot's pseudonym starts neutral, so the ledger's ``flex-suspended``
    never stops it: it is activated in every request and the evening's relief falls short
    (more curtailed than with the exclusion), though it is still paid nothing for what it
    claimed (loss 0)."""
    from gridledger.sim.features.flexibility import Flexibility

    monkeypatch.setattr(Flexibility, "_sanctioned", lambda self, m: False)
    s = _privacy_run(tmp_path)
    f, r = s["flexibility"], s["attacks"]["fake-flexibility"]
    print("privacy, no exclusion:", f, r)
    assert f["households_excluded"] == [] and r["activated_slots"] == f["requests"] > 9, r
    assert r["loss"] == 0 and r["penalty_micro"] > 0
    # with the exclusion (the test above): 9 activations, 9.8 kWh curtailed
    assert f["curtailed_wh"] > 9_830
