"""Per-area grid work on both cores (issue 17).

A network split at its secondary substations (``grid.areas``) gives the DSO's slot work as
independent parts: every LV area's envelope problem once the MV level has capped it, and
every part's state estimation. On a large network those parts are most of a slot (the
1,000-member run on ``1-MVLV-rural-all-2-sw``: 90 LV areas, ~6.5 s of envelopes and the
per-area estimation on the main core while the other idled). ``AreaWorkers`` runs a share of
the LV areas in worker processes, each holding its areas' models for the whole run (built
once, its power-flow caches warm from slot to slot), while the caller computes its own
share; results come back in area order, so the merged result is the same whoever computed
each part (same code, same inputs, same floating-point path: tested equal to inline).

Workers are ``python -c`` interpreters (nothing inherited but the environment: the caller
may hold threads — a signature pool, a progress bar — so no fork); messages are pickled
over their stdin/stdout, one request and one reply in order. A worker ends when its stdin
closes (the caller exited or crashed) or on ``close``. A worker that fails or dies is never
a lost slot: its areas are computed here (and it is not used again).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from gridledger.frames import reap_worker, recv_frame, send_frame
from gridledger.grid.areas import Areas, substation_areas
from gridledger.grid.model import GridModel

PARALLEL_FROM_CPS = 400
"""A split network with at least this many cps gets area workers (below, shipping the
parts costs more than computing them: the default 39-cp feeder is one area anyway)."""

_WORKER = "from gridledger.grid.area_workers import _worker_main; _worker_main()"
_KEY = "areas:workers"

_FAILED: Any = object()
_GONE: Any = object()

AreaFn = Callable[..., Any]
"""A module-level function ``fn(area_model, *args)``; it travels by module and name."""


def _send(stream: IO[bytes], obj: Any) -> None:
    send_frame(stream, obj)


_recv = recv_frame


def _portable(model: GridModel) -> GridModel:
    """The model without its caches (locks, power-flow engines): the worker builds its own."""
    return dataclasses.replace(model, _cache={"areas:substation": None})


def _shares(sizes: Sequence[int], parts: int) -> list[list[int]]:
    """Area indexes split into ``parts`` shares of about equal cps (largest first, each to
    the lightest share); share 0 is the caller's."""
    loads = [0] * parts
    out: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(sizes)), key=lambda k: (-sizes[k], k)):
        j = min(range(parts), key=lambda p: (loads[p], p))
        out[j].append(i)
        loads[j] += sizes[i]
    return [sorted(s) for s in out]


class _Worker:
    def __init__(self, models: dict[int, GridModel]) -> None:
        self.areas = sorted(models)
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            # a Ctrl-C at the terminal stops the run, not its helpers (stdin's end stops them)
            start_new_session=True)
        if not self.send(("init", {i: _portable(m) for i, m in models.items()})):
            return
        self.pending = True  # the init's reply

    pending = False

    def send(self, msg: Any) -> bool:
        proc = self.proc
        if proc is None or proc.stdin is None:
            return False
        try:
            _send(proc.stdin, msg)
        except OSError:
            self.kill()
            return False
        return True

    def recv(self) -> Any:
        """The reply to the last request; ``_FAILED`` if the work raised there (the caller
        computes it again, raising the same error in area order), ``_GONE`` (and the worker
        closed) if the worker died."""
        proc = self.proc
        if proc is None or proc.stdout is None:
            return _GONE
        try:
            while self.pending:  # the init's acknowledgement, read at the first request
                self.pending = False
                ok, _ = _recv(proc.stdout)
                if not ok:
                    raise EOFError
            ok, value = _recv(proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError, MemoryError, ValueError):
            self.kill()  # dead, or its stream is not ours any more
            return _GONE
        return value if ok else _FAILED

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        reap_worker(proc, 10)


