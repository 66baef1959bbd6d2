"""The embedded orderer and NATS JetStream (3 servers, R=3) pass the same suite."""

from __future__ import annotations

import time

import pytest

from gridledger.errors import MalformedEncoding
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


def _tick(chain, i: int, time_ms: int):
    from gridledger.node.ticks import sign_tick

    return Entry("tick", tick=sign_tick(chain.validators[i], chain.genesis.chain_id, time_ms))


def _keys(chain):
    return [(k.alg, k.public_key.raw) for k in chain.validators]


def test_nats_deduplicates_by_content(cluster):
    o = NatsOrderer(cluster.urls, "dedup-test")
    try:
        chain = make_chain()
        raw = chain.transfer(0, 1, 5)
        p1 = o.append(Entry("tx", tx=raw))
        p2 = o.append(Entry("tx", tx=raw))  # same tx through another validator
        tick = _tick(chain, 0, 900_000)
        t1 = o.append(tick)
        t2 = o.append(tick)  # the same signed tick re-published after a lost ack
        t3 = o.append(_tick(chain, 1, 900_000))  # another validator's tick: its own entry
        assert p1 == p2 and t1 == t2 and t1 == p1 + 1 and t3 == t1 + 1
        assert o.wait_for(3) and o.length() == 3
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
    chain = make_chain()
    for e in (Entry("tx", tx=b"a"), _tick(chain, 0, 7), Entry("txs", batch=(b"a", b"b"))):
        assert Entry.decode(e.encode()) == e
    from gridledger.ledger import codec

    good = _tick(chain, 0, 7).tick.to_obj()
    for bad in (["txs", [b"a", 5]], ["tick", "x"], ["tick", 7], ["tx", 5], ["blob", b""], ["txs"],
                ["tick", {**good, "time_ms": True}], ["tick", {**good, "time_ms": -1}],
                ["tick", {**good, "signer": b"short"}], ["tick", {**good, "extra": 1}]):
        with pytest.raises(MalformedEncoding):
            Entry.decode(codec.encode(bad))
    assert Entry("void").txs() == () and _tick(chain, 0, 1).txs() == ()


def test_cutter_keeps_batches_whole_and_closes_at_max_or_ticks():
    from gridledger.node.orderer import BlockCutter

    chain = make_chain()
    o = LocalOrderer()
    for e in (Entry("txs", batch=_txs(3)), Entry("tx", tx=b"t3"), Entry("txs", batch=_txs(3, 4)),
              Entry("txs", batch=_txs(2, 7)), _tick(chain, 0, 5000), _tick(chain, 1, 5000),
              Entry("txs", batch=_txs(9, 9))):
        o.append(e)
    c = BlockCutter(chain.genesis.chain_id, max_txs=5)
    keys = _keys(chain)
    b1 = c.next_block(o, keys)  # 3 + 1 = 4; the next batch (3) would overflow: it starts block 2
    assert (b1.txs, b1.log_start, b1.log_end) == ([*_txs(3), b"t3"], 0, 2)
    b2 = c.next_block(o, keys)  # 3 + 2 = 5 = max
    assert (b2.txs, b2.log_end) == ([*_txs(3, 4), *_txs(2, 7)], 4)
    b3 = c.next_block(o, keys)  # two validators' ticks (f + 1) close an empty block
    assert (b3.txs, b3.slot_time, b3.log_end) == ([], 5, 6)
    b4 = c.next_block(o, keys)  # a batch larger than max_txs is a block of its own
    assert (len(b4.txs), b4.log_end) == (9, 7) and c.next_block(o, keys) is None


def test_batch_entries_respect_count_and_bytes():
    from gridledger.node.orderer import MAX_BATCH_BYTES, batch_entries

    raws = [bytes(1000) + i.to_bytes(4, "big") for i in range(1200)]
    es = batch_entries(raws, 500)
    assert [t for e in es for t in e.txs()] == raws
    assert all(len(e.txs()) <= 500 and len(e.encode()) <= MAX_BATCH_BYTES + 1024 for e in es)
    assert batch_entries(raws[:1], 500) == [Entry("tx", tx=raws[0])]
    assert batch_entries([], 500) == []


def _publish_raw(urls, subj: str, data: bytes) -> None:
    """Publish bytes as any client allowed on the subject could (no orderer involved)."""
    import asyncio

    import nats

    async def go() -> None:
        nc = await nats.connect(servers=urls)
        try:
            await nc.jetstream().publish(subj, data)
        finally:
            await nc.close()

    asyncio.run(go())


