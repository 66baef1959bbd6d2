"""The DSO's differentially private publication on the shared default day (issue 19.3, 19.5):
summary.privacy's keys, epsilon within the per-household-day budget, the error the summary
states is the published figures' real error, and the report's section."""

from __future__ import annotations

from gridledger.grid import load_grid
from gridledger.privacy.dp import DpParams
from gridledger.sim.features.publication import PLAN, households_of, transformer_areas
from gridledger.sim.scenario import DEFAULT_NETWORK
from tests.sim.conftest import DemoRun

KEYS = ("mode", "clear_household_readings", "clear_household_orders",
        "epsilon_per_household_day", "aggregate_error_pct", "clipping_error_pct",
        "expected_noise_error_pct", "dp_published", "dp_refused", "dp")


def test_households_and_areas_of_the_default_network() -> None:
    model = load_grid(DEFAULT_NETWORK)
    assert transformer_areas(model) == {"trafo-0": model.cp_ids}
    houses = households_of(model)
    # SimBench's residential (H0) loads; the commercial G-profile cps are not households
    assert len(houses) == 30 and len(model.cp_ids) - len(houses) == 9


def test_summary_states_epsilon_and_the_real_error_of_what_was_published(
        default_day: DemoRun) -> None:
    priv = default_day.summary["privacy"]
    assert all(k in priv for k in KEYS), [k for k in KEYS if k not in priv]
    budget = PLAN.daily_budget_micro / 1e6
    assert priv["epsilon_budget_per_household_day"] == budget
    assert 0 < priv["epsilon_per_household_day"] <= budget
    assert priv["dp_refused"] == []
    dp = priv["dp"]
    assert dp["households_protected"] == 30 and dp["other_cps_exact"] == 9
    assert dp["sensitivity_wh"] == 2 * PLAN.day_l1_wh
    pubs = priv["dp_published"]
    assert [p["periods"] for p in pubs] == [["00:00-06:00", "06:00-12:00", "12:00-18:00",
                                             "18:00-24:00"]]
    # the stated error is the published figures' error against the DSO's exact figures
    err = true = 0
    for p in pubs:
        for a, b in (("published_import_wh", "true_import_wh"),
                     ("published_export_wh", "true_export_wh")):
            err += sum(abs(x - y) for x, y in zip(p[a], p[b], strict=True))
            true += sum(abs(y) for y in p[b])
    assert priv["aggregate_error_pct"] == round(100 * err / true, 2)
    # each value is off by no more than the clamp's bias plus a 1e-9 tail of the noise
    bound = DpParams(1_000_000, dp["sensitivity_wh"]).noise_bound_wh(1e-9)
    clip_wh = priv["clipping_error_pct"] / 100 * true
    for p in pubs:
        for a, b in (("published_import_wh", "true_import_wh"),
                     ("published_export_wh", "true_export_wh")):
            assert all(abs(x - y) <= bound + clip_wh for x, y in zip(p[a], p[b], strict=True))
    assert priv["aggregate_error_pct"] <= priv["clipping_error_pct"] + 4 * priv[
        "expected_noise_error_pct"]


def test_report_shows_the_release(default_day: DemoRun) -> None:
    html = (default_day.out / "report.html").read_text()
    assert "Published by the DSO (differential privacy)" in html
    assert "ε per household and day" in html
