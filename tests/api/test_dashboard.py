"""The live dashboard (issue 20.1): served by the node at ``/`` under a strict CSP, plotly.js
from the installed package, snapshots of the certified state over server-sent events, and
in a real headless Chromium: the page loads, updates live from a running node (its own
process), and logs no error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import plotly
import pytest
from fastapi.testclient import TestClient

from gridledger.api import create_app
from gridledger.api.dashboard import RunPanel
from gridledger.grid import load_grid
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.nats_cluster import free_port
from gridledger.node.service import EmbeddedService
from tests.api.dashboard_node import GATE, S, step_txs
from tests.ledger.modules.world import make_world
from tests.sim.browser import find_chromium

ROOT = Path(__file__).resolve().parents[2]
NETWORK = "cigre-lv"
"""The running node's members sit at this network's first six connection points and its page
draws the power flow of their certified readings (``node start --network``)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    w = make_world(n_users=6, n_validators=4)
    net = EmbeddedNetwork(w.app.genesis, w.validators, tmp_path_factory.mktemp("dash"))
    svc = EmbeddedService(net)
    t = 4 * S
    svc.tick(t)
    for k in range(1, 15):
        t += 150
        svc.submit_many(step_txs(w, t, k))
        svc.tick(t)
    yield svc, TestClient(create_app(svc))
    net.close()


def test_page_and_assets_under_a_strict_csp(served):
    _, http = served
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-eval" not in csp and "script-src 'self';" in csp  # no inline script
    assert "<script>" not in page.text and "http" not in page.text.split("<body>")[0]
    js = http.get("/dashboard/plotly.min.js")
    shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert js.status_code == 200 and js.content == shipped.read_bytes()
    assert http.get("/dashboard/app.js").headers["content-type"].startswith("text/javascript")
    assert http.get("/dashboard/app.css").status_code == 200
    assert http.get("/dashboard/nope.js").status_code == 404


def test_snapshot_is_the_certified_state(served):
    _, http = served
    snap = http.get("/v1/dashboard").json()
    st = http.get("/v1/status").json()
    assert snap["height"] == st["height"] and snap["state_root"] == st["state_root"]
    t = snap["slot_time"]
    assert snap["clock"]["open_slot"] == (t + GATE) // S + 1
    assert snap["clock"]["countdown_s"] == snap["clock"]["gate_closes_at"] - t > 0
    # the open slot's book as cumulative depth: bids by falling price, asks by rising
    book = http.get(f"/v1/views/market/book/{snap['clock']['open_slot']}").json()["value"]
    bids = snap["book"]["bids"]
    assert [p for p, _ in bids] == sorted({o["price_micro_per_kwh"] for o in book["orders"]
                                           if o["side"] == "buy"}, reverse=True)
    assert bids[-1][1] == sum(o["energy_wh"] for o in book["orders"] if o["side"] == "buy")
    cleared = [p for p in snap["prices"] if p["price_micro_per_kwh"]]
    assert cleared and all(p["volume_wh"] > 0 for p in cleared)
    assert snap["tariffs"]["retail_micro_per_kwh"] > snap["tariffs"]["feed_in_micro_per_kwh"]
    assert {c["cp"] for c in snap["readings"]["cps"]} == {f"cp{i}" for i in range(6)}
    alerts = snap["alerts"]
    assert alerts["rejected_by_rule"]["transfer-to-self"] > 0
    assert alerts["counts"]["false-data flag"] > 0 and alerts["counts"]["sanction"] > 0
    members = snap["validators"]["members"]
    assert [m["index"] for m in members] == [0, 1, 2, 3]
    assert all(m["last_vote_height"] for m in members)
    assert snap["validators"]["certificates"][0]["height"] == snap["height"]


def test_event_stream_sends_a_snapshot_per_block(served):
    svc, http = served
    with http.stream("GET", "/v1/dashboard/events?limit=1") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    event, data = body.strip().split("\n", 1)
    assert event == "event: dashboard"
    assert json.loads(data.removeprefix("data: "))["height"] == svc.validator.app.height


