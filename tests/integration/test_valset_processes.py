"""Validator-set change with real processes: 4 validator processes on a 3-server NATS
JetStream cluster vote in a 5th (started with an empty store, it replays the log and votes
from its activation height), then vote out a dead one. Bounded: every wait has a deadline.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from gridledger.client import Client
from gridledger.crypto.keystore import load_key
from gridledger.node.nats_cluster import NatsCluster, free_port
from gridledger.node.network_files import init_network, new_validator, read_join
from gridledger.node.spawn import spawn_validator, stop_processes
from gridledger.node.verify import verify_store

PASS = "integration-test"
pytestmark = pytest.mark.integration


def _wait(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last={last})")


def _status(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=2).json()


def _event(receipt: dict, type_: str) -> dict:
    assert receipt["receipt"]["ok"], receipt
    return next(e for e in receipt["receipt"]["events"] if e["type"] == type_)


def test_add_then_remove_a_validator_process(tmp_path):
    t0 = time.monotonic()
    cluster = NatsCluster(tmp_path / "nats").start()
    time.sleep(1.0)
    net = tmp_path / "net"
    dirs = init_network(net, 4, 2, "vstest", PASS, scrypt_n=2**12)
    ports = [free_port() for _ in range(5)]
    procs = [spawn_validator(d, cluster.urls, p, PASS, "--tick-s", "0.5")
             for d, p in zip(dirs, ports)]
    try:
        for p in ports[:4]:
            _wait(lambda p=p: _status(p)["height"] >= 1, 40, f"validator on {p} to start")
        vkeys = [load_key(d / "validator.key.json", PASS) for d in dirs]
        c = [Client(f"http://127.0.0.1:{p}", k) for p, k in zip(ports, vkeys)]

        # -- add: the new validator's folder, the proposal, two votes (quorum(4) = 3) ------
        d4 = new_validator(net, PASS, "validator-4", scrypt_n=2**12)
        pid = _event(c[0].propose_add_validator(read_join(d4 / "join.json"), wait=True),
                     "validator_proposed")["proposal"]
        _event(c[1].vote_validator(pid, wait=True), "validator_vote")
        passed = c[2].vote_validator(pid, wait=True)
        activation = _event(passed, "validator_proposal_passed")["activation"]
        procs.append(spawn_validator(d4, cluster.urls, ports[4], PASS, "--tick-s", "0.5"))
        _wait(lambda: _status(ports[4])["height"] >= activation, 40, "validator 4 to sync")
        assert _status(ports[4])["vote_index"] == 4
        assert len(c[0].validators()["validators"]) == 5

        # -- validator 3 dies: with 5 validators the quorum is 4, so blocks are final only
        # because the new validator votes
        procs[3].send_signal(signal.SIGKILL)
        procs[3].wait(timeout=10)
        users = [load_key(net / "participants" / f"p{i}.key.json", PASS) for i in range(2)]
        u = Client(f"http://127.0.0.1:{ports[0]}", users[0])
        assert u.transfer(users[1].address, 10, wait=True, timeout_s=30)["receipt"]["ok"]

        # -- remove the dead validator: proposer + 3 votes (quorum(5) = 4), incl. the new one
        c4 = Client(f"http://127.0.0.1:{ports[4]}", load_key(d4 / "validator.key.json", PASS))
        pid = _event(c[0].propose_remove_validator(vkeys[3].address, wait=True),
                     "validator_proposed")["proposal"]
        c[1].vote_validator(pid, wait=True)
        c4.vote_validator(pid, wait=True)
        activation = _event(c[2].vote_validator(pid, wait=True),
                            "validator_proposal_passed")["activation"]
        _wait(lambda: _status(ports[0])["height"] >= activation, 20, "removal to activate")
        view = c[0].validators()
        assert [m["name"] for m in view["validators"]] == ["validator-0", "validator-1",
                                                            "validator-2", "validator-4"]
        assert view["quorum"] == 3 and _status(ports[4])["vote_index"] == 3
        # 3 of the remaining 4: validator 1 stops too, and the chain still finalises
        stop_processes([procs[1]])
        assert u.transfer(users[1].address, 11, wait=True, timeout_s=30)["receipt"]["ok"]
        tip = _status(ports[0])["height"]
        _wait(lambda: _status(ports[4])["height"] >= tip, 20, "validator 4 at the tip")
        cert = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/blocks/{tip}/certificate", timeout=5).json()
        assert {v["validator"] for v in cert["votes"]} == {0, 2, 3}
    finally:
        stop_processes(procs)
        cluster.stop()
    for d in dirs + [d4]:
        rep = verify_store(d / "ledger.sqlite")
        assert rep.ok, (d.name, rep.reason)
    assert time.monotonic() - t0 < 90
