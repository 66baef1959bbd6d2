"""Issue 21.2 on real processes: an unknown signature-algorithm name inside a transaction
body (a key rotation) or in its envelope is a named rejection, at admission and when it
reaches the NATS JetStream log anyway; the four validator processes keep finalising and
agree. Bounded: every wait has a deadline; everything is stopped in teardown.
"""

from __future__ import annotations

import time

import httpx
import pytest

from gridledger.client import ApiRejected, Client
from gridledger.crypto.keystore import load_key
from gridledger.crypto.sig import SigningKey
from gridledger.ledger import codec
from gridledger.ledger.tx import TX_CONTEXT, decode_tx, signing_bytes
from gridledger.node.nats_cluster import NatsCluster, free_port
from gridledger.node.nats_orderer import NatsOrderer
from gridledger.node.orderer import Entry
from gridledger.node.network_files import init_network
from gridledger.node.spawn import spawn_validator, stop_processes
from tests.integration.test_network_processes import _status, _wait

PASS = "integration-test"
CHAIN = "itest-alg"
pytestmark = pytest.mark.integration


def _raw(key: SigningKey, nonce: int, kind: str, body: dict, alg: str | None = None) -> bytes:
    alg = alg or key.alg
    msg = signing_bytes(CHAIN, key.address, nonce, kind, body, alg)
    return codec.encode({"alg": alg, "body": body, "chain_id": CHAIN, "kind": kind,
                         "nonce": nonce, "sender": key.address, "sig": key.sign(msg, TX_CONTEXT)})


def test_unknown_algorithm_names_never_stop_block_production(tmp_path):
    cluster = NatsCluster(tmp_path / "nats").start()
    procs = []
    orderer = None
    try:
        time.sleep(1.0)
        dirs = init_network(tmp_path / "net", 4, 4, CHAIN, PASS, scrypt_n=2**12)
        ports = [free_port() for _ in dirs]
        procs = [spawn_validator(d, cluster.urls, p, PASS, "--tick-s", "0.5")
                 for d, p in zip(dirs, ports, strict=True)]
        for p in ports:
            _wait(lambda p=p: _status(p)["height"] >= 1, 60, f"validator on {p} to finalise")
        net = tmp_path / "net"
        keys = [load_key(net / "participants" / f"p{i}.key.json", PASS) for i in range(3)]
        fake = SigningKey.generate("ml-dsa-65")
        rotate = _raw(keys[0], 0, "registry/rotate_key",
                      {"alg": "ml-dsa-99", "pk": fake.public_key.raw,
                       "pop": fake.sign(keys[0].address, b"gl/rotate")})
        envelope = _raw(keys[1], 0, "bank/transfer", {"to": keys[2].address, "amount_micro": 1},
                        alg="ml-dsa-99")
        c = Client(f"http://127.0.0.1:{ports[0]}")
        for raw in (rotate, envelope):  # admission names the rule
            with pytest.raises(ApiRejected) as err:
                c.submit_raw(raw)
            assert err.value.rule == "unknown-algorithm"
        # a Byzantine validator appends them to the shared log anyway
        orderer = NatsOrderer(cluster.urls, CHAIN)
        for raw in (rotate, envelope):
            orderer.append(Entry("tx", tx=raw))
        start = max(_status(p)["height"] for p in ports)
        honest = Client(f"http://127.0.0.1:{ports[1]}", keys[2])
        assert honest.transfer(keys[0].address, 5, wait=True, timeout_s=60)["receipt"]["ok"]
        # every validator keeps finalising past the poisoned entries, to the same blocks
        for p in ports:
            _wait(lambda p=p: _status(p)["height"] >= start + 3, 60, f"validator on {p} to go on")
        h = min(_status(p)["height"] for p in ports)
        hashes = {httpx.get(f"http://127.0.0.1:{p}/v1/blocks/{h}", timeout=5).json()["hash"]
                  for p in ports}
        assert len(hashes) == 1
        # the poisoned transactions have receipts naming the rule, on every validator
        for raw in (rotate, envelope):
            tx_id = decode_tx(raw).id.hex()
            for p in ports:
                rec = _wait(lambda p=p, tx_id=tx_id: Client(f"http://127.0.0.1:{p}").receipt(tx_id),
                            30, "receipt of the poisoned transaction")
                assert rec["receipt"]["rule"] == "unknown-algorithm", rec
    finally:
        if orderer is not None:
            orderer.close()
        stop_processes(procs)
        cluster.stop()
