"""Attack analyses: usage inference and deanonymization, with defences on and off."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.privacy.attacks import (
    analyse_deanonymization,
    analyse_usage_inference,
    synthetic_household_loads,
)


@pytest.fixture(scope="module")
def loads() -> np.ndarray:
    return synthetic_household_loads(60, 4, seed=11)


def test_usage_inference_defended_vs_undefended(loads: np.ndarray) -> None:
    feeders = np.arange(60) % 3
    r = analyse_usage_inference(loads, feeders, epsilon_per_slot=1.0, clip_lower_wh=-2000,
                                clip_upper_wh=2000, seed=1)
    assert r.correlation_without_defence == pytest.approx(1.0)
    assert r.residual_correlation_without_defence == pytest.approx(1.0)
    # Defended: no better than the public population profile, and the household-specific
    # part is within the stated bound.
    assert r.correlation_with_defence < r.population_profile_correlation
    assert abs(r.residual_correlation_with_defence) <= r.residual_bound
    assert r.epsilon_per_day == pytest.approx(96.0)


def test_more_noise_means_less_inference(loads: np.ndarray) -> None:
    feeders = np.zeros(60, dtype=np.int64)
    weak = analyse_usage_inference(loads, feeders, epsilon_per_slot=10.0, clip_lower_wh=-2000,
                                   clip_upper_wh=2000, seed=2)
    strong = analyse_usage_inference(loads, feeders, epsilon_per_slot=0.05,
                                     clip_lower_wh=-2000, clip_upper_wh=2000, seed=2)
    assert strong.correlation_with_defence < weak.correlation_with_defence


def test_deanonymization_rotation_reduces_linkage(loads: np.ndarray) -> None:
    r = analyse_deanonymization(loads, seed=3)
    acc = r.accuracy
    assert acc["none"] == 1.0  # defence off: a static pseudonym is linked forever
    assert acc["per-slot"] < acc["daily"] < acc["none"]
    assert acc["per-slot"] <= 0.15 and r.chance == pytest.approx(1 / 60)
