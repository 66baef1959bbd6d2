"""Validator processes' logic in one Python process (threads over a shared in-process log):
reads are certified, and what the API serves survives a restart (issue 18.1, 18.2)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gridledger.api import create_app
from gridledger.crypto.keystore import load_key
from gridledger.ledger.block import Header
from gridledger.ledger.modules.bank.keeper import BAL
from gridledger.ledger.state import MembershipProof, verify_membership
from gridledger.ledger.tx import decode_tx, sign_tx
from gridledger.node.network_files import init_network
from gridledger.node.orderer import LocalOrderer
from gridledger.node.process import ProcessConfig, ValidatorProcess

PASS = "reads-test"


class Net:
    def __init__(self, root: Path) -> None:
        self.dirs = init_network(root / "net", 4, 2, "reads", PASS, scrypt_n=2**12)
        self.users = [load_key(root / "net" / "participants" / f"p{i}.key.json", PASS) for i in range(2)]
        self.log = LocalOrderer()
        self.procs: dict[int, ValidatorProcess] = {}
        self.threads: dict[int, threading.Thread] = {}
        self.nonce = 0

    def start(self, i: int) -> ValidatorProcess:
        cfg = ProcessConfig(self.dirs[i], [], tick_s=0.2, replicas=1)
        p = ValidatorProcess(cfg, PASS, orderer=self.log)
        self.procs[i] = p
        self.threads[i] = threading.Thread(target=p.run, daemon=True)
        self.threads[i].start()
        return p

    def stop(self, i: int) -> None:
        self.procs[i].stop.set()
        self.threads[i].join(timeout=10)

    def wait(self, pred, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError("timed out")

    def transfer(self, amount: int) -> bytes:
        raw = sign_tx(self.users[0], "reads", self.nonce, "bank/transfer",
                      {"to": self.users[1].address, "amount_micro": amount})
        self.nonce += 1
        return raw


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    try:
        yield n
    finally:
        for i in list(n.procs):
            n.stop(i)


def _balance(api: TestClient, addr: bytes) -> dict:
    return api.get(f"/v1/accounts/{addr.hex()}").json()


def test_without_a_quorum_nothing_uncertified_is_ever_served(net):
    """Two of four validators stopped: the block holding a transfer executes on the other
    two but never gets a certificate. Balances, status, state root and proofs all stay at
    the last certified height, and say so."""
    for i in range(4):
        net.start(i)
    p0 = net.procs[0]
    api = TestClient(create_app(p0.service))
    net.wait(lambda: p0.validator.height >= 2)
    tx = decode_tx(net.transfer(1_000))
    p0.service.submit(tx.raw)
    net.wait(lambda: api.get(f"/v1/tx/{tx.id.hex()}").status_code == 200)
    before = _balance(api, net.users[1].address)
    net.stop(2)
    net.stop(3)
    pending = decode_tx(net.transfer(5_000))
    p0.service.submit(pending.raw)
    # validators 0 and 1 execute the block that holds it, and wait for votes in vain
    net.wait(lambda: p0.validator.app._pending is not None and net.procs[1].validator.app._pending is not None)
    time.sleep(0.5)
    for _ in range(20):
        st = api.get("/v1/status").json()
        acct = _balance(api, net.users[1].address)
        assert acct["balance_micro"] == before["balance_micro"] and acct["height"] == st["height"]
        header = Header.decode(p0.validator.store.block(st["height"]).header)
        assert st["state_root"] == header.state_root.hex() and st["block_hash"] == header.hash.hex()
        key = BAL + net.users[1].address
        pr = api.get(f"/v1/proofs/{key.hex()}").json()
        stored = Header.decode(p0.validator.store.block(pr["height"]).header)
        assert pr["state_root"] == stored.state_root.hex()
        assert verify_membership(stored.state_root, MembershipProof.from_json(pr["proof"]))
        assert api.get(f"/v1/tx/{pending.id.hex()}").status_code == 404
        time.sleep(0.05)
    # the two come back: the block is certified and only then visible
    net.start(2)
    net.start(3)
    net.wait(lambda: api.get(f"/v1/tx/{pending.id.hex()}").status_code == 200, 60)
    assert _balance(api, net.users[1].address)["balance_micro"] == before["balance_micro"] + 5_000


def test_receipts_and_offenders_are_served_after_a_restart(net):
    for i in range(4):
        net.start(i)
    p0 = net.procs[0]
    tx = decode_tx(net.transfer(700))
    p0.service.submit(tx.raw)
    api = TestClient(create_app(p0.service))
    net.wait(lambda: api.get(f"/v1/tx/{tx.id.hex()}").status_code == 200)
    got = api.get(f"/v1/tx/{tx.id.hex()}").json()
    height = p0.validator.height
    net.stop(0)
    p0 = net.start(0)  # same store, same log: replays nothing it has, keeps serving
    api = TestClient(create_app(p0.service))
    assert api.get(f"/v1/tx/{tx.id.hex()}").json() == got
    net.wait(lambda: p0.validator.height > height)
    assert got["receipt"]["ok"] and got["height"] <= height


@pytest.mark.parametrize("defence", [True, False])
def test_an_executed_block_is_invisible_until_committed(monkeypatch, defence):
    """The defence is ``State.detach``; removed (the pending block left in the state, as
    before), queries and proofs show a transfer nobody has certified."""
    from gridledger.ledger.app import Application
    from gridledger.ledger.state import Detached, State
    from tests.conftest import make_chain

    if not defence:
        def keep_pending(self: State) -> Detached:
            self.commit()
            return Detached({}, {}, -1)

        monkeypatch.setattr(State, "detach", keep_pending)
    chain = make_chain()
    app = Application(chain.genesis)
    addr = chain.users[1].address.hex()
    before, root = app.query(f"balance/{addr}"), app.state.root()
    header, _ = app.finalize_block([chain.transfer(0, 1, 250)], 900)
    seen = app.query(f"balance/{addr}")
    if defence:
        assert seen == before and app.state.root() == root and header.state_root != root
        app.commit()
        assert app.query(f"balance/{addr}")["balance_micro"] == before["balance_micro"] + 250
        assert app.state.root() == header.state_root
    else:
        assert seen != before  # the uncertified transfer is served