def test_garbage_in_the_nats_log_is_a_void_entry(cluster):
    o = NatsOrderer(cluster.urls, "void-test")
    try:
        _publish_raw(cluster.urls, subject(o.chain_id), b"\xff not cbor")
        o.append(Entry("txs", batch=(b"a", b"b")))
        assert o.wait_for(2, 10)
        assert [e.kind for e in o.read(0, 2)] == ["void", "txs"]  # the log did not stall
    finally:
        o.close()


@pytest.mark.parametrize("kind", ["local", "nats"])
def test_vote_board_keeps_only_valid_votes_of_open_heights(cluster, kind):
    from gridledger.ledger.block import Header, Vote, sign_vote
    from gridledger.node.nats_orderer import vote_subject
    from gridledger.node.votes import VoteBoard

    chain = make_chain()
    cid = chain.genesis.chain_id
    o = LocalOrderer() if kind == "local" else NatsOrderer(cluster.urls, cid)
    try:
        board = VoteBoard(o, cid)
        keys = _keys(chain)

        def header(h: int) -> Header:
            return Header(cid, h, bytes(32), 0, bytes(32), h.to_bytes(32, "big"), bytes(32), bytes(32))

        real = sign_vote(chain.validators[1], header(1), 1)
        board.publish(Vote(cid, 1, real.header_hash, 1, b"forged first"))  # same height, index, header
        board.publish(real)
        board.publish(real)  # a re-publication is deduplicated
        board.publish(Vote(cid, 1, real.header_hash, 2, real.sig))  # relabelled index
        nxt = sign_vote(chain.validators[0], header(2), 0)
        board.publish(Vote(cid, 1, nxt.header_hash, 0, nxt.sig))  # relabelled height
        if kind == "nats":  # garbage on the subject, and a vote sent to another height's subject
            _publish_raw(cluster.urls, vote_subject(cid, 1), b"\xff junk")
            _publish_raw(cluster.urls, vote_subject(cid, 1), nxt.encode())
        board.open(1, keys)  # past votes are delivered on open
        assert board.wait(1, lambda vs: len(vs) >= 1, 10)
        assert board.wait(1, lambda vs: False, 0.5) is False  # let stragglers arrive
        assert board.votes(1) == [real]  # only the authentic vote is kept
        assert board.rejected >= (3 if kind == "local" else 5)  # a copy may arrive twice
        # far-future heights are never read into memory; a bounded window of open heights
        for h in range(2, 40):
            board.publish(sign_vote(chain.validators[0], header(h), 0))
        board.publish(sign_vote(chain.validators[0], header(10**6), 0))
        for h in range(2, 12):
            board.open(h, keys)
            board.close_below(h - 1)
            assert board.wait(h, lambda vs: len(vs) == 1, 10)
        assert board.heights() == 2 and board.held() == 2 and board.votes(1) == []
        # an equivocator: two headers kept (the evidence), a third adds nothing
        for k in range(3):
            board.publish(sign_vote(chain.validators[3], Header(cid, 11, bytes(32), k, bytes(32),
                                                                 bytes(32), bytes(32), bytes(32)), 3))
        assert board.wait(11, lambda vs: len(vs) == 3, 10)
        assert board.wait(11, lambda vs: len(vs) > 3, 0.5) is False
    finally:
        board.close()
        o.close()


def test_a_failed_subscription_is_retried_on_the_next_open():
    """A NATS leader election can make following a height time out; the board must not
    remember the height as followed (it would wait for its votes forever)."""
    from gridledger.ledger.block import Header, sign_vote
    from gridledger.node.votes import VoteBoard

    class Flaky(LocalOrderer):
        fail = True

        def follow_votes(self, height, deliver):
            if self.fail:
                self.fail = False
                raise TimeoutError("consumer create timed out")
            return super().follow_votes(height, deliver)

    chain = make_chain()
    cid = chain.genesis.chain_id
    o = Flaky()
    board = VoteBoard(o, cid)
    vote = sign_vote(chain.validators[0], Header(cid, 1, bytes(32), 0, bytes(32), bytes(32),
                                                 bytes(32), bytes(32)), 0)
    board.publish(vote)
    with pytest.raises(TimeoutError):
        board.open(1, _keys(chain))
    board.open(1, _keys(chain))
    assert board.votes(1) == [vote]


