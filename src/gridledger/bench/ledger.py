"""``gridledger bench ledger``: raw ML-DSA-65 verification rate vs end-to-end ledger rate.

In one run: (1) raw ML-DSA-65 verifications per second on one core; (2) signed transfers per
second through admission, ordering, execution and commit (SQLite, certificates) with 1
validator, and (3) with 4 in-process validators, where validators 1..3 check signatures in a
process pool. Transactions are signed beforehand (signing is the client's cost); each
validator checks each signature once. Target: (2) >= 50 % of (1).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from gridledger.crypto.sig import verify_signature
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.tx import TX_CONTEXT, decode_tx, sign_tx
from gridledger.node.admission import QuotaPolicy
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.sigpool import SigPool
from gridledger.sim.keys import sim_key

CHAIN = "bench"


def _workload(n_senders: int, n_txs: int, n_validators: int) -> tuple[Any, list[Any], list[bytes]]:
    vkeys = [sim_key(1, "bench-validator", i) for i in range(n_validators)]
    ukeys = [sim_key(1, "bench-user", i) for i in range(n_senders)]
    parts: list[dict[str, Any]] = [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"]}
                                   for k in vkeys]
    parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "cp": f"cp{i}",
               "balance_micro": 10**12} for i, k in enumerate(ukeys)]
    genesis = make_genesis(CHAIN, parts)
    raws = [sign_tx(ukeys[i % n_senders], CHAIN, i // n_senders, "bank/transfer",
                    {"to": ukeys[(i + 1) % n_senders].address, "amount_micro": 1})
            for i in range(n_txs)]
    return genesis, vkeys, raws


def bench_raw_verify(raws: list[bytes], pk_of: dict[bytes, bytes]) -> tuple[float, float]:
    """(verifications per wall second, per CPU second) on one core."""
    txs = [decode_tx(r) for r in raws]
    items = [(pk_of[t.sender], t.signing_bytes, t.sig) for t in txs]
    t0, c0 = time.perf_counter(), time.process_time()
    for pk, msg, sig in items:
        assert verify_signature("ml-dsa-65", pk, msg, sig, TX_CONTEXT)
    return len(items) / (time.perf_counter() - t0), len(items) / (time.process_time() - c0)


def bench_chain(n_validators: int, n_txs: int, batch: int = 500) -> tuple[float, float]:
    """(tx per wall second, tx per CPU second of this process)."""
    genesis, vkeys, raws = _workload(200, n_txs, n_validators)
    with tempfile.TemporaryDirectory() as d:
        pool = SigPool() if n_validators > 1 else None
        if pool is not None:
            pool.verify_many([])  # start workers before timing
            pool._executor().submit(int).result()
        net = EmbeddedNetwork(genesis, vkeys, Path(d), sig_pool=pool,
                              max_block_txs=batch, snapshot_every=0,
                              quota=QuotaPolicy(rate_per_s=1e9, burst=1e9),
                              mempool_capacity=len(raws) + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        for k in range(0, len(raws), batch):
            res = net.submit_many(raws[k:k + batch], now_s=float(k))
            assert all(not hasattr(r, "rule") for r in res), [getattr(r, "rule", "") for r in res][:3]
            for fb in net.tick(k + 1):
                done += sum(1 for r in fb.result.receipts if r.ok)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert done == len(raws) and len(set(net.state_roots())) == 1
        net.close()
        if pool is not None:
            pool.close()
    return len(raws) / elapsed, len(raws) / cpu


def run(quick: bool = False) -> dict[str, Any]:
    n_txs = 2000 if quick else 6000
    genesis, _, raws = _workload(200, n_txs, 1)
    pk_of = {}
    for p in genesis.doc["participants"]:
        from gridledger.crypto.sig import address_of

        pk_of[address_of(p["alg"], p["pk"])] = p["pk"]
    # Interleave the raw and end-to-end runs and keep each one's best, so a burst of load
    # from other jobs on this shared machine hits both sides alike.
    raw_wall = raw_cpu = one_wall = one_cpu = 0.0
    for _ in range(2):
        rw, rc = bench_raw_verify(raws, pk_of)
        ow, oc = bench_chain(1, n_txs)
        raw_wall, raw_cpu = max(raw_wall, rw), max(raw_cpu, rc)
        one_wall, one_cpu = max(one_wall, ow), max(one_cpu, oc)
    four_wall, _ = bench_chain(4, n_txs)
    return {
        "txs": n_txs,
        "mldsa65_verify_per_s": round(raw_wall, 1),
        "tx_per_s_1_validator": round(one_wall, 1),
        "tx_per_s_4_validators": round(four_wall, 1),
        "ratio_1_validator_to_raw_verify": round(one_wall / raw_wall, 3),
        # CPU-time rates are immune to other processes on a shared machine: this is the
        # figure the 50 % target is checked on
        "mldsa65_verify_per_cpu_s": round(raw_cpu, 1),
        "tx_per_cpu_s_1_validator": round(one_cpu, 1),
        "cpu_ratio_1_validator_to_raw_verify": round(one_cpu / raw_cpu, 3),
        "ratio_4_validators_to_raw_verify": round(four_wall / raw_wall, 3),
        "signature_checks_per_tx_4_validators": 4,
    }
