"""The DSO's flexibility planner on a real SimBench feeder with an EV charger at every cp
(the evening-peak stress): a predicted overload becomes a request downstream of it, and
the merit-order selection the DSO orders is free of violations in an AC power flow."""

from __future__ import annotations

from gridledger.flex import PPM, MeritOffer
from gridledger.flex.planner import _downstream, order_for, predict
from gridledger.grid import GridLimits, add_der, load_grid, verify_schedule

SLOT = 20 * 96 + 70   # 17:30 on a January weekday


def _model():  # type: ignore[no-untyped-def]
    return add_der(load_grid("1-LV-semiurb4--2-sw"), ev_kw_per_cp=7.4, ev_start_hour=17.0,
                   ev_hours=3.0, name="1-LV-semiurb4--2-sw+evening-peak")


def test_predicted_overload_is_relieved_by_the_ordered_merit_order() -> None:
    m = _model()
    fc = m.forecast_wh_by_cp(SLOT)
    forecast = {cp: int(fc[cp]) for cp in m.cp_ids}
    p = predict(m, SLOT, forecast, GridLimits())
    assert p is not None and p.violation.kind == "overload" and p.direction == "up"
    # the cps asked are exactly those the overloaded line supplies: all of them import
    assert p.cps and set(p.cps) < set(m.cp_ids)
    assert set(p.cps) == _downstream(m, p.violation.element)
    offers = [MeritOffer(bytes([i]) * 32, PPM, 40_000 + 1_000 * i, (max(0, -forecast[cp]),))
              for i, cp in enumerate(p.cps)]
    eff, acts, report = order_for(m, SLOT, forecast, GridLimits(), offers, list(p.cps), "up",
                                  p.need_wh)
    assert not report.violations and 0 < eff <= p.need_wh
    # cheapest first: the activated offers are a prefix of the price order
    used = [i for i, a in enumerate(acts) if a[0]]
    assert used == list(range(len(used)))
    # recomputed independently: the activations really remove the overload
    sched = dict(forecast)
    for cp, a in zip(p.cps, acts, strict=True):
        sched[cp] += a[0]
    assert verify_schedule(m, SLOT, sched).ok


def test_no_violation_no_prediction() -> None:
    m = load_grid("1-LV-semiurb4--2-sw")
    fc = m.forecast_wh_by_cp(SLOT)
    assert predict(m, SLOT, {cp: int(fc[cp]) for cp in m.cp_ids}, GridLimits()) is None


def test_the_transformer_or_a_bus_concerns_every_cp() -> None:
    m = load_grid("1-LV-semiurb4--2-sw")
    assert _downstream(m, "trafo 0") == set(m.cp_ids) == _downstream(m, "bus 3")
