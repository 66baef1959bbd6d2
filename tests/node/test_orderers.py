"""The embedded orderer and NATS JetStream (3 servers, R=3) pass the same suite."""

from __future__ import annotations

import time

import pytest

from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.nats_cluster import NatsCluster
from gridledger.node.nats_orderer import NatsOrderer
from gridledger.node.orderer import Entry, LocalOrderer
from gridledger.node.verify import verify_dir
from tests.conftest import make_chain


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = NatsCluster(tmp_path_factory.mktemp("nats")).start()
    time.sleep(1.0)  # let the three servers form the JetStream meta group
    yield c
    c.stop()


_n = 0


@pytest.fixture(params=["local", "nats"])
def make_orderer(request, cluster):
    made = []

    def make(chain_id: str):
        global _n
        if request.param == "local":
            return LocalOrderer()
        _n += 1
        o = NatsOrderer(cluster.urls, f"{chain_id}-{_n}")  # a fresh stream per test
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()


def test_transfers_finalize_identically(tmp_path, make_orderer):
    chain = make_chain()
    orderer = make_orderer("t")
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, orderer=orderer)
    for b in range(4):
        for k in range(6):
            net.submit(chain.transfer(k, (k + 1) % 6, 10 + b), now_s=b)
        fbs = net.tick(900 * (b + 1))
        assert [r.ok for fb in fbs for r in fb.result.receipts] == [True] * 6
    assert net.height == 4 and len(set(net.state_roots())) == 1
    net.close()
    assert all(r.ok for r in verify_dir(tmp_path))


def test_byzantine_validator_over_either_orderer(tmp_path, make_orderer):
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path,
                          orderer=make_orderer("b"), faults={1: "equivocate"})
    net.submit(chain.transfer(0, 1, 5))
    fb = net.tick(900)[0]
    assert fb.offenders == {1: "equivocation"} and 1 not in dict(fb.cert.votes)
    net.close()


def test_nats_deduplicates_by_message_id(cluster):
    o = NatsOrderer(cluster.urls, "dedup-test")
    try:
        chain = make_chain()
        raw = chain.transfer(0, 1, 5)
        p1 = o.append(Entry("tx", tx=raw))
        p2 = o.append(Entry("tx", tx=raw))  # same tx through another validator
        t1 = o.append(Entry("tick", time_s=900))
        t2 = o.append(Entry("tick", time_s=900))  # every validator ticks the same time
        assert p1 == p2 and t1 == t2 and t1 == p1 + 1
        assert o.wait_for(2) and o.length() == 2
    finally:
        o.close()


def test_a_late_validator_reads_the_whole_log(cluster, tmp_path):
    chain = make_chain()
    a = NatsOrderer(cluster.urls, "late-reader")
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "a", orderer=a)
    for b in range(3):
        net.submit(chain.transfer(b, b + 1, 7), now_s=b)
        net.tick(900 * (b + 1))
    root = net.state_roots()[0]
    net.close()
    # a second network of the same validators over a new connection replays the stream
    b = NatsOrderer(cluster.urls, "late-reader")
    assert b.wait_for(a.length(), 10)
    net2 = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "b", orderer=b)
    assert net2.process() and net2.height == 3 and net2.state_roots()[0] == root
    net2.close()
    a.close()
    b.close()
