"""The execution floor of one stored chain (issue 17, sixteenth session).

One full check of the store as a validator or verify-chain makes it (``bench.replay``: every
certificate and signature verified, every block executed, every state root compared; CPU
seconds, with the state roots' and invariants' share), the distinct signatures the chain
carries by algorithm (``bench.scale.chain_check``), and this machine's one-core cost per
signature made and checked. From them, on ``CORES`` cores:

    floor           = (sign_once + (V + 1) * verify_once) / CORES     (issue 17's floor)
    execution_floor = (sign_once + (V + 1) * full_check)  / CORES

``execution_floor / floor`` is the lowest ``wall / floor`` any run of this chain can reach
with this build's block execution, even if everything around the ledger cost nothing.

usage: PYTHONPATH=src python benchmarks/tools/budget.py STORE [FIRST_BLOCKS]
       (FIRST_BLOCKS: also replay only the first N blocks, so that a later day's share is
       the difference: a two-day run's day 2 = all - first 306)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gridledger.bench.scale import chain_check
from gridledger.crypto.sig import SigningKey, verify_signature

V, CORES, SAMPLES, ROUNDS = 4, 2, 300, 3


def per_signature_s(alg: str) -> tuple[float, float]:
    """(CPU seconds to sign, to verify) one ~3 kB message with ``alg``, in this process."""
    key = SigningKey.generate(alg)
    msg = bytes(3000)
    c0 = time.process_time()
    sigs = [key.sign(msg) for _ in range(SAMPLES)]
    c1 = time.process_time()
    for s in sigs:
        assert verify_signature(alg, key.public_key.raw, msg, s)
    return (c1 - c0) / SAMPLES, (time.process_time() - c1) / SAMPLES


def replay(store: Path, blocks: int | None = None) -> dict[str, Any]:
    """``bench.replay`` in a new process (cold: a second replay in one process finds its
    transactions decoded and its records parsed, ~30 % cheaper)."""
    args = [sys.executable, "-m", "gridledger.bench.replay", str(store)]
    out = subprocess.run(args + ([str(blocks)] if blocks else []), check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out))


def main() -> None:
    """Each figure the least of ``ROUNDS`` measurements, interleaved (a shared machine's
    other load only ever adds CPU time)."""
    store = Path(sys.argv[1])
    first_n = int(sys.argv[2]) if len(sys.argv) > 2 else None
    signatures, _ = chain_check(store)
    fulls, firsts, costs = [], [], []
    for _ in range(ROUNDS):
        fulls.append(replay(store))
        if first_n:
            firsts.append(replay(store, first_n))
        costs.append({alg: per_signature_s(alg) for alg in signatures})
    full = min(fulls, key=lambda r: r["cpu_s"])
    first = min(firsts, key=lambda r: r["cpu_s"]) if firsts else None
    cost = {a: (min(c[a][0] for c in costs), min(c[a][1] for c in costs)) for a in signatures}
    sign = sum(n * cost[a][0] for a, n in signatures.items())
    verify = sum(n * cost[a][1] for a, n in signatures.items())
    floor = (sign + (V + 1) * verify) / CORES
    execution = (sign + (V + 1) * full["cpu_s"]) / CORES
    print(json.dumps({
        "replay": full, "replay_cpu_s_rounds": [r["cpu_s"] for r in fulls],
        "first_blocks": first, "first_cpu_s_rounds": [r["cpu_s"] for r in firsts],
        "signatures": signatures,
        "per_signature_ms": {a: [round(x * 1e3, 3) for x in c] for a, c in cost.items()},
        "sign_once_cpu_s": round(sign, 2), "verify_once_cpu_s": round(verify, 2),
        "floor_s": round(floor, 2), "execution_floor_s": round(execution, 2),
        "floor_bound": round(execution / floor, 2)}))


if __name__ == "__main__":
    main()
