"""Runs an embedded chain forever (until killed): ``python -m tests.node.crash_worker DIR``."""

import sys
from pathlib import Path

from gridledger.node.embedded import EmbeddedNetwork
from tests.conftest import make_chain


def main(d: str) -> None:
    chain = make_chain()
    net = EmbeddedNetwork(chain.genesis, chain.validators, Path(d), snapshot_every=3)
    start = net.height
    # resume nonces from the ledger so a restarted worker keeps producing valid txs
    for u in chain.users:
        chain.nonces[u.address] = net.entry.app.query(f"nonce/{u.address.hex()}")
    b = start
    while True:
        for k in range(4):
            net.submit(chain.transfer((b + k) % 6, (b + k + 1) % 6, 1 + k), now_s=float(b))
        net.tick(900 * (b + 1))
        b += 1
        print(net.height, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
