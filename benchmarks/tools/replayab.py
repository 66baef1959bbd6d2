"""Re-execute a stored chain's blocks in-process, for same-machine A/B runs of block
execution (issue 17, eleventh session).

Opens a store read-only, builds the genesis application and applies every block with
``Application.finalize_block`` + ``commit`` — the validators' execution, without
verify-chain's certificate and signature checks and without comparing to the stored headers
(so a tree whose state root *layout* differs can still be timed). Prints one JSON line: this
process's CPU for the whole replay, inside ``State.root``, inside ``State.detach`` /
``attach`` and inside ``run_invariants`` (``inv_cpu_s``), blocks, transactions, final
state keys, SHA-256 over every block's receipts (must equal between A and B: the same
execution) and over every block's state root (equal unless the commitment changed), and
whether the roots equal the stored headers'.

``--aside``: finalize each block as a validator does (``set_aside=True``: the committed
state stays readable until ``commit``), not as a replay of certified blocks does.

usage: PYTHONPATH=<tree>/src python replayab.py STORE [REPEAT] [--aside]
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from typing import Any

from gridledger.ledger import execute
from gridledger.ledger.app import Application
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.state import Detached, State
from gridledger.node.store import BlockStore
from gridledger.node.verify import decode_block


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--aside"]
    aside = "--aside" in sys.argv[1:]
    path = args[0]
    repeat = int(args[1]) if len(args) > 1 else 1
    store = BlockStore(path, readonly=True)
    genesis_raw = bytes(next(v for k, v in store.db.execute("SELECT key, value FROM meta")
                             if k == "genesis"))
    blocks = [(b.height, *decode_block(b.height, b.header, b.cert, b.tx_list), b.receipts)
              for b in store.blocks(1)]
    in_root = [0.0]
    real_root = State.root

    def timed_root(self: State) -> bytes:
        t = time.process_time()
        try:
            return real_root(self)
        finally:
            in_root[0] += time.process_time() - t

    State.root = timed_root  # type: ignore[method-assign]
    in_aside = [0.0]
    real_detach, real_attach = State.detach, State.attach

    def timed_detach(self: State) -> Detached:
        t = time.process_time()
        try:
            return real_detach(self)
        finally:
            in_aside[0] += time.process_time() - t

    def timed_attach(self: State, d: Detached) -> None:
        t = time.process_time()
        try:
            real_attach(self, d)
        finally:
            in_aside[0] += time.process_time() - t

    in_inv = [0.0]
    real_inv = execute.run_invariants

    def timed_inv(state: State, modules: Any, *, scoped: bool = True) -> None:
        t = time.process_time()
        try:
            real_inv(state, modules, scoped=scoped)
        finally:
            in_inv[0] += time.process_time() - t

    execute.run_invariants = timed_inv  # apply_block calls it by its module-level name
    State.detach = timed_detach  # type: ignore[method-assign]
    State.attach = timed_attach  # type: ignore[method-assign]
    runs = []
    for _ in range(repeat):
        in_root[0] = in_aside[0] = in_inv[0] = 0.0
        app = Application(Genesis.decode(genesis_raw))
        rh, sh, same, txs_n = hashlib.sha256(), hashlib.sha256(), True, 0
        t0 = time.process_time()
        for _h, header, _cert, txs, _receipts in blocks:
            got, result = app.finalize_block(txs, header.slot_time, set_aside=aside)
            app.commit()
            rh.update(result.encode_receipts())
            sh.update(got.state_root)
            same = same and got.state_root == header.state_root
            txs_n += len(txs)
        cpu = time.process_time() - t0
        runs.append({"cpu_s": round(cpu, 3), "root_cpu_s": round(in_root[0], 3),
                     "aside_cpu_s": round(in_aside[0], 3),
                     "inv_cpu_s": round(in_inv[0], 3)})
    print(json.dumps({"store": path, "aside": aside, "blocks": len(blocks), "txs": txs_n,
                      "keys": len(app.state.snapshot_items()), "runs": runs,
                      "receipts_sha": rh.hexdigest()[:16], "roots_sha": sh.hexdigest()[:16],
                      "roots_equal_stored": same}))


if __name__ == "__main__":
    main()