class AreaWorkers:
    """Worker processes sharing a split network's LV areas with the caller (module
    docstring). ``map(fn, args)`` = ``[fn(area.model, *args[i]) for i, area in
    enumerate(areas.lv)]``, computed on every core."""

    def __init__(self, areas: Areas, workers: int) -> None:
        self.areas = areas
        sizes = [len(a.rows) for a in areas.lv]
        shares = _shares(sizes, workers + 1)
        self.local = shares[0]
        self.workers = [_Worker({i: areas.lv[i].model for i in share})
                        for share in shares[1:] if share]
        self.here_s = 0.0
        """Wall seconds the caller spent on its own share of the ``map`` calls ..."""
        self.waited_s = 0.0
        """... and then waiting for the workers' replies (an imbalance between the shares,
        or a worker's core busy with other work: what a finer split could win)."""

    def map(self, fn: AreaFn, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        lv = self.areas.lv
        if len(args) != len(lv):
            raise ValueError(f"{len(args)} argument tuples for {len(lv)} LV areas")
        out: list[Any] = [None] * len(lv)
        errors: dict[int, Exception] = {}

        def here(i: int) -> None:
            try:
                out[i] = fn(lv[i].model, *args[i])
            except Exception as exc:  # raised below in area order, as one loop would
                errors[i] = exc

        sent = [w.send(("map", fn.__module__, fn.__qualname__, [(i, args[i]) for i in w.areas]))
                for w in self.workers]
        t0 = time.perf_counter()
        for i in self.local:
            here(i)
        t1 = time.perf_counter()
        self.here_s += t1 - t0
        for w, ok in zip(self.workers, sent, strict=True):
            got = w.recv() if ok else _GONE
            self.waited_s += time.perf_counter() - t1
            t1 = time.perf_counter()
            if got is _GONE or got is _FAILED:  # its areas are computed here
                for i in w.areas:
                    here(i)
                continue
            for i, value in zip(w.areas, got, strict=True):
                out[i] = value
        gone = [w for w in self.workers if w.proc is None]
        if gone:
            self.workers = [w for w in self.workers if w.proc is not None]
            self.local = sorted([*self.local, *(i for w in gone for i in w.areas)])
        if errors:
            raise errors[min(errors)]
        return out

    def close(self) -> None:
        for w in self.workers:
            if w.send(("exit",)):
                w.recv()
            w.kill()
        self.workers = []
        self.local = list(range(len(self.areas.lv)))


_OPEN: list[AreaWorkers] = []


def area_workers(model: GridModel) -> AreaWorkers | None:
    """The model's area workers (started at the first call, kept on the model), or None for
    a network that does not split, is below ``PARALLEL_FROM_CPS`` cps, or runs on one core.
    Environment ``GRIDLEDGER_AREA_WORKERS=0`` turns them off (an A/B, or a machine whose
    cores are someone else's)."""
    if _KEY not in model._cache:
        model._cache[_KEY] = _start(model)
    out = model._cache[_KEY]
    assert out is None or isinstance(out, AreaWorkers)
    return out


def _start(model: GridModel) -> AreaWorkers | None:
    want = os.environ.get("GRIDLEDGER_AREA_WORKERS")
    workers = (os.cpu_count() or 1) - 1 if want is None else int(want)
    if workers < 1 or len(model.cps) < PARALLEL_FROM_CPS:
        return None
    return _pool(model, workers)


def _pool(model: GridModel, workers: int) -> AreaWorkers | None:
    areas = substation_areas(model)
    if areas is None or len(areas.lv) < 2 or workers < 1:
        return None
    pool = AreaWorkers(areas, min(workers, len(areas.lv) - 1))
    _OPEN.append(pool)
    return pool


def area_worker_timings(model: GridModel) -> dict[str, float]:
    """The wall seconds of the model's area workers' ``map`` calls so far, as the caller saw
    them: ``area_here_s`` (its own share), ``area_wait_s`` (then waiting for the workers);
    {} without area workers (none are started)."""
    pool = model._cache.get(_KEY)
    if not isinstance(pool, AreaWorkers):
        return {}
    return {"area_here_s": pool.here_s, "area_wait_s": pool.waited_s}


def start_area_workers(model: GridModel, workers: int) -> AreaWorkers | None:
    """Give the model ``workers`` area workers whatever its size (closing any it had); None
    if it does not split at its substations. ``area_workers`` then returns them."""
    close_area_workers(model)
    pool = _pool(model, workers)
    model._cache[_KEY] = pool
    return pool


def close_area_workers(model: GridModel) -> None:
    """End the model's area workers (the next ``area_workers`` call starts new ones)."""
    pool = model._cache.pop(_KEY, None)
    if isinstance(pool, AreaWorkers):
        pool.close()
        with contextlib.suppress(ValueError):
            _OPEN.remove(pool)


@atexit.register
def _close_all() -> None:
    for pool in _OPEN:
        pool.close()
    _OPEN.clear()


def _worker_main() -> None:
    """The worker: ``init`` (its areas' models), then ``map`` requests until ``exit`` or the
    end of stdin. Replies ``(ok, value)``."""
    stdin = sys.stdin.buffer
    # replies on a private copy of stdout; anything a library prints goes to stderr, never
    # into the message stream
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    models: dict[int, GridModel] = {}
    while True:
        try:
            op, *args = _recv(stdin)
        except EOFError:
            break
        try:
            if op == "exit":
                _send(stdout, (True, None))
                break
            if op == "init":
                models = args[0]
                _send(stdout, (True, None))
                continue
            module, name, jobs = args
            fn = getattr(importlib.import_module(module), name)
            _send(stdout, (True, [fn(models[i], *a) for i, a in jobs]))
        except Exception as exc:  # the caller computes these areas itself
            _send(stdout, (False, f"{op}: {type(exc).__name__}: {exc}"))
