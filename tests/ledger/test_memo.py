"""gridledger.memo: decode memos aged by block time (issue 17: RSS flat after day 1)."""

from __future__ import annotations

import pytest

from gridledger import memo
from gridledger.memo import GENERATION_S, Memo, memoize

SLOT_S = 900
DAY_S = 86_400


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "_CLOCK", {"gen": -1})


def test_a_generation_unused_is_dropped_a_used_entry_stays(clock: None) -> None:
    m: Memo[str, int] = Memo(1000)
    memo.advance(0)
    m.put("old", 1)
    m.put("hot", 2)
    memo.advance(GENERATION_S)          # one aging: both still found
    assert m.get("hot") == 2            # used again: moves to the new generation
    memo.advance(2 * GENERATION_S)      # second aging: "old" was not used for a generation
    assert m.get("old") is None and m.get("hot") == 2
    memo.advance(2 * GENERATION_S + 1)  # same generation: nothing ages
    memo.advance(0)                     # a replay from genesis: nothing ages
    assert m.get("hot") == 2


def test_count_and_weight_bounds_hold_between_agings() -> None:
    m: Memo[int, bytes] = Memo(10)
    for i in range(100):
        m.put(i, b"x")
        assert len(m) <= 20   # each generation within the bound
    assert m.get(99) == b"x"
    w: Memo[int, bytes] = Memo(1000, lambda _k, v: len(v), 100)
    for i in range(100):
        w.put(i, b"y" * 7)
        assert w.weight <= 200
    assert w.get(99) is not None and w.get(0) is None


def test_a_working_set_up_to_the_bound_is_never_cut() -> None:
    """Regression (issue 17, thirteenth session): keys read over and over in the same
    order — the governance dry run scans ~6,000 pseudonym records every block it replays —
    all hit after the first pass when they are no more than the bound, as in an LRU of that
    size. With half the bound per generation every lookup missed (the dry run 7 -> 18 s)."""
    m: Memo[int, int] = Memo(100)
    misses = 0
    for _pass in range(5):
        for k in range(100):
            if m.get(k) is None:
                misses += 1
                m.put(k, k)
    assert misses == 100


def test_memoize_is_a_bounded_cache_of_a_pure_function(clock: None) -> None:
    calls = []

    @memoize(8)
    def f(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    assert f(1, 2) == 3 and f(1, 2) == 3 and calls == [(1, 2)]
    for i in range(50):
        f(i, i)
    assert len(f.memo) <= 16
    f.cache_clear()
    assert f(1, 2) == 3 and calls[-1] == (1, 2)


def test_a_memo_stops_growing_within_the_first_day(clock: None) -> None:
    """Regression (issue 17): a memo with a bound sized for 1,000 members, fed a small
    community's per-slot keys (new ones every slot, as pseudonyms and readings are), holds
    after day 1 no more than it held during day 1 — it used to grow until its count bound,
    days later."""
    m: Memo[tuple[int, int], int] = Memo(65_536)
    hot = list(range(30))                       # read every slot (open records)
    peak_day1, peak_after = 0, 0
    for slot in range(4 * 96):
        t = slot * SLOT_S
        for k in hot:
            if m.get((-1, k)) is None:
                m.put((-1, k), k)
        for k in range(40):                     # this slot's new records
            m.put((slot, k), k)
        memo.advance(t)
        if t < DAY_S:
            peak_day1 = max(peak_day1, len(m))
        else:
            peak_after = max(peak_after, len(m))
    assert 0 < peak_after <= peak_day1
    assert peak_after <= 30 + 40 * 2 * GENERATION_S // SLOT_S
    assert all(m.get((-1, k)) == k for k in hot)  # what every slot reads is never dropped


def test_every_memo_of_the_process_ages(clock: None) -> None:
    from gridledger.ledger import record, tx
    from gridledger.ledger.modules.certificates import keeper as cert
    from gridledger.node.admission import SigCache

    cache = SigCache()
    memos = [tx._DECODED, record._STORED, cert._CACHE]
    memo.advance(0)
    for i, m in enumerate(memos):
        m.put(("probe", i), True)  # type: ignore[arg-type]
    cache.add(b"t" * 32, "ml-dsa-44", b"k" * 1312)
    memo.advance(GENERATION_S)
    memo.advance(2 * GENERATION_S)
    assert all(("probe", i) not in m for i, m in enumerate(memos))
    # the signature cache ages by count only: the governance dry run replays three days of
    # blocks with it as its signature check
    assert len(cache._ok) == 1
