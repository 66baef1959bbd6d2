"""One job in a forked process of its own, beside what the run does next.

The simulator's pure work that reads closed stores or a finished run (governance dry runs,
the curious validator's analysis and store scan) runs in a child forked for it: the child
inherits the job and everything it closes over, so nothing but the result is pickled, and
it ends once its one job is done.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_JOB: list[Callable[[], Any]] = []   # the job the forked worker runs (inherited, not pickled)


def _run_inherited() -> Any:
    return _JOB[0]()


def start_forked(job: Callable[[], T]) -> Future[T] | None:
    """``job()`` in a forked process; ``.result()`` is its value (or raises what it raised).
    None where this platform cannot fork: the caller runs ``job`` itself."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    _JOB[:] = [job]
    ex = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    try:
        return ex.submit(_run_inherited)  # the worker is forked here, holding ``job``
    finally:
        ex.shutdown(wait=False)  # the worker ends once its one job is done
        _JOB.clear()
