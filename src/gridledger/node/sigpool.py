"""Signature checks off the main interpreter.

PyCA's ML-DSA verify holds the GIL (measured: two threads take as long as one), so parallel
checking needs processes. ``SigPool`` verifies batches in a process pool; with one worker or
for small batches it verifies inline, which is cheaper than shipping the work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from gridledger.crypto.sig import verify_signature

Item = tuple[str, bytes, bytes, bytes, bytes]  # alg, pk, message, signature, context


def _verify_chunk(items: Sequence[Item]) -> list[bool]:
    return [verify_signature(a, pk, m, s, c) for a, pk, m, s, c in items]


class SigPool:
    """A process pool that checks ML-DSA signatures in parallel."""

    def __init__(self, workers: int | None = None, min_batch: int = 64) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.min_batch = min_batch
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        return self._pool

    def submit(self, items: Sequence[Item]) -> list[Future[list[bool]]]:
        """Start verifying ``items``; collect with ``gather``."""
        if self.workers <= 1 or len(items) < self.min_batch:
            f: Future[list[bool]] = Future()
            f.set_result(_verify_chunk(items))
            return [f]
        n = max(1, len(items) // (self.workers * 2))
        ex = self._executor()
        return [ex.submit(_verify_chunk, items[i:i + n]) for i in range(0, len(items), n)]

    @staticmethod
    def gather(futures: Sequence[Future[list[bool]]]) -> list[bool]:
        out: list[bool] = []
        for f in futures:
            out.extend(f.result())
        return out

    def verify_many(self, items: Sequence[Item]) -> list[bool]:
        return self.gather(self.submit(items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
