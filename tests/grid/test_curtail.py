"""Curtailment: deterministic, integer, only toward zero, and it removes every violation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.errors import GridError
from gridledger.grid import GridLimits, GridModel, curtail_schedule, verify_schedule

from .conftest import CLEAR_DAY

NOON = CLEAR_DAY * 96 + 48
EVENING = CLEAR_DAY * 96 + 19 * 4


@pytest.mark.parametrize("slot", [NOON, EVENING])
def test_curtailment_fixes_the_naive_schedule(stressed: GridModel, slot: int) -> None:
    naive = stressed.forecast_wh_by_cp(slot)
    assert not verify_schedule(stressed, slot, naive).ok
    res = curtail_schedule(stressed, slot, naive)
    assert res.report.ok
    assert verify_schedule(stressed, slot, res.schedule_wh_by_cp).ok
    for cp, x0 in naive.items():
        x1, cut = res.schedule_wh_by_cp[cp], res.curtailed_wh_by_cp[cp]
        assert type(x1) is int and type(cut) is int
        assert cut == abs(x0) - abs(x1) >= 0
        assert x1 == 0 or np.sign(x1) == np.sign(x0)  # never reversed
    assert res.total_curtailed_wh > 0
    # Deterministic: same input, same integers.
    assert curtail_schedule(stressed, slot, naive) == res


def test_pro_rata_among_the_most_sensitive(stressed: GridModel) -> None:
    # Evening: every EV pulls through the one transformer, all with near-equal sensitivity,
    # so every importer gives up the same share (to whole-Wh rounding).
    naive = stressed.forecast_wh_by_cp(EVENING)
    res = curtail_schedule(stressed, EVENING, naive)
    shares = [res.curtailed_wh_by_cp[cp] / abs(x) for cp, x in naive.items() if x < 0]
    assert max(shares) - min(shares) < 0.01


def test_feasible_schedule_is_untouched(lv: GridModel) -> None:
    slot = CLEAR_DAY * 96 + 30
    sched = lv.forecast_wh_by_cp(slot)
    res = curtail_schedule(lv, slot, sched)
    assert res.iterations == 0 and res.total_curtailed_wh == 0
    assert res.schedule_wh_by_cp == sched


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scale=st.floats(min_value=-4.0, max_value=4.0), seed=st.integers(0, 1000))
def test_curtailment_always_ends_feasible(stressed: GridModel, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    slot = CLEAR_DAY * 96 + int(rng.integers(0, 96))
    x = np.rint(stressed.net_injection_wh(slot) * scale * rng.uniform(0, 2, len(stressed.cps)))
    sched = {cp: int(v) for cp, v in zip(stressed.cp_ids, x, strict=True)}
    res = curtail_schedule(stressed, slot, sched, limits=GridLimits(max_loading_pct=90.0))
    assert res.report.ok
    assert all(0 <= res.curtailed_wh_by_cp[cp] <= abs(sched[cp]) for cp in sched)


def test_unfixable_limits_are_an_error(lv: GridModel) -> None:
    sched = lv.forecast_wh_by_cp(NOON)
    with pytest.raises(GridError, match="curtailment cannot fix"):
        curtail_schedule(lv, NOON, sched, limits=GridLimits(vm_max_pu=1.02))
