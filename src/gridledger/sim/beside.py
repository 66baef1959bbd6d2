"""Pure work a feature starts ahead, in a worker process beside the run (issue 17).

The run's process is the default day's critical path: it runs every feature's work between
blocks, executes half the validators and waits for the rest. Work whose inputs are final a
step or more before its result is needed — a slot's secure-aggregation round once the slot
is delivered, the DSO's forecast power flow of a slot three steps ahead — runs in a worker
forked from the run (it holds the model, the committee, the keys as the run does: nothing
is pickled but the inputs and the result) while the run goes on. ``Ahead.take`` gives the
result only if the inputs are still the ones the run would use now; otherwise the caller
computes it itself, as before. So what the run signs and submits is what it computed
before: the same functions on the same inputs in a copy of the same process.
"""

from __future__ import annotations

import multiprocessing
import operator
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

R = TypeVar("R")


def _timed(fn: Callable[..., R], *args: Any) -> tuple[R, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


class Ahead(Generic[R]):
    """One worker process and the jobs started in it, by key (a slot), each with the inputs
    it was started on. The worker is forked at the first ``start``, with
    ``initializer(*initargs)`` run in it (it keeps what the jobs read, e.g. the model); on
    one core there is none and ``start`` does nothing (the caller computes as before).

    ``timings[timing_key]`` adds up the worker's seconds of the results taken."""

    def __init__(self, initializer: Callable[..., None], initargs: tuple[Any, ...],
                 timings: dict[str, float], timing_key: str) -> None:
        self._init = initializer
        self._initargs = initargs
        self._timings = timings
        self._timing_key = timing_key
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: dict[int, tuple[Any, Future[tuple[R, float]]]] = {}

    def available(self) -> bool:
        """Whether jobs run beside (two cores or more); else ``start`` does nothing."""
        return (os.cpu_count() or 1) >= 2

    def start(self, key: int, inputs: Any, fn: Callable[..., R], *args: Any) -> None:
        """Start ``fn(*args)`` in the worker for ``key``, remembering ``inputs`` (compared,
        with ``==``, when the result is taken)."""
        if not self.available():
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("fork"),
                initializer=self._init, initargs=self._initargs)
        self._jobs[key] = (inputs, self._pool.submit(_timed, fn, *args))

    def started(self, key: int) -> bool:
        return key in self._jobs

    def take(self, key: int, inputs: Any,
             same: Callable[[Any, Any], bool] = operator.eq) -> tuple[bool, R | None]:
        """``(True, result)`` of the job started for ``key`` if it was started on
        ``inputs`` (``same(started_on, inputs)``; waits for it; its exception is raised
        here), else ``(False, None)``; either way the job is forgotten, and so are jobs of
        keys below ``key``."""
        job = self._jobs.pop(key, None)
        for k in [k for k in self._jobs if k < key]:
            del self._jobs[k]
        if job is None or not same(job[0], inputs):
            return False, None
        out, seconds = job[1].result()
        self._timings[self._timing_key] = self._timings.get(self._timing_key, 0.0) + seconds
        return True, out

    def close(self) -> None:
        """End the worker (also after a run that failed half-way)."""
        self._jobs.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
