"""One faulty validator at a time (docs/threat-model.md row 7 beside the byzantine row): the
crash scenario's outage is planned clear of byzantine-validator's faulty slots, at every run
length. Regression: in a run of 8 slots both windows scaled onto slot 3, two of four
validators were faulty at once and the chain halted (``ChainHalted``, no offender)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.grid import SLOTS_PER_DAY
from gridledger.sim.attacks import DEFAULT_ATTACKS
from gridledger.sim.attacks.crash import Crash, crash_slot, faulty_slots
from gridledger.sim.clock import RunClock
from gridledger.sim.demo import run_demo, scenario_from_flags


def test_a_default_day_crashes_in_its_window_clear_of_the_byzantine_slots() -> None:
    clock = RunClock(0, SLOTS_PER_DAY)
    busy = faulty_slots(clock, DEFAULT_ATTACKS)
    assert busy and len(busy) < SLOTS_PER_DAY
    s = crash_slot(clock, Crash.window, busy)
    assert s == int(Crash.window[0] * SLOTS_PER_DAY)   # the window's first slot, as before


def test_eight_slots_leave_no_room_so_the_crash_is_left_out() -> None:
    clock = RunClock(40, 8)                             # 10:00-11:45, the halted run's
    busy = faulty_slots(clock, DEFAULT_ATTACKS)
    assert crash_slot(clock, Crash.window, frozenset()) in busy   # where it used to crash
    assert crash_slot(clock, Crash.window, busy) is None
    # without byzantine-validator in the run nothing is in the way
    assert faulty_slots(clock, ("crash",)) == frozenset()


@given(first=st.integers(0, 3 * SLOTS_PER_DAY), slots=st.integers(1, 3 * SLOTS_PER_DAY))
def test_a_planned_crash_never_meets_another_faulty_validator(first: int, slots: int) -> None:
    clock = RunClock(first, slots)
    busy = faulty_slots(clock, DEFAULT_ATTACKS)
    s = crash_slot(clock, Crash.window, busy)
    if s is not None:
        assert clock.in_window(s, *Crash.window) and s not in busy and s + 1 not in busy


@pytest.mark.slow
def test_a_two_hour_run_with_every_default_scenario_does_not_halt(tmp_path: Path) -> None:
    """The halted run itself (``gridledger demo --prosumers 20 --hours 2 --privacy off``):
    it finishes, byzantine-validator still runs, the crash is left out and says why."""
    sc = scenario_from_flags(20, 2, 4, "default", 7, None, False)
    summary, _ = run_demo(sc, tmp_path)
    assert "byzantine-validator" in summary["scenario"]["attacks"]
    assert "crash" not in summary["scenario"]["attacks"]
    assert any(n.startswith("crash left out: a run of 8 slots") for n in summary["scenario"]["notes"])
    assert summary["ledger"]["validators_agree"] and all(summary["invariants"].values())