def test_nats_log_is_held_in_a_bounded_window(cluster):
    """Memory per validator does not grow with the chain or a flood of entries: the orderer
    fetches the log into a window and forgets what the node has cut."""
    writer = NatsOrderer(cluster.urls, "window-test")
    reader = NatsOrderer(cluster.urls, "window-test", max_buffered=50)
    try:
        writer.append_many([Entry("tx", tx=b"%d" % i) for i in range(300)])
        assert reader.wait_for(50, 10)
        assert not reader.wait_for(51, 1.0)  # the window is full: fetching waits
        assert reader.buffered() == 50 and reader.read(0, 1)[0].tx == b"0"
        seen = []
        pos = 0
        while pos < 300:
            assert reader.wait_for(pos + 1, 10)
            got = reader.read(pos, 1000)
            seen += [e.tx for e in got]
            pos += len(got)
            reader.forget_before(pos)  # as a node does once it has cut these entries
            assert reader.buffered() <= 50
        assert seen == [b"%d" % i for i in range(300)] and reader.read(0, 1) == []
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("poll", [True, False])
def test_a_silent_vote_consumer_is_covered_by_the_stored_votes_poll(cluster, monkeypatch, poll):
    """After a NATS server dies, the push consumer of new votes can stay silent for seconds
    (until nats-py remakes it elsewhere) while every vote a height needs is stored: a height
    followed longer than ``vote_poll_s`` reads its stored votes again. Here the push consumer
    delivers nothing at all; with the poll removed (``vote_poll_s=None``) a vote published
    after the height was opened never arrives — the chain stalled at one height."""
    global _n
    _n += 1
    cid = f"silent-{_n}"
    writer = NatsOrderer(cluster.urls, cid)

    async def deaf(self, msg):  # the push consumer is lost: nothing it would deliver arrives
        return None

    monkeypatch.setattr(NatsOrderer, "_on_vote", deaf)
    follower = NatsOrderer(cluster.urls, cid, vote_poll_s=0.3 if poll else None)
    try:
        got: list[bytes] = []
        follower.follow_votes(5, got.append)
        assert got == []  # nothing stored yet
        writer.publish_vote(5, b"vote of height 5")
        writer.publish_vote(6, b"vote of height 6")  # a height nobody follows
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not got:
            time.sleep(0.05)
        if poll:
            assert b"vote of height 5" in got and b"vote of height 6" not in got
        else:
            assert got == []
    finally:
        follower.close()
        writer.close()


def test_a_lost_connection_is_said_and_so_is_its_return(tmp_path):
    """A validator whose ordering cluster went away waited for it without a word (found:
    a 4-validator network halted with nothing in any validator's output)."""
    c = NatsCluster(tmp_path / "one", size=1).start()
    said: list[str] = []
    o = None
    try:
        o = NatsOrderer(c.urls, "link-test", replicas=1, on_link=said.append)
        assert o.lost_at is None and said == []
        c.servers[0].kill()
        deadline = time.monotonic() + 15
        while o.lost_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert o.lost_at is not None and len(said) == 1
        assert "lost the NATS connection" in said[0] and c.urls[0] in said[0], said
        c.servers[0].start()
        deadline = time.monotonic() + 20
        while o.lost_at is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert o.lost_at is None and len(said) == 2, said
        assert said[1].startswith(f"reconnected to {c.urls[0]} after "), said
    finally:
        if o is not None:
            o.close()
        c.stop()
    assert len(said) == 2  # closing is not a lost connection


CLOSE_WITHOUT_SERVER = """
import gc, sys, time
from pathlib import Path
from gridledger.node.nats_cluster import NatsCluster
from gridledger.node.nats_orderer import NatsOrderer
c = NatsCluster(Path(sys.argv[1]), size=1).start()
try:
    o = NatsOrderer(c.urls, "close-test", replicas=1)
    c.servers[0].kill()
    time.sleep(1.0)
    o.close()
    del o
    gc.collect()
finally:
    c.stop()
print("closed")
"""


def test_closing_without_a_server_leaves_no_task_behind(tmp_path):
    """A validator stopped while its cluster was down printed "Task was destroyed but it
    is pending!" and "Event loop is closed" tracebacks: the client's close() raised, and
    the orderer's own tasks were never cancelled."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CLOSE_WITHOUT_SERVER, str(tmp_path / "c")],
                         capture_output=True, text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0 and "closed" in out.stdout, out.stdout + out.stderr
    assert "Task was destroyed" not in out.stderr and "Event loop is closed" not in out.stderr, \
        out.stderr


def test_replicas_a_lone_server_cannot_hold_are_refused_at_once(tmp_path):
    """`node start` without --replicas 1 on `node cluster --size 1` retried for 60 s before
    saying "replicas > 1 not supported"; no retry can change that: at once, naming the flag."""
    from gridledger.errors import ConfigError

    c = NatsCluster(tmp_path / "lone", size=1).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match=r"start the validator with --replicas 1"):
            NatsOrderer(c.urls, "lone-test", replicas=3)
        assert time.monotonic() - t0 < 15
    finally:
        c.stop()
