"""docs/threat-model.md row 2 through the API: one client floods at 100x its quota; honest clients'
transactions all commit, with the same latency (in blocks) as without the flood.

Latency is counted in blocks, not seconds, so the test is deterministic on a shared machine;
the wall-clock figure belongs to the benchmarks.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from gridledger.api import create_app
from gridledger.node.service import EmbeddedService
from gridledger.node.admission import QuotaPolicy
from gridledger.node.embedded import EmbeddedNetwork
from tests.conftest import make_chain

RATE, BURST = 5.0, 10.0


def _run(tmp_path, flood: bool) -> tuple[list[int], dict[str, int]]:
    chain = make_chain(n_validators=4, n_users=6)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path,
                          quota=QuotaPolicy(rate_per_s=RATE, burst=BURST), mempool_capacity=200,
                          max_block_txs=64)
    now = [0.0]
    svc = EmbeddedService(net, clock=lambda: now[0])
    # one portal (event-loop thread) for every request: without the context manager the
    # test client starts one per request (~5 ms each, 2,000 requests)
    with TestClient(create_app(svc)) as http:
        latencies: list[int] = []
        statuses: dict[str, int] = {}
        pending: dict[str, int] = {}
        for second in range(1, 5):
            now[0] = float(second)
            if flood:  # user 0 floods: 100x its per-second quota
                for _ in range(int(100 * RATE)):
                    raw = chain.transfer(0, 1, 1)
                    r = http.post("/v1/tx", content=raw, headers={"content-type": "application/cbor"})
                    rule = r.json().get("rule", "accepted")
                    statuses[rule] = statuses.get(rule, 0) + 1
                    if r.status_code != 202:  # the nonce was not used: reuse it next time
                        chain.nonces[chain.users[0].address] -= 1
            for u in range(1, 6):  # honest users: one payment each per second
                r = http.post("/v1/tx", json={"tx": chain.transfer(u, (u % 5) + 1, 3).hex()})
                assert r.status_code == 202, r.text
                pending[r.json()["tx_hash"]] = second
            svc.tick(second * 900)
            for h, sent in list(pending.items()):
                rec = http.get(f"/v1/tx/{h}")
                if rec.status_code == 200:
                    assert rec.json()["receipt"]["ok"]
                    latencies.append(second - sent + 1)
                    del pending[h]
    assert not pending, "an honest transaction never committed"
    net.close()
    return latencies, statuses


def test_flood_does_not_delay_honest_clients(tmp_path):
    base, _ = _run(tmp_path / "base", flood=False)
    loaded, statuses = _run(tmp_path / "flood", flood=True)
    assert len(loaded) == len(base) == 20
    p99 = lambda xs: sorted(xs)[int(0.99 * (len(xs) - 1))]  # noqa: E731
    assert p99(loaded) <= 2 * p99(base)
    # the flood was stopped at admission with a named rule (429), not by luck
    assert statuses.get("quota-exceeded", 0) >= 0.9 * 4 * 100 * RATE
