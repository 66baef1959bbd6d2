"""docs/threat-model.md row 7 (node part): a crashed validator does not stop the chain while a quorum
is up; restarted from its own store it catches up to the same root; two crashed of four
halt rather than certify with too few votes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridledger.node.embedded import ChainHalted, EmbeddedNetwork
from gridledger.node.verify import verify_dir
from tests.conftest import make_chain


def _blocks(net: EmbeddedNetwork, chain, start: int, n: int) -> list:
    out = []
    for b in range(start, start + n):
        net.submit(chain.transfer(b % 6, (b + 1) % 6, 10), now_s=b)
        out += net.tick(900 * (b + 1))
    return out


def test_one_crashed_validator_of_four_neither_stops_nor_forks(tmp_path: Path) -> None:
    chain = make_chain(n_validators=4)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    _blocks(net, chain, 0, 2)
    net.crash(2)
    during = _blocks(net, chain, 2, 3)
    assert len(during) == 3 and all(2 not in dict(fb.cert.votes) for fb in during)
    assert net.validators[2].height == 2 < net.height == 5  # it missed three blocks
    v = net.restart(2)
    assert v.height == net.height and len(set(net.state_roots())) == 1
    after = _blocks(net, chain, 5, 2)
    assert all(2 in dict(fb.cert.votes) for fb in after)  # voting again
    net.close()
    assert all(r.ok for r in verify_dir(tmp_path))


def test_two_crashed_of_four_halt(tmp_path: Path) -> None:
    chain = make_chain(n_validators=4)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    _blocks(net, chain, 0, 1)
    net.crash(1)
    net.crash(3)
    with pytest.raises(ChainHalted, match="quorum"):
        _blocks(net, chain, 1, 1)
    net.close()


def test_crash_and_restart_are_checked(tmp_path: Path) -> None:
    chain = make_chain(n_validators=4)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path)
    with pytest.raises(ValueError, match="cannot be crashed"):
        net.crash(0)
    with pytest.raises(ValueError, match="not down"):
        net.restart(1)
    net.close()


def test_a_simulations_stores_skip_the_fsync_and_keep_every_block_across_a_crash(
        tmp_path: Path) -> None:
    """``durable=False`` (the simulator's stores, issue 17): ``synchronous=NORMAL`` in WAL
    mode — no fsync a block, and a crashed (closed) validator still has every committed
    block when it restarts; the node's default stays ``FULL``."""
    chain = make_chain(n_validators=4)
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "sim", durable=False)
    assert [v.store.db.execute("PRAGMA synchronous").fetchone()[0]
            for v in net.live] == [1] * 4          # NORMAL
    _blocks(net, chain, 0, 2)
    net.crash(3)
    _blocks(net, chain, 2, 2)
    v = net.restart(3)
    assert v.store.db.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert v.height == net.height == 4 and len(set(net.state_roots())) == 1
    net.close()
    assert all(r.ok for r in verify_dir(tmp_path / "sim"))
    node = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path / "node")
    assert {v.store.db.execute("PRAGMA synchronous").fetchone()[0] for v in node.live} == {2}
    node.close()
