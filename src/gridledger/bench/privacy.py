"""``gridledger bench privacy``: one secure-aggregation round vs the same sum with Paillier.

For each size (100, 1,000, 10,000 meters; quick: 100 and 1,000) with 10 % of meters dropping
out, in one process:

* **secure aggregation** (``gridledger.privacy.aggregation``): every surviving meter's
  clip + Shamir sharing + AES-256-GCM sealing, every aggregator's decryption, share check
  (signed), its own derivation of the inclusion from all signed checks and its partial sum
  (signed), and the verified reconstruction from all 7 partials (a total needs 2t - 1 = 5
  that agree) with the head-meter check. Committee: 7 aggregators, threshold 3. Reported
  as ``secure_aggregation_s`` (total compute, all parties, one core).
* **epoch setup**, reported apart (``epoch_setup_s``): one ML-KEM-768 encapsulation per
  meter and aggregator, the meter's ML-DSA-44 signature on its grant, and the aggregators'
  verification and decapsulation. It runs once per epoch (a day = 96 rounds).
* **Paillier** (``phe``, 2048-bit modulus, its default): every surviving meter encrypts its
  reading, the ciphertexts are added homomorphically and the key holder decrypts once.
  Key generation is excluded, as our epoch setup is. ``gmpy2``, if installed, speeds
  ``phe`` up about 8x; the backend is reported.

Not in either figure: the ML-DSA signature a meter puts on the ledger transaction that
carries its submission (both schemes pay it); reported per meter as
``meter_tx_signature_s_per_meter``.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

from gridledger.crypto.kem import KemKey
from gridledger.crypto.sig import SigningKey
from gridledger.privacy.aggregation import (
    Aggregator,
    AggregatorKeys,
    Committee,
    accept_grants,
    combine_partials,
    establish_session,
    seal_reading,
)
from gridledger.privacy.dp import ClipBound

AGGREGATORS = 7
THRESHOLD = 3
DROPOUT = 0.1
CLIP = ClipBound(-20_000, 20_000)


def _seed(*parts: object) -> bytes:
    return hashlib.sha3_256(repr(parts).encode()).digest()


def _secure_aggregation(n_meters: int, rng: random.Random) -> dict[str, Any]:
    aggs = [AggregatorKeys(f"agg{j}", SigningKey.from_seed("ml-dsa-65", _seed("agg", j)),
                           KemKey(_seed("agg-kem", j) * 2)) for j in range(AGGREGATORS)]
    committee = Committee("bench-feeder", 1, THRESHOLD, tuple(a.info() for a in aggs))
    devices = {f"m{i:05d}": SigningKey.from_seed("ml-dsa-44", _seed("meter", i))
               for i in range(n_meters)}
    registry = {m: k.public_key for m, k in devices.items()}
    for k in devices.values():
        _ = k._key  # key expansion from the seed is provisioning, not protocol work

    t0 = time.perf_counter()
    sessions, grants = {}, []
    for m, k in devices.items():
        s, g = establish_session(m, committee, k)
        sessions[m] = s
        grants.append(g)
    agg_sessions = [Aggregator(accept_grants(a, committee, grants, registry)) for a in aggs]
    setup_s = time.perf_counter() - t0

    readings = {m: rng.randint(-3_000, 8_000) for m in devices}
    dropped = set(rng.sample(sorted(devices), int(n_meters * DROPOUT)))
    survivors = [m for m in sorted(devices) if m not in dropped]
    expected = sum(readings[m] for m in survivors)

    t0 = time.perf_counter()
    submissions = [seal_reading(sessions[m], 7, readings[m], CLIP) for m in survivors]
    checks = [a.check(7, submissions) for a in agg_sessions]
    signed = [a.partial(7, checks) for a in agg_sessions]
    partials, inclusion = [p for p, _ in signed], signed[0][1]
    result = combine_partials(committee, inclusion, partials, head_meter_wh=expected,
                              tolerance_wh=0)
    round_s = time.perf_counter() - t0
    if result.total_wh != expected or len(result.included_meters) != len(survivors):
        raise AssertionError("secure aggregation returned a wrong total")

    sample = survivors[:50]
    t0 = time.perf_counter()
    for m, sub in zip(sample, submissions, strict=False):
        devices[m].sign(sub.digest(), b"gl/bench/reading-tx")
    sig_per_meter = (time.perf_counter() - t0) / max(len(sample), 1)
    return {"round_s": round_s, "setup_s": setup_s, "total_wh": result.total_wh,
            "expected_wh": expected, "survivors": len(survivors),
            "values": [readings[m] for m in survivors], "sig_per_meter": sig_per_meter}


def _paillier(values: list[int], public: Any, private: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    ciphertexts = [public.encrypt(v) for v in values]
    acc = ciphertexts[0]
    for c in ciphertexts[1:]:
        acc = acc + c
    total = int(private.decrypt(acc))
    return time.perf_counter() - t0, total


def run(quick: bool = False) -> dict[str, Any]:
    """Measure both schemes at each size; returns ``{"sizes": [...], ...}`` (JSON-able)."""
    sizes = [100, 1_000] if quick else [100, 1_000, 10_000]
    rng = random.Random(2024)
    try:
        from phe import paillier

        t0 = time.perf_counter()
        public, private = paillier.generate_paillier_keypair(n_length=2048)
        keygen_s: float | None = time.perf_counter() - t0
        paillier_error = None
        try:
            import gmpy2  # noqa: F401

            backend = "gmpy2"
        except ImportError:
            backend = "python"
    except ImportError as exc:  # the peer is optional: say so instead of failing
        public = private = None
        keygen_s, paillier_error, backend = None, f"phe unavailable: {exc}", "none"

    rows = []
    for n in sizes:
        sa = _secure_aggregation(n, rng)
        row: dict[str, Any] = {
            "meters": n, "dropout": DROPOUT, "submitted": sa["survivors"],
            "secure_aggregation_s": round(sa["round_s"], 4),
            "epoch_setup_s": round(sa["setup_s"], 4),
            "meter_tx_signature_s_per_meter": round(sa["sig_per_meter"], 6),
            "total_wh": sa["total_wh"], "correct": sa["total_wh"] == sa["expected_wh"],
        }
        if public is not None:
            p_s, p_total = _paillier(sa["values"], public, private)
            row["paillier_s"] = round(p_s, 4)
            row["paillier_correct"] = p_total == sa["expected_wh"]
            row["speedup_vs_paillier"] = round(p_s / sa["round_s"], 1)
        else:
            row["paillier_s"] = None
        rows.append(row)
    return {
        "sizes": rows,
        "aggregators": AGGREGATORS, "threshold": THRESHOLD,
        "scheme": "Shamir t-of-m over GF(2^127-1), AES-256-GCM under per-epoch ML-KEM-768 keys, "
                  "ML-DSA-65 signed checks and partials",
        "paillier_modulus_bits": 2048, "paillier_backend": backend,
        "paillier_keygen_s": None if keygen_s is None else round(keygen_s, 3),
        "paillier_error": paillier_error,
        "quick": quick,
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=2))
