"""Replay cost of a stored chain: what verify-chain (and every validator) pays per block.

Replays blocks ``1..N`` of one ledger store exactly as ``verify-chain`` does (strict decoding,
certificate, execution with every signature checked, state root and receipts compared) and
reports the CPU seconds, with the share spent computing state roots and running module
invariants. Run the same command with ``PYTHONPATH`` pointing at another checkout's ``src``
to compare two versions side by side on the same blocks (issue 19: privacy mode's cost).

Run: ``python -m gridledger.bench.replay STORE [BLOCKS]``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridledger.ledger import execute, state
from gridledger.ledger.app import Application
from gridledger.ledger.genesis import Genesis
from gridledger.node.store import BlockStore
from gridledger.node.verify import check_certified, decode_block, replay_block


def replay(path: Path, blocks: int | None = None) -> dict[str, Any]:
    """Replay ``blocks`` blocks (default: all) of the store at ``path``; CPU seconds, in all
    and in ``State.root`` / ``run_invariants``. Raises ``BlockFault`` if a block does not
    replay."""
    spent = {"state_root_s": 0.0, "invariants_s": 0.0}

    def timed(f: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return f(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - t
        return wrapper

    root, invariants = state.State.root, execute.run_invariants
    state.State.root = timed(root, "state_root_s")  # type: ignore[method-assign]
    execute.run_invariants = timed(invariants, "invariants_s")
    store = BlockStore(path, readonly=True)
    try:
        genesis = Genesis.decode(bytes(store.db.execute(
            "SELECT value FROM meta WHERE key = 'genesis'").fetchone()[0]))
        app = Application(genesis)
        t0, n = time.process_time(), 0
        for blk in store.blocks(1):
            if blocks is not None and blk.height > blocks:
                break
            header, cert, txs = decode_block(blk.height, blk.header, blk.cert, blk.tx_list)
            check_certified(app.chain_id, app.last_hash, app.validator_keys(), header, cert, txs)
            replay_block(app, header, txs, blk.receipts)
            n += 1
        cpu = time.process_time() - t0
        return {"store": str(path), "blocks": n, "cpu_s": round(cpu, 2),
                **{k: round(v, 2) for k, v in spent.items()},
                "state_keys": len(app.state), "state_root": app.state.root().hex()}
    finally:
        state.State.root = root  # type: ignore[method-assign]
        execute.run_invariants = invariants
        store.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(replay(Path(args[0]), int(args[1]) if len(args) > 1 else None), indent=2))
