"""``sim.heap.trim``: a run gives freed memory back to the OS after its setup and at each
day's end (issue 17: RSS flat after the first day)."""

from __future__ import annotations

import platform
import sys

import pytest

from gridledger.sim import heap


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_trim_returns_freed_heap_pages_to_the_os() -> None:
    # ~200 MiB of mid-sized blocks (malloc's heap, not mmapped), one kept at the top so
    # the heap cannot shrink by itself when the rest is freed
    blocks = [bytearray(64 * 1024 - 64) for _ in range(3_200)]
    keep = bytearray(64 * 1024 - 64)
    del blocks
    before = _rss_kib()
    assert heap.trim()
    assert _rss_kib() < before - 100 * 1024
    assert len(keep) > 0


def test_trim_without_glibc_only_collects(monkeypatch: pytest.MonkeyPatch) -> None:
    heap._malloc_trim.cache_clear()
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    try:
        assert heap.trim() is False
    finally:
        heap._malloc_trim.cache_clear()
