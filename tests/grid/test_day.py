"""The headline comparison: a naive day breaks limits, the same day inside envelopes does not."""

from __future__ import annotations

import pytest

from gridledger.errors import GridError
from gridledger.grid import Envelope, GridModel, add_der, clip_to_envelopes, compare_day

from .conftest import CLEAR_DAY

# Every second slot of the day keeps the test fast and still covers the noon PV peak and the
# 18-21 h EV block (the full 96 slots: benchmarks/grid.md and docs/grid.md).
HALF_DAY_GRID = list(range(0, 96, 2))


def test_naive_day_overloads_enveloped_day_is_clean(stressed: GridModel) -> None:
    cmp = compare_day(stressed, CLEAR_DAY, slots_of_day=HALF_DAY_GRID)
    s = cmp.summary()
    # Naive: PV at noon and EVs in the evening push the 160 kVA transformer past 100 %.
    assert cmp.naive_violation_slots >= 8
    assert s["naive_max_loading_pct"] > 110
    noon_or_evening = {c.slot % 96 // 4 for c in cmp.slots if c.naive.violations}
    assert noon_or_evening & {11, 12, 13} and noon_or_evening & {18, 19, 20}
    # Clipped to the envelopes: nothing.
    assert cmp.enveloped_violation_slots == 0 and cmp.enveloped_violations == 0
    assert s["enveloped_max_loading_pct"] <= 100
    assert 0.9 <= s["enveloped_min_vm_pu"] and s["enveloped_max_vm_pu"] <= 1.1
    assert cmp.clipped_wh > 0


def test_voltage_violations_too_on_a_long_rural_feeder(rural3: GridModel) -> None:
    stressed3 = add_der(rural3, pv_kwp_per_cp=15.0, ev_kw_per_cp=11.0)
    cmp = compare_day(stressed3, CLEAR_DAY, slots_of_day=[48, 76])
    kinds = {v.kind for c in cmp.slots for v in c.naive.violations}
    assert {"overvoltage", "undervoltage", "overload"} <= kinds
    assert cmp.enveloped_violations == 0


def test_clip_to_envelopes() -> None:
    env = {"a": Envelope(10, 20), "b": Envelope(0, 0)}
    assert clip_to_envelopes({"a": -50, "b": 7}, env) == {"a": -10, "b": 0}
    with pytest.raises(GridError, match="no envelope"):
        clip_to_envelopes({"c": 1}, env)
