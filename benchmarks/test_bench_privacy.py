"""Privacy benchmark (quick mode): secure aggregation vs Paillier, measured in one run."""

import pytest

from gridledger.bench.privacy import run


@pytest.mark.slow
def test_secure_aggregation_beats_paillier_and_meets_target():
    r = run(quick=True)
    assert [s["meters"] for s in r["sizes"]] == [100, 1_000]
    for s in r["sizes"]:
        assert s["dropout"] == 0.1 and s["correct"]
        assert s["submitted"] == s["meters"] - s["meters"] // 10
        assert s["secure_aggregation_s"] > 0
        if r["paillier_error"] is None:
            assert s["paillier_correct"]
            # faster than the Paillier peer at every size, by a wide margin
            assert s["paillier_s"] / s["secure_aggregation_s"] >= 5, s
    thousand = r["sizes"][1]
    assert thousand["secure_aggregation_s"] < 1.0, thousand  # target: 1,000 meters < 1 s
