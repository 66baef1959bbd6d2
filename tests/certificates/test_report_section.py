"""The report's provenance section, rendered from ``summary.json`` alone (no run): the
totals, each member's hourly matching score, the community's hourly matching figure and the
producer -> consumer Sankey; names are escaped."""

from __future__ import annotations

from pathlib import Path

from gridledger.sim.demo import write_outputs
from gridledger.sim.features.certificates import GRID_MIX, Certificates

SUMMARY = {"certificates": {
    "issued_wh": 12_000, "metered_export_wh": 15_000, "transferred_wh": 5_000,
    "cancelled_wh": 4_000, "stored_wh": 1_000, "storage_issued_wh": 500, "withheld_wh": 2_000,
    "expired_wh": 3_000, "residual_wh": 6_000, "matching_score_mean": 0.4,
    "members": [{"name": "h1 <b>", "consumption_wh": 6_000, "cancelled_wh": 3_000,
                 "stored_wh": 0, "residual_wh": 3_000, "score": 0.5},
                {"name": "h2", "consumption_wh": 5_000, "cancelled_wh": 1_000,
                 "stored_wh": 1_000, "residual_wh": 3_000, "score": 0.2}],
    "flows": [{"from": "h3", "to": "h1 <b>", "energy_wh": 3_000},
              {"from": "h3", "to": "h2", "energy_wh": 1_000},
              {"from": GRID_MIX, "to": "h1 <b>", "energy_wh": 3_000}],
    "hours": [{"hour": 10, "label": "16 May 10:00", "consumption_wh": 5_000,
               "cancelled_wh": 2_500},
              {"hour": 11, "label": "16 May 11:00", "consumption_wh": 6_000,
               "cancelled_wh": 1_500}]}}


def test_provenance_section_from_the_summary() -> None:
    sec, = Certificates.report_sections(SUMMARY)
    assert sec.section_id == "provenance" and sec.note
    body = sec.body_html
    assert 'id="fig-matching"' in body and 'id="fig-provenance"' in body
    assert "16 May 10:00" in body and ("Sankey" in body or "sankey" in body)
    assert "h1 &lt;b&gt;" in body and "<td>h1 <b>" not in body       # escaped in the table
    assert "50.0 %" in body and "20.0 %" in body and "40.0 %" in body    # scores, mean
    assert "12.0 kWh" in body and "6.0 kWh" in body                     # issued, residual


def test_no_section_without_certificates() -> None:
    assert Certificates.report_sections({}) == []
    empty = {"certificates": {**SUMMARY["certificates"], "flows": [], "hours": []}}
    sec, = Certificates.report_sections(empty)
    assert "No certificate was claimed" in sec.body_html and "fig-matching" not in sec.body_html


def test_the_report_page_carries_the_section(tmp_path: Path) -> None:
    """``write_outputs`` hands every feature's sections to the page, before the threats."""
    write_outputs(SUMMARY, {}, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert 'id="provenance"' in page and 'id="fig-matching"' in page
    assert page.index('id="provenance"') < page.index('id="threats"')
    assert "Plotly" in page          # plotly.js inline once, for the section's figures
