"""Signature checks (and a simulation's signing) off the main interpreter.

PyCA's ML-DSA verify holds the GIL (measured: two threads take as long as one), so parallel
checking needs processes. ``SigPool`` verifies batches in a process pool; with one worker or
for small batches it verifies inline, which is cheaper than shipping the work. The same
pool signs batches (``sign_many``: the demo's clients, issue 17/19) and runs other pure
work (``map``: the first epoch's pseudonym issuance).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from gridledger.crypto.sig import SigningKey, verify_signature

Item = tuple[str, bytes, bytes, bytes, bytes]  # alg, pk, message, signature, context
SignItem = tuple[str, bytes, bytes, bytes]     # alg, 32-byte seed, message, context
T = TypeVar("T")
R = TypeVar("R")


def _verify_chunk(items: Sequence[Item]) -> list[bool]:
    return [verify_signature(a, pk, m, s, c) for a, pk, m, s, c in items]


def _sign_chunk(items: Sequence[SignItem]) -> list[bytes]:
    return [SigningKey(a, seed).sign(m, c) for a, seed, m, c in items]


class SigPool:
    """A process pool that checks ML-DSA signatures in parallel."""

    def __init__(self, workers: int | None = None, min_batch: int = 64,
                 min_sign_batch: int = 16) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.min_batch = min_batch
        self.min_sign_batch = min_sign_batch
        """Below this many, ``sign_many`` signs inline (a signature costs ~10 verifications:
        a smaller batch than ``min_batch`` already pays for the round trip)."""
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

    def sign_many(self, items: Sequence[SignItem]) -> list[bytes]:
        """ML-DSA signatures over ``items`` (alg, seed, message, context), in order; in the
        pool's processes once the batch reaches ``min_sign_batch``. Raises ``CryptoError``
        for a bad algorithm or seed."""
        return self.gather_signatures(self.sign_start(items))

    def sign_start(self, items: Sequence[SignItem]) -> list[Future[list[bytes]]]:
        """Start ``sign_many(items)`` and return at once (inline below ``min_sign_batch``:
        the futures are done); ``gather_signatures`` collects the signatures in order, or
        raises what a worker raised (a pool whose worker died: ``BrokenProcessPool``)."""
        if self.workers <= 1 or len(items) < self.min_sign_batch:
            done: Future[list[bytes]] = Future()
            try:
                done.set_result(_sign_chunk(items))
            except Exception as exc:  # raised at ``gather_signatures``, as a worker's would be
                done.set_exception(exc)
            return [done]
        n = max(1, -(-len(items) // (self.workers * 2)))
        ex = self._executor()
        return [ex.submit(_sign_chunk, items[i:i + n]) for i in range(0, len(items), n)]

    @staticmethod
    def gather_signatures(futures: Sequence[Future[list[bytes]]]) -> list[bytes]:
        return [sig for f in futures for sig in f.result()]

    def map(self, fn: Callable[[T], R], args: Iterable[T]) -> list[R]:
        """``[fn(a) for a in args]`` on the pool's processes (inline with one worker);
        ``fn`` and its arguments and results must pickle, ``fn`` be importable."""
        if self.workers <= 1:
            return [fn(a) for a in args]
        return list(self._executor().map(fn, args))

    def imap(self, fn: Callable[[T], R], args: Iterable[T]) -> Iterator[R]:
        """``map`` as an iterator: each result in order as it is due, so a caller keeping a
        part of each never holds them all (a privacy epoch's issuance at 1,000 members:
        ~1.5 GB of results, issue 17). The jobs are all submitted at the first ``next``."""
        if self.workers <= 1:
            return (fn(a) for a in args)
        return self._executor().map(fn, args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
