"""Deterministic random bytes for tests and simulations (never for production keys).

Production meters and aggregators draw from ``os.urandom``; the privacy API takes any
``RandomBytes`` so tests and the simulator can replay a run from a seed.
"""

from __future__ import annotations

import hashlib


class DeterministicRandom:
    """SHAKE-256 in counter mode keyed by ``seed``: a reproducible ``RandomBytes``."""

    def __init__(self, seed: bytes | int) -> None:
        self._seed = seed.to_bytes(32, "big", signed=True) if isinstance(seed, int) else seed
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        self._counter += 1
        h = hashlib.shake_256(b"gl/test-rng/v1" + self._seed + self._counter.to_bytes(8, "big"))
        return h.digest(n)
