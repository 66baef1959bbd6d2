"""A long in-process run keeps only the last ``RECENT_BLOCKS`` finalized blocks in memory
(issue 17: memory flat after the first day); counts cover every block, the stores hold all."""

from pathlib import Path

import pytest

from gridledger.node import embedded
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.store import BlockStore
from tests.conftest import make_chain


def test_only_recent_blocks_stay_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "RECENT_BLOCKS", 3)
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    for b in range(7):
        net.submit(chain.transfer(b % 6, (b + 2) % 6, 100 + b), now_s=b)
        net.tick(900 * (b + 1))
    heights = [fb.header.height for fb in net.finalized]
    assert net.finalized_count == net.height >= 7
    assert heights == list(range(net.height - 2, net.height + 1))  # the last three
    assert net.cert_votes >= 3 * net.height  # a quorum of 4 validators signed each block
    net.close()
    store = BlockStore(sorted(tmp_path.glob("*.sqlite"))[0], readonly=True)
    try:
        assert [blk.height for blk in store.blocks(1)] == list(range(1, net.height + 1))
    finally:
        store.close()


def test_the_ordered_log_keeps_only_what_is_not_cut_yet(tmp_path: Path) -> None:
    """The embedded network is its log's one reader: entries cut into blocks (in the
    stores) leave memory, so a long run's log is a window; positions stay absolute."""
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    held = []
    for b in range(12):
        net.submit(chain.transfer(b % 6, (b + 2) % 6, 100 + b), now_s=b)
        net.tick(900 * (b + 1))
        held.append(net.orderer.buffered())  # type: ignore[attr-defined]
    assert net.height >= 12
    assert net.orderer.length() == net.cutter.pos + max(held[-1], 0) >= 12 * 5  # 1 tx + 4 ticks
    assert max(held) <= 8  # at most the uncut tail, never the run
    assert net.orderer.read(0, 10) == []  # forgotten: the blocks are in the stores
    net.close()


def test_a_shared_local_log_is_kept_whole() -> None:
    """Without ``sole_reader`` (several in-process readers share one log) nothing is
    forgotten: one reader's position says nothing about the others'."""
    from gridledger.node.orderer import Entry, LocalOrderer

    log = LocalOrderer()
    log.append_many([Entry("tx", tx=bytes([i])) for i in range(5)])
    log.forget_before(4)
    assert [e.tx for e in log.read(0, 10)] == [bytes([i]) for i in range(5)]
    sole = LocalOrderer(sole_reader=True)
    assert sole.append_many([Entry("tx", tx=bytes([i])) for i in range(5)]) == [0, 1, 2, 3, 4]
    sole.forget_before(3)
    assert sole.read(0, 10) == [] and [e.tx for e in sole.read(3, 10)] == [b"\x03", b"\x04"]
    assert sole.length() == 5 and sole.append(Entry("tx", tx=b"\x05")) == 5