def test_a_node_without_a_run_has_no_attack_lab(served):
    _, http = served
    assert http.get("/v1/dashboard").json()["attack_lab"] is None


def test_run_panel_live_then_frozen_then_ended(tmp_path):
    """A run driver's panel: rows reach the snapshot as published; once the run executes no
    more blocks the page keeps the last certified snapshot (its stores close); after
    ``ended`` a stream sends the final snapshot and closes by itself."""
    w = make_world(n_users=6, n_validators=4)
    net = EmbeddedNetwork(w.app.genesis, w.validators, tmp_path / "run")
    svc = EmbeddedService(net)
    t = 4 * S
    svc.tick(t)
    for k in range(1, 4):
        t += 150
        svc.submit_many(step_txs(w, t, k))
        svc.tick(t)
    panel = RunPanel()
    http = TestClient(create_app(svc, run=panel))
    row = {"attack": "fake-bids", "row": "6", "state": "live", "injected": 1, "detected": 1,
           "mitigated": True, "loss": 0, "loss_unit": "micro", "passive": None}
    panel.publish("running", [row], "slot 10:00")
    snap = http.get("/v1/dashboard").json()
    assert snap["attack_lab"] == {"run": "running", "attacks": [row], "note": "slot 10:00"}
    height = snap["height"]
    panel.publish("verifying", [row])
    svc.close()
    net.close()  # the stores are closed: the page keeps the last certified snapshot
    assert http.get("/v1/dashboard").json()["height"] == height
    panel.publish("ended", [{**row, "state": "final"}], "run ended")
    with http.stream("GET", "/v1/dashboard/events") as r:  # no limit: it ends by itself
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) == 1
    last = json.loads(events[0].removeprefix("data: "))
    assert last["attack_lab"]["run"] == "ended" and last["height"] == height
    assert panel.viewers == 0


@pytest.fixture
def running_node(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.api.dashboard_node", str(port),
                             str(tmp_path / "node"), NETWORK], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/status", timeout=2).json()["height"] >= 3:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


PROBE = """(() => { const s = window.gridledgerDashboard;
  return { snapshots: s.snapshots, height: s.last ? s.last.height : null,
           shown: document.getElementById('height').textContent,
           conn: document.getElementById('conn').textContent,
           rejected: document.getElementById('rejected').children.length,
           validators: document.getElementById('validators').children.length,
           lab: !document.getElementById('lab-panel').hidden,
           network: document.getElementById('grid-source').textContent,
           clipped: Array.from(document.querySelectorAll('.card .value, .card .sub, .panel h2'))
             .filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.textContent),
           buses: s.last && s.last.grid ? s.last.grid.buses.length : 0 }; })()"""


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed")
def test_dashboard_live_in_headless_chromium(running_node):
    from tests.sim.browser import open_in_chromium

    def probe(session):  # type: ignore[no-untyped-def]
        first = session.evaluate(PROBE)
        session.pump(3.0)  # the node keeps finalizing blocks meanwhile
        second = session.evaluate(PROBE)
        shot = os.environ.get("GRIDLEDGER_DASHBOARD_PNG")
        if shot:  # docs/dashboard.png is made this way
            session.screenshot(Path(shot))
        return first, second

    res = open_in_chromium(f"{running_node}/", settle=2.0, timeout=90, probe=probe)
    first, second = res.probe
    assert res.errors == [], res.errors
    assert res.requests == [], res.requests  # nothing but this node
    assert res.title == "GridLedger node — live"
    assert res.plots == 4
    assert first["snapshots"] >= 1 and first["conn"] == "live"
    assert second["snapshots"] > first["snapshots"] and second["height"] > first["height"]
    assert second["shown"] == f"{second['height']:,}"
    assert second["rejected"] >= 1 and second["validators"] == 4
    assert not second["lab"]  # a validator runs no attack lab: no such panel
    assert second["clipped"] == []  # every card and heading shows its whole text
    # the network panel: the power flow of the certified readings on the single-line view
    assert second["buses"] == len(load_grid(NETWORK).net.bus)
    assert "6 of 15 cps metered on the ledger" in second["network"], second["network"]
