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
