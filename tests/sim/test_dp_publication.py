"""The DSO's differentially private publication on the shared default day (issue 19.3, 19.5):
summary.privacy's keys, epsilon within the per-household-day budget, the error the summary
states is the published figures' real error, and the report's section."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gridledger.grid import SlotMeasurements, load_grid
from gridledger.privacy.dp import DpParams
from gridledger.privacy.publication import Product, PublicationPlan
from gridledger.sim.features.publication import (
    PLAN,
    DsoPublication,
    households_of,
    transformer_areas,
)
from gridledger.sim.records import Delivered, RunData
from gridledger.sim.report import write_report
from gridledger.sim.scenario import DEFAULT_NETWORK, DEFAULT_START_DAY
from tests.sim.conftest import DemoRun
from tests.sim.test_report import _CLIPPED, make_inputs, needs_chromium

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


def _publication(plan: PublicationPlan) -> DsoPublication:
    """The feature on the default network, fed the network's own profile day as the DSO's
    measurements (no ledger run needed: it only reads what the DSO meters)."""
    model = load_grid(DEFAULT_NETWORK)
    ctx = SimpleNamespace(model=model, sc=SimpleNamespace(seed=7), data=RunData())
    pub = DsoPublication(ctx, plan)  # type: ignore[arg-type]
    net = model.pv_wh - model.load_wh + model.storage_wh
    first = DEFAULT_START_DAY * 96
    for slot in range(first, first + 96):
        meas = SlotMeasurements(slot, {cp: int(net[i, slot])
                                       for i, cp in enumerate(model.cp_ids)})
        pub.after_delivery(None, Delivered(slot, {}, meas))  # type: ignore[arg-type]
    return pub


def test_a_product_past_the_households_budget_is_refused_in_the_summary() -> None:
    plan = PublicationPlan(products=(Product("6 h", 24, 800_000), Product("1 h", 4, 800_000)))
    pub = _publication(plan)
    pub.finish()
    fig = pub.ctx.data.dp_release
    assert fig["epsilon_per_household_day"] == 0.8 <= fig["epsilon_budget_per_household_day"]
    assert fig["dp_refused"] == [{"product": "1 h", "area": "trafo-0",
                                  "day": DEFAULT_START_DAY}]
    assert [p["product"] for p in fig["dp_published"]] == ["6 h"]
    pub.finish()  # publishing again releases nothing new and spends nothing more
    assert pub.accountant.max_spent_micro() == 800_000 and len(pub.published) == 1


def test_the_noise_is_the_dsos_own_and_reproducible() -> None:
    a, b = _publication(PLAN), _publication(PLAN)
    a.finish()
    b.finish()
    assert a.ctx.data.dp_release == b.ctx.data.dp_release
    p = a.published[0]
    assert p.published_import_wh != p.clipped_import_wh          # noise was added


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_the_dp_section_reads_right_in_a_browser(tmp_path: Path, width: int) -> None:
    """The report's DP section with a real release: in the page, nothing clipped, no error."""
    from .browser import open_in_chromium

    pub = _publication(PLAN)
    pub.finish()
    summary, series = make_inputs()
    summary["privacy"] = {"mode": "off", **pub.ctx.data.dp_release}
    sections = DsoPublication.report_sections(summary)
    assert [s.section_id for s in sections] == ["dp"]
    path = tmp_path / "report.html"
    write_report(summary, series, path, extra=sections)
    page = path.read_text(encoding="utf-8")
    assert "Published by the DSO (differential privacy)" in page and "18:00-24:00" in page
    res = open_in_chromium(path, width=width, evaluate={"clipped": _CLIPPED})
    assert res.errors == [] and res.values["clipped"] == []


def test_a_whole_day_is_released_when_the_next_begins_and_its_readings_dropped() -> None:
    """Issue 17: the DSO's publication held every cp's reading of every slot of the run; a
    day is released once the next day's first slot is delivered (in day order, as at the
    end: the same products) and its readings leave memory."""
    model = load_grid(DEFAULT_NETWORK)
    net = model.pv_wh - model.load_wh + model.storage_wh
    first = DEFAULT_START_DAY * 96

    def fed(days: int) -> DsoPublication:
        ctx = SimpleNamespace(model=model, sc=SimpleNamespace(seed=7), data=RunData())
        pub = DsoPublication(ctx, PLAN)  # type: ignore[arg-type]
        for slot in range(first, first + 96 * days):
            meas = SlotMeasurements(slot, {cp: int(net[i, slot % 96 + first])
                                           for i, cp in enumerate(model.cp_ids)})
            pub.after_delivery(None, Delivered(slot, {}, meas))  # type: ignore[arg-type]
            assert len(pub.readings) == 1          # only the day being delivered
        return pub

    two, one = fed(2), fed(1)
    assert {p.day for p in two.published} == {DEFAULT_START_DAY}   # day 1 released already
    two.finish()
    one.finish()
    assert two.readings == {} and {p.day for p in two.published} == {DEFAULT_START_DAY,
                                                                      DEFAULT_START_DAY + 1}
    day1 = [p for p in two.ctx.data.dp_release["dp_published"] if p["day"] == DEFAULT_START_DAY]
    assert day1 == one.ctx.data.dp_release["dp_published"]
