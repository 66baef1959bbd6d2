"""Stored chains the node tests read (audit bundles, verify-chain)."""

from pathlib import Path

from gridledger.node.embedded import EmbeddedNetwork
from tests.conftest import make_chain


def five_block_chain(d: Path, seed: int = 1) -> Path:
    """Four validators' stores in ``d`` after five blocks of two transfers each (snapshots
    every 2 blocks); returns ``d``. Another ``seed``: another chain (genesis keys)."""
    chain = make_chain(seed=seed)
    net = EmbeddedNetwork(chain.genesis, chain.validators, d, snapshot_every=2)
    for b in range(5):
        net.submit(chain.transfer(b % 6, (b + 2) % 6, 100 + b), now_s=b)
        net.submit(chain.transfer((b + 1) % 6, (b + 3) % 6, 7), now_s=b)
        net.tick(900 * (b + 1))
    net.close()
    return d
