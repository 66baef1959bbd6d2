"""A batch larger than a block, ticked at time t, is cut into blocks that all carry t
(``EmbeddedNetwork.tick_stamped``). ``tick`` puts the transactions ahead of the ticks, and
the cutter closes a full block at the previous block's time: the simulator's readings of a
slot, sent after it ended, executed as if before it (``reading-early``) whenever the step's
block held more than a block (100 members: every reading of 17:45, behind the next day's
pseudonym registrations)."""

from pathlib import Path

from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.orderer import Entry
from tests.conftest import make_chain

CAP = 5


def _net(tmp_path: Path) -> tuple[EmbeddedNetwork, object]:
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, max_block_txs=CAP)
    net.submit(chain.transfer(0, 1, 1), now_s=0)
    net.tick(900)
    return net, chain


def _batch(net: EmbeddedNetwork, chain: object, n: int) -> None:
    for k in range(n):
        net.submit(chain.transfer(k % 6, (k + 1) % 6, 10 + k), now_s=1000)  # type: ignore[attr-defined]


def test_plain_tick_stamps_a_full_block_with_the_previous_time(tmp_path: Path) -> None:
    """What the simulator ran into: the overflow's blocks carry the previous tick's time."""
    net, chain = _net(tmp_path)
    _batch(net, chain, 3 * CAP)
    blocks = net.tick(1800)
    assert sum(len(fb.result.receipts) for fb in blocks) == 3 * CAP
    # three full blocks at the previous time, then the ticks close an empty one at 1800
    assert [fb.header.slot_time for fb in blocks if fb.result.receipts] == [900] * 3
    net.close()


def test_every_block_of_an_overflowing_batch_carries_the_tick_time(tmp_path: Path) -> None:
    net, chain = _net(tmp_path)
    _batch(net, chain, 3 * CAP + 2)
    blocks = net.tick_stamped(1800)
    assert sum(len(fb.result.receipts) for fb in blocks) == 3 * CAP + 2
    assert all(r.ok for fb in blocks for r in fb.result.receipts)
    assert {fb.header.slot_time for fb in blocks} == {1800}
    assert all(0 < len(fb.result.receipts) < CAP for fb in blocks)
    assert len(set(net.state_roots())) == 1
    net.close()


def test_entries_put_in_the_log_straight_count_against_the_first_block(tmp_path: Path) -> None:
    """A relay that bypasses admission (the replay scenario) appends to the log itself:
    those transactions share the first block, which still closes at the tick's time."""
    net, chain = _net(tmp_path)
    straight = [chain.transfer(5, 4, 1 + k) for k in range(CAP - 2)]  # type: ignore[attr-defined]
    _batch(net, chain, CAP)
    net.orderer.append_many([Entry("tx", tx=raw) for raw in straight])
    blocks = net.tick_stamped(1800)
    assert {fb.header.slot_time for fb in blocks} == {1800}
    assert sum(len(fb.result.receipts) for fb in blocks) == 2 * CAP - 2
    net.close()


def test_a_batch_that_fits_is_one_tick(tmp_path: Path) -> None:
    net, chain = _net(tmp_path)
    _batch(net, chain, CAP - 1)
    h = net.height
    blocks = net.tick_stamped(1800)
    assert [fb.header.height for fb in blocks] == [h + 1]
    assert blocks[0].header.slot_time == 1800 and len(blocks[0].result.receipts) == CAP - 1
    net.close()


def test_the_api_service_stamps_a_burst_with_the_tick_time(tmp_path: Path) -> None:
    """``gridledger serve``'s network (``EmbeddedService.tick``) cuts a burst submitted
    through the API between two ticks the same way."""
    from gridledger.node.service import EmbeddedService

    net, chain = _net(tmp_path)
    svc = EmbeddedService(net)
    _batch(net, chain, 2 * CAP + 1)
    blocks = svc.tick(1800)
    assert sum(len(fb.result.receipts) for fb in blocks) == 2 * CAP + 1
    assert {fb.header.slot_time for fb in blocks} == {1800}
    net.close()


def test_blocks_to_close_bounds_what_tick_stamped_closes(tmp_path: Path) -> None:
    """``blocks_to_close`` (the simulator holds the validators' votes until the last tick
    from which they still land in time): never fewer than the blocks the tick closes."""
    net, chain = _net(tmp_path)
    t = 1800
    for n in (0, CAP - 1, CAP, 3 * CAP + 2):
        _batch(net, chain, n)
        bound = net.blocks_to_close()
        assert 1 <= len(net.tick_stamped(t)) <= bound == max(1, -(-n // (CAP - 1)))
        t += 900
    assert net.blocks_to_close() == 1  # nothing waiting: the tick's own block
    straight = [chain.transfer(5, 4, 1 + k) for k in range(2)]  # type: ignore[attr-defined]
    net.orderer.append_many([Entry("tx", tx=raw) for raw in straight])
    assert net.blocks_to_close() == 3  # a relay's batches may each start a block
    net.close()
