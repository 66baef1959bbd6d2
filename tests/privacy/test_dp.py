"""Discrete-Laplace sampling, clipping and the per-day privacy accountant."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.privacy.dp import (
    ClipBound,
    DpParams,
    PrivacyAccountant,
    clip_reading,
    release_total,
    sample_discrete_laplace,
    sample_noise,
)
from gridledger.privacy.errors import BudgetExceeded, PrivacyError
from gridledger.privacy.rng import DeterministicRandom


def test_sampler_matches_the_discrete_laplace_pmf() -> None:
    # scale 2: P[y] = (1 - a) / (1 + a) * a^|y|, a = exp(-1/2)
    rng = DeterministicRandom(1)
    n = 6000
    draws = [sample_discrete_laplace(2, 1, rng) for _ in range(n)]
    a = math.exp(-0.5)
    chi2 = 0.0
    for y in range(-4, 5):
        expected = n * (1 - a) / (1 + a) * a ** abs(y)
        chi2 += (draws.count(y) - expected) ** 2 / expected
    tail_expected = n * 2 * a**5 / (1 + a)
    tail = sum(1 for d in draws if abs(d) >= 5)
    chi2 += (tail - tail_expected) ** 2 / tail_expected
    assert chi2 < 30  # 9 dof: p ~ 5e-4
    assert abs(sum(draws) / n) < 0.15  # symmetric


def test_rational_scale_and_spread() -> None:
    rng = DeterministicRandom(2)
    params = DpParams(epsilon_micro=500_000, sensitivity_wh=100)  # scale 200 Wh
    draws = [sample_noise(params, rng) for _ in range(2000)]
    std = (sum(d * d for d in draws) / len(draws)) ** 0.5
    assert 0.85 * params.noise_std_wh() < std < 1.15 * params.noise_std_wh()
    assert max(abs(d) for d in draws) <= params.noise_bound_wh(1e-6)


@settings(max_examples=50, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(-5000, 0), st.integers(0, 5000))
def test_clip_bounds_sensitivity(reading: int, lo: int, hi: int) -> None:
    c = ClipBound(lo, hi)
    assert lo <= clip_reading(reading, c) <= hi
    assert c.sensitivity_wh == hi - lo


def test_release_adds_integer_noise() -> None:
    v = release_total(10_000, DpParams(1_000_000, 50), DeterministicRandom(3))
    assert isinstance(v, int)


def test_accountant_composes_sequentially_per_feeder_and_day() -> None:
    acc = PrivacyAccountant(daily_budget_micro=1_000_000)
    for slot in range(4):
        acc = acc.charge("f1", 7, 250_000, f"slot {slot}")
    assert acc.remaining_micro("f1", 7) == 0
    with pytest.raises(BudgetExceeded):
        acc.charge("f1", 7, 1)
    acc = acc.charge("f1", 8, 500_000).charge("f2", 7, 1_000_000)  # other day / feeder
    report = acc.report()
    assert report["releases"] == 6
    rows = {(r["feeder_id"], r["day"]): r for r in report["feeders"]}
    assert rows[("f1", 7)]["spent_epsilon"] == 1.0 and rows[("f1", 8)]["remaining_epsilon"] == 0.5


def test_accountant_state_is_order_independent() -> None:
    a = PrivacyAccountant(10).charge("x", 1, 1).charge("y", 1, 2)
    b = PrivacyAccountant(10).charge("y", 1, 2).charge("x", 1, 1)
    assert a.spent == b.spent


def test_bad_parameters_rejected() -> None:
    with pytest.raises(PrivacyError):
        DpParams(0, 10)
    with pytest.raises(PrivacyError):
        ClipBound(5, 1)
    with pytest.raises(PrivacyError):
        PrivacyAccountant(10).charge("f", 1, 0)
