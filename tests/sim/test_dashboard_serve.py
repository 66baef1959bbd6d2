"""``gridledger demo --serve PORT`` (issue 20.1): the run in progress serves the node's live
dashboard, fed by its blocks, with the run's power flows in the network panel and the attack
lab's table as it fills; the page shows the final results and that the run ended, then the
server stops. One short run (6 participants, 8 slots, 1 validator, four attack scenarios)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gridledger.cli.main import app
from gridledger.errors import ConfigError
from gridledger.node.nats_cluster import free_port
from gridledger.sim.demo import run_demo
from gridledger.sim.scenario import Scenario, check_scenario

from .browser import find_chromium, open_in_chromium

PROBE = """(() => { const s = window.gridledgerDashboard, lab = s.last && s.last.attack_lab;
  return { snapshots: s.snapshots, height: s.last ? s.last.height : null,
           grid: !!(s.last && s.last.grid && s.last.grid.series), ended: s.ended,
           buses: s.last && s.last.grid && s.last.grid.buses ? s.last.grid.buses.length : 0,
           network: document.getElementById('grid-source').textContent,
           conn: document.getElementById('conn').textContent,
           run: lab ? lab.run : null, note: lab ? lab.note : null,
           visible: !document.getElementById('lab-panel').hidden,
           table: Array.from(document.querySelectorAll('#lab tr')).map(
             (tr) => Array.from(tr.children).map((td) => td.textContent)) }; })()"""
ATTACKS = ("fake-bids", "sybil", "replay", "audit-export")
"""Scenarios whose windows fall in an 8-slot run: sybil (slot 1), fake-bids (slot 4) act
before the run is held at step 5, replay (slot 5) around it; audit-export only at the end."""
COLUMNS = ("attack", "row", "injected", "detected", "mitigated", "loss", "figures")


def _table(probe: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {cells[0]: dict(zip(COLUMNS, cells, strict=True)) for cells in probe["table"]}


def test_bad_port_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--serve"):
        check_scenario(Scenario(participants=6, slots=8, serve_port=70000))
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "o"), "--serve", "0"])
    assert res.exit_code == 2 and "--serve" in res.output, res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_demo_serves_its_dashboard_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    paused, resume = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def progress(done: int, _total: int, _label: str) -> None:
        if done == 5:  # hold the run mid-way while the page is checked (server keeps serving)
            paused.set()
            resume.wait(timeout=180)

    def run() -> None:
        try:
            result["summary"] = run_demo(Scenario(participants=6, slots=8, validators=1,
                                                  start_slot_of_day=40, serve_port=port,
                                                  attacks=ATTACKS),
                                         tmp_path, progress=progress)[0]
        except Exception as exc:  # reported below, in the test thread
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        assert paused.wait(timeout=300), result.get("error")
        snap = httpx.get(f"{base}/v1/dashboard", timeout=10).json()
        assert snap["chain_id"] == "gridledger-demo" and snap["height"] > 0
        assert snap["grid"]["series"]["max_vm_pu"] and snap["prices"]
        # the last delivered slot on the single-line view: its extremes are the series' last
        vms = [b["vm_pu"] for b in snap["grid"]["buses"]]
        assert max(vms) == pytest.approx(snap["grid"]["series"]["max_vm_pu"][-1], abs=2e-3)
        assert snap["grid"]["slot"] == snap["grid"]["series"]["slots"][-1]
        # the attack lab mid-run: what the run has seen so far, not results computed later
        lab = {r["attack"]: r for r in snap["attack_lab"]["attacks"]}
        assert snap["attack_lab"]["run"] == "running" and list(lab) == list(ATTACKS)
        assert lab["sybil"]["state"] == "live" and lab["sybil"]["injected"] > 0
        assert lab["sybil"]["detected"] == lab["sybil"]["injected"] - 1  # one identity is its own
        assert lab["fake-bids"]["injected"] == lab["fake-bids"]["detected"] == 1
        assert lab["audit-export"]["state"] == "at the end"
        assert not [r for r in lab.values() if r["state"] == "error"], lab
        if find_chromium() is not None:
            def probe(session):  # type: ignore[no-untyped-def]
                during = session.evaluate(PROBE)
                resume.set()  # let the run finish while the page stays open
                deadline = time.monotonic() + 240
                while not session.evaluate("window.gridledgerDashboard.ended"):
                    assert time.monotonic() < deadline, "the page never showed the run's end"
                    session.pump(0.5)
                shot = os.environ.get("GRIDLEDGER_DEMO_DASHBOARD_PNG")
                if shot:  # docs/dashboard-demo.png is made this way
                    session.screenshot(Path(shot), height=1400)
                return during, session.evaluate(PROBE)

            res = open_in_chromium(f"{base}/", settle=1.5, timeout=300, probe=probe)
            assert res.errors == [] and res.requests == [], (res.errors, res.requests)
            during, after = res.probe
            # 5 plots: the network on its single-line view and the slots' extremes below it
            assert res.plots == 5 and during["grid"] and during["height"] == snap["height"]
            assert during["buses"] == len(snap["grid"]["buses"]) > 0 and "p.u." in during["network"]
            shown = _table(during)
            assert during["visible"] and during["run"] == "running" and list(shown) == list(ATTACKS)
            assert shown["fake-bids"]["injected"] == shown["fake-bids"]["detected"] == "1"
            assert shown["fake-bids"]["figures"] == "live"
            assert shown["audit-export"]["mitigated"] == "–"
    finally:
        resume.set()
        t.join(timeout=600)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary["invariants"]["money_conserved"]
    if find_chromium() is not None:
        # the final table as the summary has it, and the page says the run ended
        assert after["ended"] and after["run"] == "ended" and after["conn"] == "run ended"
        ok = sum(1 for r in summary["attacks"].values() if r["mitigated"])
        assert after["note"].startswith(f"run ended: {ok} / {len(ATTACKS)} attack scenarios")
        final = _table(after)
        for name, r in summary["attacks"].items():
            assert final[name]["figures"] == "final"
            assert final[name]["injected"] == f"{r['injected']:,}"
            assert final[name]["detected"] == f"{r['detected']:,}"
            assert final[name]["mitigated"] == ("yes" if r["mitigated"] else "no")
        assert final["audit-export"]["mitigated"] == "yes"  # measured on the finished chain
        # the live rows were the scenarios' own figures so far: nothing is taken back
        assert int(shown["sybil"]["injected"]) <= summary["attacks"]["sybil"]["injected"]
        assert shown["fake-bids"]["injected"] == f"{summary['attacks']['fake-bids']['injected']:,}"
    with pytest.raises(httpx.TransportError):  # the server stopped with the run
        httpx.get(f"{base}/v1/status", timeout=2)
