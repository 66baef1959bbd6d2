"""``bench scale``'s memory figures (issue 17: RSS flat after the first day): the RSS at the
end of each simulated day and the growth after day 1. Pure helpers; no run."""

from __future__ import annotations

from gridledger.bench.scale import DayRss, growth_after_day1, rss_mib
from gridledger.grid import SLOTS_PER_DAY


def test_rss_is_sampled_at_the_end_of_each_whole_day_only() -> None:
    samples = iter([700.0, 710.5, 712.25])
    days = DayRss(3 * SLOTS_PER_DAY, sample=lambda: next(samples))
    total = 3 * SLOTS_PER_DAY + 4
    for done in range(1, total + 1):  # the settlement tail's steps are no day's end
        days(done, total, "-")
    assert days.by_day_mib == [700.0, 710.5, 712.2]


def test_growth_after_day1() -> None:
    assert growth_after_day1([]) is None and growth_after_day1([800.0]) is None
    assert growth_after_day1([1000.0, 1020.0, 1010.0]) == 0.02
    assert growth_after_day1([1000.0, 990.0]) == -0.01
    assert rss_mib() > 0
