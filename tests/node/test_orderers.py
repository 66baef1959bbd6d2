"""The embedded orderer and NATS JetStream (3 servers, R=3) pass the same suite."""

from __future__ import annotations

import time

import pytest

from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.nats_cluster import NatsCluster
from gridledger.node.nats_orderer import NatsOrderer, subject
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


def _txs(n: int, start: int = 0) -> tuple[bytes, ...]:
    return tuple(f"tx{i}".encode() for i in range(start, start + n))


def test_entries_round_trip_and_bad_entries_are_refused():
    for e in (Entry("tx", tx=b"a"), Entry("tick", time_s=7), Entry("txs", batch=(b"a", b"b"))):
        assert Entry.decode(e.encode()) == e
    from gridledger.ledger import codec

    for bad in (["txs", [b"a", 5]], ["tick", "x"], ["tx", 5], ["blob", b""], ["txs"]):
        with pytest.raises(ValueError):
            Entry.decode(codec.encode(bad))
    assert Entry("void").txs() == () and Entry("tick", time_s=1).txs() == ()


def test_cutter_keeps_batches_whole_and_closes_at_max_or_tick():
    from gridledger.node.orderer import BlockCutter

    o = LocalOrderer()
    for e in (Entry("txs", batch=_txs(3)), Entry("tx", tx=b"t3"), Entry("txs", batch=_txs(3, 4)),
              Entry("txs", batch=_txs(2, 7)), Entry("tick", time_s=5), Entry("txs", batch=_txs(9, 9))):
        o.append(e)
    c = BlockCutter(max_txs=5)
    b1 = c.next_block(o)  # 3 + 1 = 4; the next batch (3) would overflow: it starts block 2
    assert (b1.txs, b1.log_start, b1.log_end) == ([*_txs(3), b"t3"], 0, 2)
    b2 = c.next_block(o)  # 3 + 2 = 5 = max
    assert (b2.txs, b2.log_end) == ([*_txs(3, 4), *_txs(2, 7)], 4)
    b3 = c.next_block(o)  # the tick closes an empty block
    assert (b3.txs, b3.slot_time, b3.log_end) == ([], 5, 5)
    b4 = c.next_block(o)  # a batch larger than max_txs is a block of its own
    assert (len(b4.txs), b4.log_end) == (9, 6) and c.next_block(o) is None


def test_cutter_scans_incrementally():
    from gridledger.node.orderer import BlockCutter

    o = LocalOrderer()
    c = BlockCutter(max_txs=100)
    for i in range(3):
        o.append(Entry("tx", tx=b"%d" % i))
        assert c.next_block(o) is None and c.scanned == i + 1 and c.open_txs == i + 1
    o.append(Entry("tick", time_s=1))
    blk = c.next_block(o)
    assert blk.txs == [b"0", b"1", b"2"] and c.scanned == c.pos == 4 and c.open_txs == 0


def test_batch_entries_respect_count_and_bytes():
    from gridledger.node.process import MAX_BATCH_BYTES, batch_entries

    raws = [bytes(1000) + i.to_bytes(4, "big") for i in range(1200)]
    es = batch_entries(raws, 500)
    assert [t for e in es for t in e.txs()] == raws
    assert all(len(e.txs()) <= 500 and len(e.encode()) <= MAX_BATCH_BYTES + 1024 for e in es)
    assert batch_entries(raws[:1], 500) == [Entry("tx", tx=raws[0])]
    assert batch_entries([], 500) == []


def test_garbage_in_the_nats_log_is_a_void_entry(cluster):
    o = NatsOrderer(cluster.urls, "void-test")
    try:
        async def junk() -> None:
            await o._js.publish(subject(o.chain_id), b"\xff not cbor")

        o._call(junk())
        o.append(Entry("txs", batch=(b"a", b"b")))
        assert o.wait_for(2, 10)
        assert [e.kind for e in o.read(0, 2)] == ["void", "txs"]  # the log did not stall
    finally:
        o.close()


def test_vote_board_ids_come_from_signed_bytes_and_old_heights_are_pruned(cluster):
    from gridledger.ledger.block import Vote
    from gridledger.node.process import VoteBoard

    o = NatsOrderer(cluster.urls, "votes-test")
    try:
        board = VoteBoard(o)
        chain = make_chain()
        keys = [(k.alg, k.public_key.raw) for k in chain.validators]
        hh = bytes(32)
        real = Vote(1, hh, 1, chain.validators[1].sign(hh, b"gl/vote"))
        board.publish(Vote(1, hh, 1, b"forged first"))  # same height, index, header
        board.publish(real)
        board.publish(real)  # a re-publication is deduplicated
        assert board.wait(1, lambda vs: len(vs) >= 2, 10)
        votes = board.votes(1)
        assert len(votes) == 2 and real in votes  # the forgery did not squat its id
        assert [board.check(v, keys) for v in votes].count(True) == 1
        for h in range(2, 12):
            board.publish(Vote(h, hh, 0, b"x"))
        assert board.wait(11, lambda vs: len(vs) == 1, 10)
        board.prune(9)
        assert board.heights() == 3 and board.votes(1) == []
        board.publish(Vote(3, hh, 2, b"late"))  # below the floor: not kept
        board.publish(Vote(12, hh, 2, b"new"))
        assert board.wait(12, lambda vs: len(vs) == 1, 10) and board.votes(3) == []
    finally:
        o.close()
