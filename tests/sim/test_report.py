"""The demo's HTML report: self-contained, escaped, and clean in a real headless browser."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs

from gridledger.sim.report import C_ATTACK, C_HONEST, render_report, write_report
from gridledger.sim.report import _bills_fig as bills_fig
from tests.sim.conftest import DemoRun, must_hold

from .browser import find_chromium

EVIL = "<b>x</b>"
ATTACKS = ("false-data-injection", "replay", "double-spend")
N_SLOTS, N_PARTS = 96, 30
N_FIGURES = 5  # prices, volume, bills, voltage, loading

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="no chromium binary (chromium / chromium-browser / google-chrome); "
           "`make servers` as root installs Debian's chromium")


def make_inputs(attacks: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    slots = []
    for i in range(N_SLOTS):
        h, m = divmod(i * 15, 60)
        price = None if i == 7 else int(150_000 + 60_000 * math.sin(2 * math.pi * i / N_SLOTS))
        slots.append({
            "slot": i, "label": f"05-16 {h:02d}:{m:02d}", "price_micro_per_kwh": price,
            "volume_wh": 0 if price is None else 2_000 + 50 * i, "trades": 0 if price is None else 5,
            "retail_micro_per_kwh": 300_000, "feed_in_micro_per_kwh": 80_000,
            "grid_fee_micro_per_kwh": 90_000,
            "max_vm_pu": 1.02 + 0.05 * max(0.0, math.sin(math.pi * (i - 24) / 48)),
            "min_vm_pu": 0.97 - 0.02 * (i % 7) / 7, "max_loading_pct": 40 + 50 * (i % 24) / 24,
            "curtailed_wh": 300 if 48 <= i < 52 else 0, "flags": 1 if i == 50 else 0,
        })
    parts = []
    for j in range(N_PARTS):
        honest = j not in (3, 17)
        parts.append({
            "name": EVIL if j == 0 else f"house-{j:02d}", "role": "prosumer" if j % 2 else "consumer",
            "der": ["pv", "battery"] if j % 2 else ["heat-pump"], "strategy": "zi-plus",
            "honest": honest, "total_micro": (j - 10) * 400_000,
            "baseline_micro": (j - 9) * 450_000, "reputation": 100 if honest else 20,
        })
    attack_rows = {
        name: {"injected": 5, "detected": 5 - k, "mitigated": k != 1 if k < 2 else 4,
               "loss": 12_345 * k, "loss_unit": "micro", "defence": f"defence for {name}",
               "note": EVIL if k == 0 else ""}
        for k, name in enumerate(ATTACKS)} if attacks else {}
    summary = {
        "scenario": {"network": "1-LV-rural1--0-sw", "participants": N_PARTS, "validators": 4,
                     "slots": N_SLOTS, "seed": 7, "attacks": list(attack_rows),
                     "start": "2016-05-16T00:00"},
        "ledger": {"blocks": 97, "txs": 4_321, "rejected_txs": 12, "state_root": "ab" * 32,
                   "certificates_ok": True, "certificate_checks": 97, "validators": 4,
                   "validators_agree": True},
        "market": {"trades": 450, "energy_traded_wh": 321_000, "mean_price": 0.151,
                   "savings_pct": 12.5, "mechanism": "uniform double auction"},
        "grid": {"max_voltage_pu": 1.07, "min_voltage_pu": 0.95, "max_line_loading_pct": 88.0,
                 "violations": 0, "curtailed_wh": 1200},
        "invariants": {"money_conserved": True, "energy_balanced": True, "honest_not_worse": False},
        "attacks": attack_rows,
        "timings": {"run_s": 12.3, "tx_per_s": 351.2},
        "extra_key_from_the_future": {"ignored": True},
    }
    series = {"slots": slots, "participants": parts,
              "limits": {"v_min_pu": 0.9, "v_max_pu": 1.1, "max_loading_pct": 100.0}}
    return summary, series


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    write_report(*make_inputs(), path)
    return path


def test_written_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # plotly.js inline exactly once, nothing loaded from anywhere
    plotly_js = get_plotlyjs()
    assert page.count(plotly_js) == 1
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    # our own markup (plotly.js's source mentions URLs in strings it never fetches here;
    # the page's CSP and the browser test's request log cover the runtime side)
    own = page.replace(plotly_js, "")
    assert not re.search(r"<link\b", own, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", own, re.I)
    assert not re.search(r"https?://|@import", own, re.I)
    assert "Content-Security-Policy" in own and "default-src 'none'" in own
    # the page outside plotly.js stays small; the whole page well under the budget
    assert len(page) - len(get_plotlyjs()) < 400_000
    assert report.stat().st_size < 6_000_000


def test_sections_and_content(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    for title in ("Prices", "Traded volume", "Bills vs no-market baseline", "Members", "Grid",
                  "Threats", "Ledger"):
        assert f"<h2>{title}</h2>" in page
    for name in ATTACKS:
        assert f"<b>{name}</b>" in page
        assert f"defence for {name}" in page
    assert page.count('class="plotly-graph-div"') == N_FIGURES
    for key in ("blocks", "rejected txs", "certificate checks", "validators agree",
                "money conserved", "energy balanced", "honest not worse"):
        assert f"<td>{key}</td>" in page
    assert "abababababab…ababab" in page  # state root shortened
    assert "1-LV-rural1--0-sw" in page and "negative = net income" in page
    assert "0.012345 units" in page and "0 units" in page  # attack losses (micro)
    assert "(attacker)" in page
    assert "invariant violated" in page  # honest_not_worse is False in the fixture


def test_escaped(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert EVIL not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page  # the attack note, as text


def test_empty_and_sparse_inputs() -> None:
    summary, series = make_inputs(attacks=False)
    page = render_report(summary, series)
    assert "No attacks were injected" in page
    # nothing at all: still a valid page, no figures and no plotly.js
    bare = render_report({}, {})
    assert "<h2>Threats</h2>" in bare and "plotly-graph-div" not in bare
    assert "Plotly" not in bare
    # all prices missing (no trade in any slot) and missing optional keys
    for row in series["slots"]:
        row["price_micro_per_kwh"] = None
        del row["curtailed_wh"]
    del summary["timings"], summary["ledger"]["state_root"]
    assert page != render_report(summary, series)


@needs_chromium
def test_a_failed_defence_shows_on_the_header() -> None:
    summary, series = make_inputs()
    header = render_report(summary, series).split("<header>")[1].split("</header>")[0]
    assert "1 defence failed: replay" in header     # replay: mitigated False
    for a in summary["attacks"].values():
        a["mitigated"] = True
    header = render_report(summary, series).split("<header>")[1].split("</header>")[0]
    assert "failed" not in header and "every defence held" in header


def test_privacy_leaks_and_pool_sanctions_show_on_the_header() -> None:
    """Privacy mode: an item naming a household that held pseudonyms is a failed defence on
    the header; members a sanction kept out of the pool are named as such, not as a leak."""
    summary, series = make_inputs()

    def header() -> str:
        return render_report(summary, series).split("<header>")[1].split("</header>")[0]

    summary["privacy"] = {"mode": "on", "out_of_pool": {"member_epochs": 0, "members": {}},
                          "clear_by_pool": {"pooled": {"readings": 0, "orders": 0},
                                            "out_of_pool": {"readings": 0, "orders": 0}}}
    assert "pseudonymous household" not in header() and "kept out" not in header()
    summary["privacy"]["out_of_pool"] = {"member_epochs": 3, "members": {"h1": [1, 2], "h2": [2]}}
    summary["privacy"]["clear_by_pool"]["out_of_pool"]["readings"] = 192
    h = header()
    assert "2 sanctioned member(s) kept out of the pool" in h and "3 member-epochs" in h
    assert "pseudonymous household" not in h
    summary["privacy"]["clear_by_pool"]["pooled"]["orders"] = 2
    assert "2 items name a pseudonymous household on a validator store" in header()


def test_browser_self_check(tmp_path: Path) -> None:
    """The browser check itself notices console errors, exceptions and network use."""
    from .browser import open_in_chromium

    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><title>bad</title><script>console.error('x')</script>"
                   "<script>setTimeout(() => { throw new Error('boom') }, 0)</script>"
                   "<img src='http://127.0.0.1:9/nothing.png'>")
    res = open_in_chromium(bad)
    assert res.title == "bad" and res.plots == 0
    assert any(e == "console.error: x" for e in res.errors), res.errors
    assert any("boom" in e for e in res.errors), res.errors
    assert res.requests == ["http://127.0.0.1:9/nothing.png"]

    good = tmp_path / "good.html"
    good.write_text("<!DOCTYPE html><title>good</title><script>console.log('fine')</script>")
    res = open_in_chromium(good)
    assert res.errors == [] and res.requests == [] and res.title == "good"


@needs_chromium
def test_report_in_headless_chromium(report: Path) -> None:
    from .browser import open_in_chromium

    res = open_in_chromium(report)
    assert res.errors == []
    assert res.requests == []
    assert res.plots == N_FIGURES
    assert res.title.startswith("gridledger report")


# KPI values and every cell of the tables must fit their box: nothing clipped or cut off
_CLIPPED = """
Array.from(document.querySelectorAll('.kpi, .kpi .v, td, th'))
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => e.className + ': ' + e.textContent.trim().slice(0, 40))
"""
_SCROLLS = "document.documentElement.scrollWidth > document.documentElement.clientWidth"


def test_bills_legend_keeps_honest_and_attacker_colours_apart() -> None:
    _, series = make_inputs()
    fig = bills_fig(series["participants"], "CU")
    by_name = {t.name: t for t in fig.data}
    honest, attacker = by_name["with market"], by_name["with market (attacker)"]
    assert honest.marker.color == C_HONEST and honest.marker.pattern.shape is None
    assert attacker.marker.color == C_ATTACK and attacker.marker.pattern.shape == "x"
    assert len(honest.x) == N_PARTS - 2 and len(attacker.x) == 2
    assert honest.offsetgroup == attacker.offsetgroup  # one bar position per member


def test_members_table(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    table = page[page.index('<section id="members">'):page.index('<section id="grid">')]
    assert table.count("<tr>") == N_PARTS + 1
    assert "house-03 (attacker)" in table
    for head in ("baseline", "with market", "saving", "trades", "sanctions"):
        assert head in table


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_nothing_clipped(report: Path, width: int) -> None:
    from .browser import open_in_chromium

    res = open_in_chromium(report, width=width, evaluate={"clipped": _CLIPPED})
    assert res.errors == [] and res.values["clipped"] == [], res.values


@needs_chromium
def test_default_day_report_reads_right(default_day: DemoRun) -> None:
    """The real default day's page: loads clean, nothing clipped, every figure a note names
    is on the page, and the attack count is scenarios, not transactions."""
    from .browser import open_in_chromium

    path = default_day.out / "report.html"
    res = open_in_chromium(path, width=1280, evaluate={"clipped": _CLIPPED})
    page = path.read_text(encoding="utf-8")
    # the core figures plus those of feature sections (certificates), every one drawn
    assert res.errors == [] and res.requests == []
    assert res.plots == page.count('class="plotly-graph-div"') >= N_FIGURES
    assert res.values["clipped"] == []
    attacks = default_day.summary["attacks"]
    held = sum(1 for n, a in attacks.items() if a["mitigated"] and must_hold(default_day.summary, n))
    assert f"{held} / {len(attacks)}" in page and "attack scenarios mitigated" in page
    for name, r in attacks.items():
        for key in re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b", str(r.get("note", ""))):
            shown = key.removesuffix("_micro").removesuffix("_wh").replace("_", " ")
            assert shown in page, (name, key)
    assert "timings.dos_flood" not in page and "within quota" in page


def test_curtailment_section_names_each_cause() -> None:
    """Issue 18.12: every curtailment's limit and element on the page (grouped by cause,
    largest single cuts listed), and a plain sentence when nothing was curtailed."""
    from gridledger.sim.features.delivery import Delivery, curtailment_causes

    listed = [{"slot": 44, "time": "05-16 11:00", "cp": cp, "curtailed_wh": wh,
               "direction": "export", "limit": limit, "element": element, "violation": violation}
              for cp, wh, limit, element, violation in (
                  ("cp-1", 300, "envelope", "line 33", "overload"),
                  ("cp-2", 200, "envelope", "line 33", "overload"),
                  ("cp-3", 50, "voltage", "bus 12", "overvoltage"))]
    grid = {"curtailed_wh": 550, "curtailments": listed, "curtailment_causes": curtailment_causes(listed)}
    assert grid["curtailment_causes"][0] == {
        "limit": "envelope", "element": "line 33", "violation": "overload", "direction": "export",
        "curtailed_wh": 500, "slots": 1, "cps": 2}
    (section,) = Delivery.report_sections({"grid": grid})
    page = render_report({"grid": grid}, {}, [section])
    body = page[page.index('<section id="curtailment">'):]
    for text in ("0.550 kWh", "line 33", "overload", "bus 12", "overvoltage", "cp-3"):
        assert text in body, text
    (none,) = Delivery.report_sections({"grid": {"curtailed_wh": 0, "curtailments": []}})
    assert "No energy was curtailed" in none.body_html
    assert Delivery.report_sections({}) == []


def test_a_missing_figure_reads_as_a_dash_not_none() -> None:
    """An attack record's figure that is None (e.g. ``attacker`` when no member fitted the
    role: fake-flexibility on a day without congestion) reads "–" in the report, as every
    other missing value does (fresh-eyes review, fourteenth session)."""
    summary, series = make_inputs()
    name = next(iter(summary["attacks"]))
    summary["attacks"][name]["attacker"] = None
    page = render_report(summary, series).lower()
    assert "attacker: <b>none</b>" not in page and "attacker: <b>–</b>" in page
