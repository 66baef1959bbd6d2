"""Curtailment: deterministic, integer, only toward zero, and it removes every violation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.errors import GridError
from gridledger.grid import (
    CurtailmentCause,
    GridLimits,
    GridModel,
    compute_envelope_report,
    curtail_schedule,
    deliver_schedule,
    verify_schedule,
)

from .conftest import CLEAR_DAY, DEMO_DAY

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


def _causes_add_up(res_causes: tuple[CurtailmentCause, ...], curtailed: dict[str, int]) -> None:
    per_cp: dict[str, int] = {}
    for c in res_causes:
        assert c.curtailed_wh > 0
        per_cp[c.cp_id] = per_cp.get(c.cp_id, 0) + c.curtailed_wh
    assert per_cp == {cp: wh for cp, wh in curtailed.items() if wh}


@pytest.mark.parametrize(("slot", "direction"), [(NOON, "export"), (EVENING, "import")])
def test_every_curtailed_wh_names_its_limit(stressed: GridModel, slot: int, direction: str) -> None:
    naive = stressed.forecast_wh_by_cp(slot)
    res = curtail_schedule(stressed, slot, naive)
    _causes_add_up(res.causes, res.curtailed_wh_by_cp)
    # Noon PV and evening EVs both overload the one transformer.
    assert {(c.limit, c.element, c.violation, c.direction) for c in res.causes} == {
        ("loading", "trafo 0", "overload", direction)
    }


@pytest.mark.parametrize("slot", [NOON, EVENING])
def test_delivery_inside_envelopes_names_the_envelope_and_its_bound(stressed: GridModel, slot: int) -> None:
    naive = stressed.forecast_wh_by_cp(slot)
    rep = compute_envelope_report(stressed, slot)
    d = deliver_schedule(stressed, slot, naive, envelopes=rep)
    assert d.report.ok and d.total_curtailed_wh > 0
    _causes_add_up(d.causes, d.curtailed_wh_by_cp)
    # Only the envelopes cut (no violation left for the rule), each bounded by the transformer.
    assert {(c.limit, c.element, c.violation) for c in d.causes} == {("envelope", "trafo 0", "overload")}
    for cp, x in naive.items():
        assert d.schedule_wh_by_cp[cp] == rep.envelopes[cp].clip(x)


def test_no_curtailment_without_a_binding_limit(demo_grid: GridModel) -> None:
    # Issue 18 item 12: the demo day lost 32.9 kWh to envelope clips at 40 % loading. Every
    # cp following its forecast is carried by this network all day: nothing may be cut.
    for sod in range(0, 96, 6):
        slot = DEMO_DAY * 96 + sod
        plan = demo_grid.forecast_wh_by_cp(slot)
        assert verify_schedule(demo_grid, slot, plan).ok
        d = deliver_schedule(demo_grid, slot, plan, envelopes=compute_envelope_report(demo_grid, slot))
        assert d.total_curtailed_wh == 0 and d.causes == (), (slot, d.causes[:3])
        assert d.schedule_wh_by_cp == plan


def test_rule_curtailment_only_for_a_violation(stressed: GridModel) -> None:
    # Without envelopes the rule acts only where pandapower shows a violation.
    quiet = CLEAR_DAY * 96 + 8
    plan = stressed.forecast_wh_by_cp(quiet)
    assert verify_schedule(stressed, quiet, plan).ok
    assert deliver_schedule(stressed, quiet, plan).total_curtailed_wh == 0
    loud = deliver_schedule(stressed, NOON, stressed.forecast_wh_by_cp(NOON))
    assert loud.report.ok and {c.limit for c in loud.causes} == {"loading"}
