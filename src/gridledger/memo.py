"""Bounded memos of pure functions, aged by block time (issue 17: RSS flat after day 1).

The ledger and the node keep the last results of pure functions (a record's bytes -> the
decoded record, a transaction's bytes -> the ``Tx``, a key's seed -> its expanded key):
hooks, invariants, admission and execution read the same few slots' values again and
again. Each memo had a count bound sized for 1,000 members (a slot's working set there),
so at 10 members it took days to fill — ~+17 MiB of RSS a day after day 1, the memos only
reaching their bound after a week or more.

A ``Memo`` keeps two generations: lookups hit either (an entry found in the old one moves
to the new one), stores go to the new one. Every ``GENERATION_S`` seconds of block time
(``advance``, called by ``Application.commit`` after a block is committed) every memo
of the process ages: the old generation is dropped, the new one becomes old. What a memo
holds is therefore what was used in the last one to two hours of block time — the working
set, whatever the community's size — and a count bound (``cap``, and optionally a weight
bound) still holds at 1,000 members: the new generation turns old when it reaches it (so a
memo holds at most twice its bound, and a working set up to the bound is never cut).

A memo is a cache of a pure function, so what it holds never changes a result: block
execution, state roots and receipts are the same whatever it evicts (the removal tests
call ``clear_all``)."""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, ParamSpec, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
P = ParamSpec("P")

GENERATION_S = 3600
"""Block time (seconds) between two agings: an entry not used for 1-2 hours is dropped
(four slots: settlement, the readings' and orders' slots before, what every block's hooks and
invariants read; anything read every block stays)."""

_MEMOS: weakref.WeakSet[Memo[object, object]] = weakref.WeakSet()
_CLOCK = {"gen": -1}
_LOCK = threading.Lock()


class Memo(Generic[K, V]):
    """``key -> value`` of a pure function: the values used in the current and the previous
    generation of block time, each generation at most ``cap`` entries (and ``max_weight``
    of ``weight``): at most twice those in all."""

    def __init__(self, cap: int, weight: Callable[[K, V], int] | None = None,
                 max_weight: int = 0, *, ages: bool = True) -> None:
        self.cap = max(2, cap)
        self._new: dict[K, V] = {}
        self._old: dict[K, V] = {}
        self._weight = weight
        self.max_weight = max_weight
        self._w_new = 0
        self._w_old = 0
        self._lock = threading.Lock()  # a node decodes on several threads
        if ages:  # else aged by its count bound only
            _MEMOS.add(self)  # type: ignore[arg-type]

    def get(self, key: K) -> V | None:
        hit = self._new.get(key)
        if hit is not None:
            return hit
        hit = self._old.get(key)
        if hit is not None:
            self.put(key, hit)   # used again: it stays for this generation and the next
        return hit

    def put(self, key: K, value: V) -> None:
        w = 0 if self._weight is None else self._weight(key, value)
        with self._lock:
            if key in self._new:
                return
            if len(self._new) >= self.cap or (
                    self.max_weight and self._new and self._w_new + w > self.max_weight):
                # each generation within the bounds (both within twice them): a working set
                # of up to ``cap`` stays whole, as in an LRU of ``cap`` — with half of it per
                # generation the governance dry run's scan of ~6,000 pseudonym records a
                # block thrashed a 8,192 memo (dry run 7 -> 18 s in the default day)
                self._age()
            self._new[key] = value
            self._w_new += w

    def _age(self) -> None:
        self._old, self._new = self._new, {}
        self._w_old, self._w_new = self._w_new, 0

    def age(self) -> None:
        """Drop the old generation; the new one becomes old."""
        with self._lock:
            self._age()

    def clear(self) -> None:
        with self._lock:
            self._new, self._old = {}, {}
            self._w_new = self._w_old = 0

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def __contains__(self, key: object) -> bool:
        return key in self._new or key in self._old

    @property
    def weight(self) -> int:
        return self._w_new + self._w_old


class _Memoized(Generic[P, V]):
    """``fn`` with its results in a ``Memo`` keyed by its positional arguments."""

    def __init__(self, fn: Callable[P, V], cap: int) -> None:
        self.__wrapped__ = fn
        self.memo: Memo[tuple[object, ...], V] = Memo(cap)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> V:
        if kwargs:
            return self.__wrapped__(*args, **kwargs)
        hit = self.memo.get(args)
        if hit is None:
            hit = self.__wrapped__(*args, **kwargs)
            self.memo.put(args, hit)
        return hit

    def cache_clear(self) -> None:
        self.memo.clear()


def memoize(cap: int) -> Callable[[Callable[P, V]], _Memoized[P, V]]:
    """``functools.lru_cache(maxsize=cap)`` of a pure function (positional, hashable
    arguments; a result of None is not kept), as a ``Memo`` aged by block time."""

    def wrap(fn: Callable[P, V]) -> _Memoized[P, V]:
        return _Memoized(fn, cap)

    return wrap


def advance(block_time_s: int) -> None:
    """Block time reached ``block_time_s`` (a committed block's ``slot_time``): at each new
    generation every memo of the process ages once. Times that go back (a replay from
    genesis, verify-chain) age nothing."""
    gen = block_time_s // GENERATION_S
    with _LOCK:
        if gen <= _CLOCK["gen"]:
            return
        first = _CLOCK["gen"] < 0
        _CLOCK["gen"] = gen
    if not first:
        for m in list(_MEMOS):
            m.age()


def clear_all() -> None:
    """Empty every memo of the process (tests: results never depend on a memo)."""
    for m in list(_MEMOS):
        m.clear()


def sizes() -> dict[str, int]:
    """Entries held, by memo (probes and tests)."""
    return {f"{type(m).__name__}@{id(m):x}": len(m) for m in list(_MEMOS)}
