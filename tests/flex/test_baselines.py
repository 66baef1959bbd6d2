"""Standard baselines: high X of Y with the day-of adjustment (gridledger.flex.baselines)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.flex.baselines import (
    ADJUST_MAX_PPM,
    ADJUST_MIN_PPM,
    PPM,
    Day,
    adjust,
    adjustment_ppm,
    high_x_of_y,
    method_name,
)


def _day(i: int, load: int, *, event: bool = False, weekend: bool = False) -> Day:
    return Day(i, (-load,) * 4, event=event, weekend=weekend)


def test_high_5_of_10_keeps_the_highest_consumption_days() -> None:
    # days 0..11 with loads 100..1200 Wh per slot; day 11 is an event day, day 5 a weekend
    history = [_day(i, 100 * (i + 1), event=i == 11, weekend=i == 5) for i in range(12)]
    got = high_x_of_y(history, [1, 2], event_day=12)
    # candidates: 10 most recent non-event weekdays = days 10,9,8,7,6,4,3,2,1,0;
    # the 5 highest loads: days 10,9,8,7,6 -> mean 900 Wh
    assert got == (-900, -900)
    assert high_x_of_y(history, [0], event_day=12, weekend=True) == (-600,)
    assert method_name(5, 10, True) == "high-5-of-10-adj"


def test_days_after_the_event_never_count_and_no_candidate_is_an_error() -> None:
    history = [_day(3, 500), _day(9, 5_000)]
    assert high_x_of_y(history, [0], event_day=5) == (-500,)
    with pytest.raises(ValueError, match="no non-event"):
        high_x_of_y(history, [0], event_day=2)
    with pytest.raises(ValueError, match="1 <= x <= y"):
        high_x_of_y(history, [0], event_day=5, x=0)


def test_day_of_adjustment_is_clamped() -> None:
    base = [-1_000, -1_000]
    assert adjustment_ppm(base, [-1_100, -1_100]) == 1_100_000
    assert adjustment_ppm(base, [-5_000, -5_000]) == ADJUST_MAX_PPM  # run-up before the event
    assert adjustment_ppm(base, [0, 0]) == ADJUST_MIN_PPM
    assert adjustment_ppm([0, 0], [-5, -5]) == PPM
    assert adjust(base, 1_100_000) == (-1_100, -1_100)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-5_000, 5_000), st.booleans()), min_size=1, max_size=25),
       st.integers(1, 10))
def test_baseline_lies_within_the_candidates_and_pre_event_inflation_is_bounded(raw, x) -> None:
    history = [Day(i, (n, n), event=ev) for i, (n, ev) in enumerate(raw)]
    if all(ev for _, ev in raw):
        return
    base = high_x_of_y(history, [0, 1], event_day=len(raw), x=x, y=10)
    cands = [n for n, ev in raw if not ev][-10:]
    assert min(cands) <= base[0] <= max(cands)
    # however the member runs its load up before the event, the adjusted baseline moves
    # at most 20 % from the unadjusted one
    f = adjustment_ppm(base, (-10**6, -10**6))
    assert ADJUST_MIN_PPM <= f <= ADJUST_MAX_PPM
    assert all(abs(a - b) <= abs(b) // 5 + 1 for a, b in zip(adjust(base, f), base, strict=True))
