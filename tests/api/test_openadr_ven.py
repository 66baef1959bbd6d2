"""The OpenADR 3 VTN with a real VEN: ElaadNL's ``openadr3-client`` (PyPI), in its own
Python >= 3.12 process, against a validator's API served by uvicorn on loopback.

The VEN authenticates with OAuth2 client credentials, reads the flexibility programme and
its member's activation as an event, and posts a DELTA_USAGE report; the VTN turns the
report into a ``flex/report`` signed with the VEN's key, which the chain records as the
member's claim and settles against the meter.

The VEN's interpreter: ``$GRIDLEDGER_VEN_PYTHON``, else ``.venv-ven/bin/python`` at the
repository root (``python3.12 -m venv .venv-ven && .venv-ven/bin/pip install
'openadr3-client>=2.4'``; docs/flexibility.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridledger.api import create_app
from gridledger.api.limits import make_server
from gridledger.flex import MeritOffer, select
from gridledger.flex.ven import enroll_body, new_secret, ven_key
from gridledger.ledger.modules.flex import keeper as flex_keeper
from gridledger.ledger.tx import decode_tx
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.nats_cluster import free_port
from gridledger.node.service import EmbeddedService
from tests.ledger.modules.test_flex import (
    FIRST,
    GATE,
    FlexWorld,
    N,
    S,
    flex_genesis,
    t_read,
    t_settle,
)

ROOT = Path(__file__).resolve().parents[2]
VEN_PY = Path(os.environ.get("GRIDLEDGER_VEN_PYTHON", ROOT / ".venv-ven" / "bin" / "python"))
SCRIPT = Path(__file__).with_name("ven_client.py")
NAME = "ven-u0"

needs_ven = pytest.mark.skipif(
    not VEN_PY.exists(), reason=f"no Python >= 3.12 with openadr3-client at {VEN_PY} "
                                "(set GRIDLEDGER_VEN_PYTHON; docs/flexibility.md)")


class Env:
    def __init__(self, svc: EmbeddedService, w: FlexWorld, base: str, secret: str,
                 rid: bytes, oids: list[bytes]) -> None:
        self.svc, self.w, self.base, self.secret, self.rid, self.oids = svc, w, base, secret, rid, oids

    def submit(self, raws: list[bytes], at: int) -> list[dict[str, Any]]:
        for raw in raws:
            self.svc.submit(raw)
        receipts: list[dict[str, Any]] = []
        for fb in self.svc.tick(at):
            receipts += [{"rule": r.rule, "ok": r.ok, "tx": r.tx_hash, "events": r.events}
                         for r in fb.result.receipts]
            self.w.results.append(fb.result)
        return receipts

    def ven(self, *args: str) -> tuple[int, dict[str, Any]]:
        p = subprocess.run([str(VEN_PY), str(SCRIPT), self.base, NAME, self.secret, *args],
                           capture_output=True, text=True, timeout=120, cwd=SCRIPT.parent)
        assert p.returncode in (0, 3), p.stderr[-3000:]
        return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    genesis, v, dso, users, meters = flex_genesis()
    net = EmbeddedNetwork(genesis, [v], tmp_path)
    svc = EmbeddedService(net)
    w = FlexWorld(net.entry.app, dso, users, meters)
    secret = new_secret()
    e = Env(svc, w, "", secret, b"", [])
    # the DSO's request, three offers, the member's VEN enrolment, the merit-order order
    rid = e.submit([w.request(energies=[1_200, 1_200])], GATE - 3 * S)[0]["tx"]
    offers = [w.offer(i, rid, (50_000, 80_000, 120_000)[i], [800, 800]) for i in range(N)]
    got = e.submit([*offers, w.tx(users[0], "flex/ven", enroll_body(NAME, secret))],
                   GATE - 2 * S)
    assert all(r["ok"] for r in got), got
    oids = [decode_tx(raw).id for raw in offers]
    merit = [MeritOffer(o, 1_000_000, (50_000, 80_000, 120_000)[i], (800, 800))
             for i, o in enumerate(oids)]
    acts = select(merit, [1_200, 1_200])
    got = e.submit([w.order(rid, [1_200, 1_200],
                            [(o, list(a)) for o, a in zip(oids, acts, strict=True) if any(a)])],
                   GATE)
    assert got[0]["ok"], got
    e.rid, e.oids = rid, oids
    port = free_port()
    server = make_server(create_app(svc), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "VTN did not start"
        time.sleep(0.05)
    e.base = f"http://127.0.0.1:{port}/openadr3"
    yield e
    server.should_exit = True
    thread.join(timeout=10)
    net.close()


@needs_ven
def test_a_standard_ven_receives_the_event_and_its_report_settles_on_the_ledger(env: Env) -> None:
    w = env.w
    code, got = env.ven("events")
    assert code == 0, got
    assert [p["id"] for p in got["programs"]] == ["gridledger-flex"]
    (event,) = got["events"]                 # u0's one activated offer: 800 Wh in both slots
    assert event["id"] == env.oids[0].hex() and event["programID"] == "gridledger-flex"
    assert [(i["id"], i["payloads"][0]["type"], i["payloads"][0]["values"])
            for i in event["intervals"]] == [(0, "DISPATCH_SETPOINT_RELATIVE", [-800]),
                                             (1, "DISPATCH_SETPOINT_RELATIVE", [-800])]
    assert event["intervalPeriod"]["duration"] == "PT15M"
    assert {"type": "VEN_NAME", "values": [NAME]} in event["targets"]
    assert got["reports"] == []

    # slot FIRST is delivered (u0 imports 1 200 Wh against a -2 000 Wh baseline) and read
    env.submit([w.reading(i, FIRST, (1_200, 1_630, 2_000)[i]) for i in range(N)], t_read(FIRST))
    code, got = env.ven("report", event["id"], "0", "-800")
    assert code == 0, got
    assert got["report"]["eventID"] == event["id"]
    receipts = env.submit([], t_read(FIRST) + 20)
    (rc,) = receipts
    assert rc["ok"], rc
    reported = [e for e in rc["events"] if e["type"] == "flex_reported"]
    ven_addr = ven_key(NAME, env.secret).address
    assert reported and reported[0]["by"] == ven_addr and reported[0]["member"] == w.users[0].address
    o = flex_keeper.offer(env.svc.net.entry.app.state, env.rid, env.oids[0])
    assert o is not None and o.claims_wh == (800, -1)

    # the VEN sees its report; a report for a slot not activated is refused naming the rule
    code, got = env.ven("events")
    assert [[p["values"] for p in i["payloads"]] for r in got["reports"]
            for res in r["resources"] for i in res["intervals"]] == [[[-800]]]
    code, got = env.ven("report", env.oids[2].hex(), "0", "-100")
    assert code == 3 and got["status"] == 404 and got["body"]["title"] == "unknown-event"

    # settlement pays on the meter: 800 Wh delivered in slot FIRST
    env.submit([w.reading(i, FIRST + 1, (1_200, 1_630, 2_000)[i]) for i in range(N)],
               t_read(FIRST + 1))
    env.submit([], t_settle(FIRST + 1))
    settled = {e["member"]: e for e in w.events("flex_settled")}
    assert settled[w.users[0].address]["delivered_wh"] == 1_600
    assert settled[w.users[0].address]["faults"] == 0


def test_the_vtn_refuses_bad_credentials_and_tokens(env: Env) -> None:
    with httpx.Client(base_url=env.base, timeout=30) as http:
        bad = http.post("/auth/token", data={"grant_type": "client_credentials"},
                        auth=(NAME, "wrong"))
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        unknown = http.post("/auth/token", data={"grant_type": "client_credentials"},
                            auth=("nobody", env.secret))
        assert unknown.status_code == 401
        assert http.get("/events").status_code == 401
        assert http.get("/events", headers={"Authorization": "Bearer forged"}).status_code == 401
        tok = http.post("/auth/token", data={"grant_type": "client_credentials",
                                             "client_id": NAME, "client_secret": env.secret})
        assert tok.status_code == 200, tok.text
        h = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        evs = http.get("/events", headers=h).json()
        assert [e["id"] for e in evs] == [env.oids[0].hex()]
        # a report before the slot ended: admitted, refused by the chain's report-window
        r = http.post("/reports", headers=h, json={
            "programID": "gridledger-flex", "eventID": evs[0]["id"], "clientName": NAME,
            "resources": [{"resourceName": "heat-pump", "intervals": [
                {"id": 1, "payloads": [{"type": "DELTA_USAGE", "values": [-800.5]}]}]}]})
        assert r.status_code == 400 and r.json()["title"] == "invalid-body"
        r = http.post("/reports", headers=h, json={
            "programID": "gridledger-flex", "eventID": evs[0]["id"], "clientName": "someone",
            "resources": [{"resourceName": "x", "intervals": [
                {"id": 0, "payloads": [{"type": "DELTA_USAGE", "values": [-1]}]}]}]})
        assert r.status_code == 400 and "clientName" in r.json()["detail"]
        r = http.post("/reports", headers=h, json={
            "programID": "gridledger-flex", "eventID": evs[0]["id"], "clientName": NAME,
            "resources": [{"resourceName": "x", "intervals": [
                {"id": 0, "payloads": [{"type": "DELTA_USAGE", "values": [-700]}]}]}]})
        assert r.status_code == 201, r.text
        rc = env.submit([], t_read(FIRST - 1))
        assert [x["rule"] for x in rc] == ["report-window"]
    assert sys.version_info >= (3, 11)


class Callbacks:
    """A VEN's webhook endpoint on loopback: records each notification the VTN POSTs."""

    def __init__(self) -> None:
        got: list[tuple[str, dict[str, Any]]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got.append((self.headers.get("Authorization", ""), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.got = got
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oadr/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, n: int, timeout: float = 30.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.got)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@needs_ven
def test_a_standard_ven_subscribes_and_is_notified_of_new_events_and_its_reports(env: Env) -> None:
    """The VEN (openadr3-client) subscribes with a callback URL: an event ordered later is
    POSTed to it as a notification (not the one that existed before), so is its report."""
    w, cb = env.w, Callbacks()
    try:
        code, got = env.ven("subscribe", cb.url, "cb-secret")
        assert code == 0, got
        sub = got["subscription"]
        assert sub["clientName"] == NAME and sub["programID"] == "gridledger-flex"
        assert [s["id"] for s in got["subscriptions"]] == [sub["id"]]
        assert [v["venName"] for v in got["vens"]] == [NAME]
        assert got["vens"][0]["id"] == ven_key(NAME, env.secret).address.hex()

        # a second request for two later slots; only u0 offers; the DSO orders it
        first2 = FIRST + 4
        rid2 = env.submit([w.request(energies=[800, 800], first=first2, gate=(first2 - 2) * S)],
                          GATE + S)[0]["tx"]
        offer = w.offer(0, rid2, 50_000, [800, 800])
        assert env.submit([offer], GATE + 2 * S)[0]["ok"]
        oid2 = decode_tx(offer).id
        acts = select([MeritOffer(oid2, 1_000_000, 50_000, (800, 800))], [800, 800])
        assert env.submit([w.order(rid2, [800, 800], [(oid2, list(acts[0]))])],
                          (first2 - 2) * S)[0]["ok"]
        (note,) = cb.wait(1)
        assert note[0] == "Bearer cb-secret"
        assert note[1]["objectType"] == "EVENT" and note[1]["operation"] == "POST"
        assert note[1]["object"]["id"] == oid2.hex()          # the new event only

        # its report on the first event is notified as the VTN records it
        env.submit([w.reading(i, FIRST, (1_200, 1_630, 2_000)[i]) for i in range(N)],
                   t_read(FIRST))
        code, got = env.ven("report", env.oids[0].hex(), "0", "-800")
        assert code == 0, got
        notes = cb.wait(2)
        assert [n[1]["objectType"] for n in notes] == ["EVENT", "REPORT"]
        assert notes[1][1]["object"]["eventID"] == env.oids[0].hex()
    finally:
        cb.close()


def test_subscriptions_refuse_bad_input_by_rule_and_stay_the_vens_own(env: Env) -> None:
    with httpx.Client(base_url=env.base, timeout=30) as http:
        tok = http.post("/auth/token", data={"grant_type": "client_credentials"},
                        auth=(NAME, env.secret)).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        good = {"clientName": NAME, "programID": "gridledger-flex", "objectOperations": [
            {"objects": ["EVENT"], "operations": ["POST"], "callbackUrl": "http://127.0.0.1:9/x"}]}
        assert http.post("/subscriptions", json=good).status_code == 401
        for bad, words in (({**good, "programID": "other"}, "programID"),
                           ({**good, "clientName": "someone"}, "clientName"),
                           ({**good, "objectOperations": [{**good["objectOperations"][0],
                                                           "objects": ["FOO"]}]}, "FOO"),
                           ({**good, "objectOperations": [{**good["objectOperations"][0],
                                                           "callbackUrl": "file:///etc/x"}]},
                            "callbackUrl"),
                           ({**good, "objectOperations": []}, "objectOperations")):
            r = http.post("/subscriptions", headers=h, json=bad)
            assert r.status_code == 400 and r.json()["rule"] == "invalid-body", r.text
            assert words in r.json()["detail"], r.text
        r = http.post("/subscriptions", headers=h, json=good)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        put = http.put(f"/subscriptions/{sid}", headers=h, json={
            **good, "objectOperations": [{**good["objectOperations"][0], "objects": ["REPORT"]}]})
        assert put.status_code == 200 and put.json()["objectOperations"][0]["objects"] == ["REPORT"]
        assert [s["id"] for s in http.get("/subscriptions", headers=h).json()] == [sid]
        assert http.get("/subscriptions", headers=h, params={"objects": "EVENT"}).json() == []
        # another VEN (or a guessed id) finds nothing
        assert http.get("/subscriptions/nope", headers=h).json()["rule"] == "unknown-subscription"
        assert http.delete(f"/subscriptions/{sid}", headers=h).status_code == 200
        assert http.get(f"/subscriptions/{sid}", headers=h).status_code == 404
        for _ in range(8):
            assert http.post("/subscriptions", headers=h, json=good).status_code == 201
        r = http.post("/subscriptions", headers=h, json=good)
        assert r.status_code == 409 and r.json()["rule"] == "too-many-subscriptions"
        # VENs are enrolled on the ledger
        r = http.post("/vens", headers=h, json={"venName": NAME})
        assert r.status_code == 409 and r.json()["rule"] == "ven-taken"
        r = http.post("/vens", headers=h, json={"venName": "another"})
        assert r.status_code == 403 and r.json()["rule"] == "enrol-on-ledger"
        # a method the path does not have: 405 naming the ones it has
        r = http.patch("/reports", headers=h)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
