"""A transfer workload on the embedded multi-validator chain.

Used by ``gridledger demo --workload transfers`` and the ledger tests: participants pay each
other every tick, one block per tick; the summary carries the ``ledger`` and ``invariants``
sections of the DESIGN schema.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridledger.ledger.genesis import Genesis, make_genesis
from gridledger.ledger.tx import sign_tx
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.verify import verify_dir
from gridledger.sim.keys import sim_key
from gridledger.sim.ledger_view import LedgerView


@dataclass
class TransferScenario:
    participants: int = 30
    validators: int = 4
    blocks: int = 96
    txs_per_block: int = 20
    seed: int = 7
    chain_id: str = "gridledger-demo"


def build_genesis(sc: TransferScenario) -> tuple[Genesis, list[Any], list[Any]]:
    vkeys = [sim_key(sc.seed, "validator", i) for i in range(sc.validators)]
    pkeys = [sim_key(sc.seed, "participant", i) for i in range(sc.participants)]
    parts: list[dict[str, Any]] = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"],
                                    "name": f"validator-{i}"}
             for i, k in enumerate(vkeys)]
    parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"p{i:03d}",
               "cp": f"cp-{i:03d}", "balance_micro": 100_000_000} for i, k in enumerate(pkeys)]
    return make_genesis(sc.chain_id, parts), vkeys, pkeys


def run_transfers(sc: TransferScenario, out: Path, progress: Any = None) -> dict[str, Any]:
    """Run the workload into ``out`` and return the summary dict."""
    genesis, vkeys, pkeys = build_genesis(sc)
    rng = random.Random(sc.seed)  # client-side choice of payments; not inside execution
    nonces = [0] * len(pkeys)
    net = EmbeddedNetwork(genesis, vkeys, out / "ledger")
    ledger = LedgerView(net.entry.app)
    supply0 = ledger.supply()
    t0 = time.perf_counter()
    txs = rejected = 0
    sold_wh = bought_wh = 0  # from "trade" events; this workload trades no energy
    try:
        for b in range(sc.blocks):
            for _ in range(sc.txs_per_block):
                i, j = rng.sample(range(len(pkeys)), 2)
                raw = sign_tx(pkeys[i], sc.chain_id, nonces[i], "bank/transfer",
                              {"to": pkeys[j].address, "amount_micro": rng.randint(1, 50_000)})
                net.submit(raw, now_s=float(b * 900))
                nonces[i] += 1
            for fb in net.tick((b + 1) * 900):
                txs += len(fb.result.receipts)
                rejected += sum(1 for r in fb.result.receipts if not r.ok)
                for ev in fb.result.block_events:
                    if ev.get("type") == "trade":
                        sold_wh += int(ev["energy_wh"])
                        bought_wh += int(ev["energy_wh"])
            if progress is not None:
                progress(b + 1, sc.blocks)
        elapsed = time.perf_counter() - t0
        roots = {r.hex() for r in net.state_roots()}
        supply = ledger.supply()
        total = sum(ledger.money().values())
        height, root = net.height, bytes(net.entry.app.query("state_root")).hex()
    finally:
        net.close()
    reports = verify_dir(out / "ledger")
    return {
        "scenario": "transfers",
        "seed": sc.seed,
        "ledger": {"blocks": height, "txs": txs, "rejected_txs": rejected,
                   "state_root": root, "validators": sc.validators,
                   "validators_agree": len(roots) == 1,
                   "certificates_ok": bool(reports) and all(r.ok for r in reports),
                   "stores": [{"path": r.path.name, "ok": r.ok, "blocks": r.blocks,
                               "reason": r.reason} for r in reports]},
        "invariants": {"money_conserved": supply == supply0 == total,
                       "energy_balanced": sold_wh == bought_wh},
        "timings": {"run_s": round(elapsed, 3), "tx_per_s": round(txs / elapsed, 1) if elapsed else 0.0},
    }
