"""The DSO's user-level DP release: day clamp, sensitivity, per-household-day accountant,
vector release, and that the published error matches the calibrated noise scale."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.privacy.dp import (
    MICRO_EPSILON,
    ClipBound,
    DpParams,
    PrivacyAccountant,
    clip_day,
    day_sensitivity_wh,
    expected_abs_noise_wh,
    release_vector,
)
from gridledger.privacy.errors import BudgetExceeded, PrivacyError
from gridledger.privacy.publication import (
    Product,
    PublicationPlan,
    publish_day,
    release_error,
)
from gridledger.privacy.rng import DeterministicRandom

CLIP = ClipBound(-2000, 2000)
HOUSES = [f"h{i:02d}" for i in range(12)]

charges = st.lists(st.tuples(st.lists(st.sampled_from(HOUSES), min_size=1, max_size=5),
                             st.integers(0, 2), st.integers(1, 600_000)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(charges, st.integers(1, 2_000_000))
def test_accountant_never_exceeds_the_budget_and_composes_by_sum(
        seq: list[tuple[list[str], int, int]], budget: int) -> None:
    acc = PrivacyAccountant(budget)
    accepted: dict[tuple[str, int], int] = {}
    for units, day, eps in seq:
        before = acc
        try:
            acc = acc.charge_all(units, day, eps)
        except BudgetExceeded:
            # all or nothing: one household over budget refuses the whole release
            assert any(accepted.get((u, day), 0) + eps > budget for u in units)
            assert acc is before and acc.spent == before.spent
            continue
        for u in set(units):
            accepted[(u, day)] = accepted.get((u, day), 0) + eps
        assert all(e <= budget for _, _, e in acc.spent)
    # basic composition: what a household spent on a day is the sum of its accepted releases
    assert {(u, d): e for u, d, e in acc.spent} == accepted
    assert acc.max_spent_micro() == max(accepted.values(), default=0) <= budget


@settings(max_examples=100, deadline=None)
@given(charges)
def test_accountant_state_does_not_depend_on_charge_order(
        seq: list[tuple[list[str], int, int]]) -> None:
    big = 10**12
    a, b = PrivacyAccountant(big), PrivacyAccountant(big)
    for units, day, eps in seq:
        a = a.charge_all(units, day, eps)
    for units, day, eps in reversed(seq):
        b = b.charge_all(reversed(units), day, eps)
    assert a.spent == b.spent


def test_a_release_past_the_budget_names_the_household_and_charges_nobody() -> None:
    acc = PrivacyAccountant(MICRO_EPSILON).charge_all(["h1", "h2"], 3, 700_000)
    acc = acc.charge_all(["h3"], 3, 900_000)
    with pytest.raises(BudgetExceeded, match="h3 day 3") as e:
        acc.charge_all(["h1", "h3"], 3, 200_000)
    assert e.value.rule == "dp-budget-exceeded"
    assert acc.spent_micro("h1", 3) == 700_000       # untouched by the refused release
    assert acc.charge_all(["h1", "h3"], 4, 1_000_000).spent_micro("h3", 4) == 1_000_000
    with pytest.raises(PrivacyError):
        acc.charge_all([], 3, 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-20_000, 20_000), min_size=1, max_size=96),
       st.integers(1, 50_000))
def test_clip_day_bounds_each_slot_and_the_day(values: list[int], day_l1: int) -> None:
    out = clip_day(values, CLIP, day_l1)
    assert len(out) == len(values)
    assert all(CLIP.lower_wh <= v <= CLIP.upper_wh for v in out)
    assert sum(abs(v) for v in out) <= day_l1
    assert all(v * w >= 0 and abs(v) <= abs(w) for v, w in zip(out, values, strict=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-20_000, 20_000), min_size=96, max_size=96),
       st.lists(st.integers(-20_000, 20_000), min_size=96, max_size=96),
       st.sampled_from([1, 4, 24, 96]))
def test_replacing_one_households_day_moves_the_release_by_at_most_the_sensitivity(
        a: list[int], b: list[int], period: int) -> None:
    day_l1 = 20_000
    ca, cb = clip_day(a, CLIP, day_l1), clip_day(b, CLIP, day_l1)

    def bucket(curve: list[int]) -> list[int]:
        imp = [0] * (96 // period)
        exp = [0] * (96 // period)
        for s, v in enumerate(curve):
            (exp if v >= 0 else imp)[s // period] += abs(v)
        return imp + exp

    moved = sum(abs(x - y) for x, y in zip(bucket(ca), bucket(cb), strict=True))
    assert moved <= day_sensitivity_wh(CLIP, day_l1, 96) == 40_000


def test_vector_release_error_matches_the_calibrated_scale() -> None:
    # each coordinate gets discrete-Laplace noise of scale sensitivity / epsilon: its mean
    # absolute error and variance must match the distribution's (seeded, bounded: 4 sigma)
    params = DpParams(epsilon_micro=MICRO_EPSILON, sensitivity_wh=40_000)
    truth = [50_000, 120_000, 80_000, 10_000] * 500
    noisy = release_vector(truth, params, DeterministicRandom(19))
    errs = [y - x for x, y in zip(truth, noisy, strict=True)]
    n = len(errs)
    a = math.exp(-1 / params.scale_wh)
    mean_abs, var = expected_abs_noise_wh(params), 2 * a / (1 - a) ** 2
    se_abs = math.sqrt((var - mean_abs**2) / n)
    assert abs(sum(abs(e) for e in errs) / n - mean_abs) < 4 * se_abs
    assert abs(sum(errs) / n) < 4 * math.sqrt(var / n)                   # unbiased
    assert 0.9 < (sum(e * e for e in errs) / n) / var < 1.1
    assert mean_abs == pytest.approx(params.scale_wh, rel=1e-3)  # E|Y| ~ b for b >> 1 Wh


def _day(households: int, others: int) -> dict[str, dict[int, int]]:
    rng = DeterministicRandom(5)
    out = {}
    for i in range(households):
        out[f"h{i:02d}"] = {s: -(100 + rng(1)[0] // 4) if s % 96 < 72 else 100 for s in range(96)}
    for i in range(others):
        out[f"c{i:02d}"] = dict.fromkeys(range(96), -5000)   # a commercial load, over the clamp
    return out


def test_publish_day_clamps_households_sums_others_exactly_and_charges_once() -> None:
    readings = _day(30, 2)
    houses = frozenset(cp for cp in readings if cp.startswith("h"))
    plan = PublicationPlan()
    acc, out, refused = publish_day("trafo-0", 136, readings, houses, plan,
                                    PrivacyAccountant(plan.daily_budget_micro),
                                    DeterministicRandom(1))
    assert refused == [] and len(out) == 1
    p = out[0]
    assert p.period_starts == (0, 24, 48, 72) and (p.households, p.other_cps) == (30, 2)
    assert p.sensitivity_wh == 40_000 and p.epsilon_micro == MICRO_EPSILON
    # households' days are within the clamp here, so only the noise differs from the truth
    assert p.clipped_import_wh == p.true_import_wh
    assert p.true_import_wh[0] == sum(-v for c in readings.values() for s, v in c.items()
                                      if s < 24 and v < 0)
    assert all(x >= 0 for x in (*p.published_import_wh, *p.published_export_wh))
    assert acc.max_spent_micro(136) == MICRO_EPSILON
    assert {u for u, _, _ in acc.spent} == houses           # commercial cps not accounted
    err = release_error(out)
    assert err["clipping_error_pct"] == 0.0
    assert err["aggregate_error_pct"] is not None and err["aggregate_error_pct"] > 0


def test_a_product_past_the_budget_is_refused_and_not_published() -> None:
    readings = _day(5, 0)
    plan = PublicationPlan(products=(Product("6 h", 24, 700_000), Product("1 h", 4, 700_000)))
    acc, out, refused = publish_day("a", 1, readings, frozenset(readings), plan,
                                    PrivacyAccountant(plan.daily_budget_micro),
                                    DeterministicRandom(2))
    assert [p.product for p in out] == ["6 h"] and refused == ["1 h"]
    assert acc.max_spent_micro(1) == 700_000
    # the next day has its own budget; the same day stays refused
    acc, out2, _ = publish_day("a", 2, readings, frozenset(readings), plan, acc,
                               DeterministicRandom(3))
    assert [p.product for p in out2] == ["6 h"]
    _, out3, refused3 = publish_day("a", 1, readings, frozenset(readings), plan, acc,
                                    DeterministicRandom(4))
    assert out3 == [] and refused3 == ["6 h", "1 h"]


def test_an_area_without_households_is_published_exactly_and_charges_nothing() -> None:
    readings = _day(0, 3)
    acc, out, _ = publish_day("a", 1, readings, frozenset(), PublicationPlan(),
                              PrivacyAccountant(MICRO_EPSILON), DeterministicRandom(1))
    assert out[0].published_import_wh == out[0].true_import_wh and out[0].epsilon_micro == 0
    assert acc.spent == ()


def test_bad_plans_are_refused() -> None:
    with pytest.raises(PrivacyError, match="divide"):
        Product("x", 7, 1)
    with pytest.raises(PrivacyError):
        Product("x", 4, 0)
    with pytest.raises(PrivacyError):
        PublicationPlan(products=())
    with pytest.raises(PrivacyError):
        clip_day([1], CLIP, 0)
