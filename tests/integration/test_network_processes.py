"""Real processes on loopback: 3 NATS JetStream servers (R=3) and 4 validator processes.

Faults: kill -9 one validator mid-stream (the other three keep finalising; the restarted one
catches up to the same state root), kill -9 one NATS server (the stream keeps its quorum).
Bounded: every wait has a deadline; everything is stopped in teardown.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from gridledger.client import Client
from gridledger.crypto.keystore import load_key
from gridledger.node.nats_cluster import NatsCluster, free_port
from gridledger.node.network_files import init_network
from gridledger.node.spawn import spawn_validator, stop_processes
from gridledger.node.verify import verify_store

PASS = "integration-test"
pytestmark = pytest.mark.integration


def _start(node_dir: Path, urls: list[str], port: int,
           fault: str | None = None) -> subprocess.Popen[bytes]:
    extra = ["--fault", fault] if fault else []
    return spawn_validator(node_dir, urls, port, PASS, "--tick-s", "0.5", *extra)


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


@pytest.fixture(params=[None])
def network(tmp_path, request):
    faults = request.param or {}
    cluster = NatsCluster(tmp_path / "nats").start()
    time.sleep(1.0)
    dirs = init_network(tmp_path / "net", 4, 4, "itest", PASS, scrypt_n=2**12)
    ports = [free_port() for _ in dirs]
    procs = [_start(d, cluster.urls, p, faults.get(i)) for i, (d, p) in enumerate(zip(dirs, ports))]
    try:
        for p in ports:
            _wait(lambda p=p: _status(p)["height"] >= 1, 60, f"validator on {p} to finalise")
        yield cluster, dirs, ports, procs, tmp_path / "net"
    finally:
        stop_processes(procs)
        cluster.stop()


def test_four_processes_finalise_survive_kills_and_catch_up(network):
    cluster, dirs, ports, procs, net = network
    keys = [load_key(net / "participants" / f"p{i}.key.json", PASS) for i in range(4)]
    c0 = Client(f"http://127.0.0.1:{ports[0]}", keys[0])
    r = c0.transfer(keys[1].address, 1_000, wait=True)
    assert r["receipt"]["ok"]

    # kill -9 validator 2 mid-stream: 3 of 4 still make a quorum
    procs[2].send_signal(signal.SIGKILL)
    procs[2].wait(timeout=10)
    c1 = Client(f"http://127.0.0.1:{ports[1]}", keys[1])
    for _ in range(3):
        assert c1.transfer(keys[2].address, 10, wait=True)["receipt"]["ok"]

    # kill -9 one NATS server: the R=3 stream keeps a Raft majority
    cluster.servers[0].kill()
    c3 = Client(f"http://127.0.0.1:{ports[3]}", keys[3])
    sent3 = c3.transfer(keys[0].address, 5, wait=True, timeout_s=60)
    assert sent3["receipt"]["ok"]

    # restart validator 2: it replays the log, finds certificates in the votes stream, and
    # reaches the same state root as the others
    procs[2] = _start(dirs[2], [u for u in cluster.urls[1:]], ports[2])
    target = _status(ports[1])["height"]
    _wait(lambda: _status(ports[2])["height"] >= target, 90, "validator 2 to catch up")
    h = min(_status(p)["height"] for p in (ports[1], ports[2], ports[3]))
    roots = set()
    for p in (ports[1], ports[2], ports[3]):
        blk = httpx.get(f"http://127.0.0.1:{p}/v1/blocks/{h}", timeout=5).json()
        roots.add(blk["header"]["state_root"])
    assert len(roots) == 1
    # the restarted validator serves receipts of transactions committed before its restart
    rec = httpx.get(f"http://127.0.0.1:{ports[2]}/v1/tx/{r['receipt']['tx']}", timeout=5)
    assert rec.status_code == 200 and rec.json()["receipt"]["ok"]

    # two of four stopped: no quorum. A transfer is ordered and executed by the other two,
    # but nothing of it is served before its block is certified (issue 18.1)
    for i in (2, 3):
        procs[i].send_signal(signal.SIGKILL)
        procs[i].wait(timeout=10)
    # with two of four down nothing more is certified: wait until 0 and 1 serve the same last
    # certified state. Both may still be behind c3's transfer, certified at 3 (a loaded machine:
    # `before` then missed it and the pending transfer's check below was off by its 5): the
    # votes that certified it (0, 1 and 3; 2 was down) are in the votes stream, so 0 and 1
    # certify its block too — wait for it
    def same_view() -> bool:
        a = [httpx.get(f"http://127.0.0.1:{p}/v1/accounts/{keys[3].address.hex()}", timeout=5).json()
             for p in (ports[0], ports[1])]
        return (a[0]["height"] == a[1]["height"] >= sent3["height"]
                and a[0]["balance_micro"] == a[1]["balance_micro"])

    _wait(same_view, 30, "validators 0 and 1 to serve the same certified state")
    before = c1.account(keys[3].address)
    pending = c1.transfer(keys[3].address, 777)
    time.sleep(3)  # ordered, executed by 0 and 1, waiting for votes that never come
    for p in (ports[0], ports[1]):
        acct = httpx.get(f"http://127.0.0.1:{p}/v1/accounts/{keys[3].address.hex()}", timeout=5).json()
        st = _status(p)
        assert acct["balance_micro"] == before["balance_micro"] and acct["height"] <= st["height"]
        blk = httpx.get(f"http://127.0.0.1:{p}/v1/blocks/{st['height']}", timeout=5).json()
        assert st["state_root"] == blk["header"]["state_root"]
        assert httpx.get(f"http://127.0.0.1:{p}/v1/tx/{pending['tx_hash']}", timeout=5).status_code == 404
    procs[2] = _start(dirs[2], cluster.urls[1:], ports[2])
    procs[3] = _start(dirs[3], cluster.urls[1:], ports[3])
    _wait(lambda: httpx.get(f"http://127.0.0.1:{ports[0]}/v1/tx/{pending['tx_hash']}", timeout=5)
          .status_code == 200, 90, "the pending transfer to be certified")
    assert c1.account(keys[3].address)["balance_micro"] == before["balance_micro"] + 777

    # stop everything cleanly and verify every store from genesis
    stop_processes(procs, timeout_s=20)
    for d in dirs:
        rep = verify_store(d / "ledger.sqlite")
        assert rep.ok, (d, rep.reason)


@pytest.mark.parametrize("network", [{3: "equivocate"}, {3: "wrong-root"}], indirect=True)
def test_byzantine_validator_process_cannot_corrupt_and_is_named(network):
    cluster, dirs, ports, procs, net = network
    keys = [load_key(net / "participants" / f"p{i}.key.json", PASS) for i in range(2)]
    c = Client(f"http://127.0.0.1:{ports[0]}", keys[0])
    assert c.transfer(keys[1].address, 7, wait=True)["receipt"]["ok"]
    height = _status(ports[0])["height"]
    for h in range(1, height + 1):
        cert = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/blocks/{h}/certificate", timeout=5).json()
        blk = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/blocks/{h}", timeout=5).json()
        # every certificate is for the header the honest validators computed ...
        assert cert["header_hash"] == blk["hash"]
        other = httpx.get(f"http://127.0.0.1:{ports[1]}/v1/blocks/{h}", timeout=5).json()
        assert other["hash"] == blk["hash"]
    offenders = _wait(lambda: _status(ports[1])["offenders"].get("3"), 30, "offender report")
    assert offenders and set(offenders) <= {"equivocation", "voted for a header the quorum did not certify"}
    # ... a wrong-root liar never signs it; an equivocator's vote for the true header may
    # count (that vote is correct), its second vote is the evidence against it
    # the validator process's live dashboard (issue 20.1) names the offender too
    page = httpx.get(f"http://127.0.0.1:{ports[1]}/", timeout=5)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    snap = httpx.get(f"http://127.0.0.1:{ports[1]}/v1/dashboard", timeout=10).json()
    named = {m["index"]: m["offences"] for m in snap["validators"]["members"]}
    assert named[3] and not any(named[i] for i in (0, 1, 2)), named
    assert snap["validators"]["certificates"], snap["validators"]


@pytest.mark.parametrize("network", [{3: "wrong-root"}], indirect=True)
def test_wrong_root_votes_never_enter_a_certificate(network):
    cluster, dirs, ports, procs, net = network
    keys = [load_key(net / "participants" / f"p{i}.key.json", PASS) for i in range(2)]
    Client(f"http://127.0.0.1:{ports[2]}", keys[0]).transfer(keys[1].address, 9, wait=True)
    for h in range(1, _status(ports[0])["height"] + 1):
        cert = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/blocks/{h}/certificate", timeout=5).json()
        assert 3 not in [v["validator"] for v in cert["votes"]]


def test_partitioned_validator_stops_then_rejoins_and_catches_up(tmp_path):
    """One validator reaches NATS only through a proxy; cutting it partitions the node."""
    from tests.integration.tcp_proxy import CuttableProxy

    cluster = NatsCluster(tmp_path / "nats").start()
    time.sleep(1.0)
    dirs = init_network(tmp_path / "net", 4, 2, "ptest", PASS, scrypt_n=2**12)
    ports = [free_port() for _ in dirs]
    proxies = [CuttableProxy(free_port(), s.client_port) for s in cluster.servers]
    for p in proxies:
        p.up()
    proxied = [f"nats://127.0.0.1:{p.listen_port}" for p in proxies]
    procs = [_start(d, proxied if i == 2 else cluster.urls, port)
             for i, (d, port) in enumerate(zip(dirs, ports))]
    try:
        for p in ports:
            _wait(lambda p=p: _status(p)["height"] >= 1, 60, "start")
        keys = [load_key(tmp_path / "net" / "participants" / f"p{i}.key.json", PASS) for i in range(2)]
        for p in proxies:
            p.cut()  # validator 2 is now alone
        # Conditions, not sleeps: validator 2 may still finalise blocks whose entries and
        # votes reached it before the cut (however slowly a loaded machine lets it), but
        # never a block holding an entry ordered after the cut. The first transfer below is
        # ordered after the cut, so its block (and every later one) is out of its reach.
        c = Client(f"http://127.0.0.1:{ports[0]}", keys[0])
        heights = [c.transfer(keys[1].address, 11, wait=True)["height"] for _ in range(3)]
        assert heights == sorted(set(heights))  # each waited for: three blocks
        first_after_cut = heights[0]
        majority = _wait(lambda: (h := _status(ports[0])["height"]) >= heights[-1] and h,
                         30, "majority tip")
        assert _status(ports[2])["height"] < first_after_cut  # it stopped finalising
        for p in proxies:
            p.up()  # the partition heals
        _wait(lambda: _status(ports[2])["height"] >= majority, 90, "rejoin and catch up")
        b2 = httpx.get(f"http://127.0.0.1:{ports[2]}/v1/blocks/{majority}", timeout=5).json()
        b0 = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/blocks/{majority}", timeout=5).json()
        assert b2["hash"] == b0["hash"]
    finally:
        stop_processes(procs)
        for p in proxies:
            p.close()
        cluster.stop()


@pytest.mark.parametrize("network", [{3: "relabel,forge-tick,far-future"}], indirect=True)
def test_one_byzantine_process_neither_halts_nor_frames(network):
    """Issue 21.1 on NATS: a validator process that relabels the others' votes to the next
    height, ticks a century ahead (in its own and another validator's name), and votes for
    heights a million blocks ahead (all three at once: one network run). The chain keeps finalising, its time stays the honest
    validators' time, nobody honest is named, and no node holds votes beyond its window."""
    cluster, dirs, ports, procs, net = network
    keys = [load_key(net / "participants" / f"p{i}.key.json", PASS) for i in range(2)]
    c = Client(f"http://127.0.0.1:{ports[0]}", keys[0])
    for _ in range(3):
        assert c.transfer(keys[1].address, 3, wait=True, timeout_s=60)["receipt"]["ok"]
    genesis_time = _genesis_time(net)
    for p in ports[:3]:
        st = _status(p)
        assert st["height"] >= 3
        # consensus time is the honest clocks' (within a minute), never a century ahead
        assert abs(st["slot_time"] - (time.time() - genesis_time)) < 60, st
        assert not (set(st["offenders"]) & {"0", "1", "2"}), st["offenders"]
        assert st["vote_heights_open"] <= 3 and st["votes_held"] <= 3 * 4 * 2, st
    # the three honest stores agree and verify from genesis
    h = min(_status(p)["height"] for p in ports[:3])
    hashes = {httpx.get(f"http://127.0.0.1:{p}/v1/blocks/{h}", timeout=5).json()["hash"] for p in ports[:3]}
    assert len(hashes) == 1
    stop_processes(procs, timeout_s=20)
    for d in dirs[:3]:
        rep = verify_store(d / "ledger.sqlite")
        assert rep.ok, (d, rep.reason)
        for _h, kind, body in _evidence(d / "ledger.sqlite"):
            assert kind != "equivocation" and body["validator"] == 3, body


def _genesis_time(net: Path) -> int:
    from gridledger.ledger.genesis import Genesis

    return int(Genesis.decode((net / "genesis.cbor").read_bytes()).params["genesis_time_unix"])


def _evidence(store: Path) -> list:
    from gridledger.node.store import BlockStore

    st = BlockStore(store, readonly=True)
    try:
        return st.evidence()
    finally:
        st.close()
