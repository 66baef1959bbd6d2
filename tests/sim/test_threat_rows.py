"""Every docs/threat-model.md row in the summary and in the report's threat table (issue 14.6)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gridledger.sim.attacks import ATTACK_CLASSES, DEFAULT_ATTACKS, PLANNED
from gridledger.sim.features import FEATURES
from gridledger.sim.report import render_report
from gridledger.sim.summary import threat_rows_section
from gridledger.sim.threats import BY_ROW, ROWS


def test_the_rows_are_the_threat_model_rows() -> None:
    assert [r.row for r in ROWS] == [str(i) for i in range(1, 15)] + ["Q"]
    named = {n for r in ROWS for n in r.scenarios}
    # every scenario the registry knows or plans belongs to a row, and to the row it names
    for name, cls in ATTACK_CLASSES.items():
        if name in named:
            assert name in BY_ROW[cls.threat_row()].scenarios, name
    assert set(PLANNED) <= named


def _attack(name: str) -> Any:
    cls = ATTACK_CLASSES[name]
    return SimpleNamespace(name=name, threat=cls.threat, threat_row=cls.threat_row)


def test_summary_has_every_row_with_its_scenarios_and_gaps() -> None:
    names = ("fdi-meter", "price-manipulation", "fake-bids", "sybil")
    eng = SimpleNamespace(attacks=[_attack(n) for n in names],
                          features=[cls.__new__(cls) for cls in FEATURES])
    results = {n: {"mitigated": True, "loss": 0, "loss_unit": "micro"} for n in names}
    results["fake-bids"] = {"mitigated": False, "loss": 1234, "loss_unit": "micro"}
    results["sybil"] = {"mitigated": True, "loss": 0, "loss_unit": "identities"}
    rows = threat_rows_section(eng, results)  # type: ignore[arg-type]
    assert list(rows) == [r.row for r in ROWS]
    six = rows["6"]
    assert six["scenarios"] == ["price-manipulation", "fake-bids"]
    assert six["mitigated"] is False and six["loss"] == 1234
    assert six["not_run"] == ["non-delivery", "false-non-receipt"]
    assert "surveillance" in six["features"]
    assert rows["1"]["mitigated"] is True and rows["1"]["not_run"] == ["fdi-stealthy"]
    assert rows["11"]["scenarios"] == ["sybil"] and "onboarding" in rows["11"]["features"]
    assert rows["7"] == {"title": "Single point of failure", "scenarios": [], "mitigated": None,
                         "loss": 0, "features": [], "not_run": ["crash"]}


def test_report_groups_the_threat_table_by_row() -> None:
    summary = {"attacks": {"sybil": {"injected": 20, "detected": 19, "mitigated": True,
                                     "loss": 0, "loss_unit": "identities",
                                     "threat": "11 authenticating new prosumers"}},
               "threat_rows": {"7": {"title": "Single point of failure", "scenarios": [],
                                     "mitigated": None, "not_run": ["crash"], "features": []},
                               "11": {"title": "Authenticating new prosumers",
                                      "scenarios": ["sybil"], "mitigated": True,
                                      "not_run": [], "features": ["onboarding"]}}}
    page = render_report(summary, {"slots": [], "participants": []})
    table = page[page.index("Authenticating new prosumers") - 2000:]
    assert table.index("Single point of failure") < table.index("Authenticating new prosumers")
    assert table.index("Authenticating new prosumers") < table.index("<b>sybil</b>")
    assert "no scenario in this run" in page and "not in this run: crash" in page


def test_the_default_run_carries_the_new_scenarios() -> None:
    assert {"price-manipulation", "sybil"} <= set(DEFAULT_ATTACKS)
    assert not {"price-manipulation", "sybil"} & set(PLANNED)


def test_every_row_has_a_scenario_in_the_default_run() -> None:
    """Issue 14 (Done when): ``gridledger demo`` with its defaults covers every threat-model
    row, Q included (``classical-key``), with the scenarios that once ran only on request."""
    assert {"fdi-stealthy", "tamper", "classical-key"} <= set(DEFAULT_ATTACKS)
    for r in ROWS:
        assert set(r.scenarios) & set(DEFAULT_ATTACKS), f"row {r.row} has no default scenario"
