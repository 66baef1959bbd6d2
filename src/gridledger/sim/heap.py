"""Giving a long run's freed memory back to the OS (issue 17: RSS flat after the first day).

A run's peaks are transient: a privacy epoch's issuance (its pseudonyms, escrows and
registration blocks at 18:00-21:00), full-state snapshots, the first day's setup. Python
frees those objects, but glibc's malloc keeps the freed pages in its heaps for reuse, so
the process's RSS stays at each peak's high-water mark and creeps up as the peaks
fragment it (30 members over 4 days: RSS +21.6 % while the live heap levelled off).
``trim`` runs a full garbage collection and glibc's ``malloc_trim(0)``, which returns every
free page of every malloc arena to the OS; the engine calls it after the setup and at the
end of each day. Nothing of the run's results depends on it: it only moves free memory.
Where the C library is not glibc (musl, macOS, Windows) it collects and returns False."""

from __future__ import annotations

import ctypes
import functools
import gc
import platform
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def trim() -> bool:
    """Collect garbage, then give free heap pages back to the OS (glibc's
    ``malloc_trim(0)``). True if glibc released any memory; False if it released none or
    the C library has no ``malloc_trim``."""
    gc.collect()
    fn = _malloc_trim()
    return fn is not None and bool(fn(0))
