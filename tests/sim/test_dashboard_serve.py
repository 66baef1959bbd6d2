"""``gridledger demo --serve PORT`` (issue 20.1): the run in progress serves the node's live
dashboard, fed by its blocks, with the run's power flows in the network panel; the server
stops with the run. One short run (6 participants, 8 slots, 1 validator)."""

from __future__ import annotations

import threading
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

PROBE = """(() => { const s = window.gridledgerDashboard;
  return { snapshots: s.snapshots, height: s.last ? s.last.height : null,
           grid: !!(s.last && s.last.grid && s.last.grid.series) }; })()"""


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
                                                  start_slot_of_day=40, serve_port=port),
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
        if find_chromium() is not None:
            res = open_in_chromium(f"{base}/", settle=1.5, timeout=90,
                                   probe=lambda s: s.evaluate(PROBE))
            assert res.errors == [] and res.requests == [], (res.errors, res.requests)
            assert res.plots == 4 and res.probe["grid"] and res.probe["height"] == snap["height"]
    finally:
        resume.set()
        t.join(timeout=600)
    assert "error" not in result, result.get("error")
    assert result["summary"]["invariants"]["money_conserved"]
    with pytest.raises(httpx.TransportError):  # the server stopped with the run
        httpx.get(f"{base}/v1/status", timeout=2)
