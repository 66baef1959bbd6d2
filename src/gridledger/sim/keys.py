"""Deterministic key material for simulations (never for production keys).

Every simulated identity's seed is SHA3(seed, role, index), so a scenario with the same
``--seed`` has the same addresses, transactions and state roots.
"""

from __future__ import annotations

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import SigningKey


def sim_key(seed: int, role: str, index: int, alg: str = "ml-dsa-65") -> SigningKey:
    return SigningKey.from_seed(alg, tagged_hash("gl/sim-key", str(seed).encode(),
                                                  role.encode(), str(index).encode()))
