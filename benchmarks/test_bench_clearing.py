"""Quick clearing benchmark: shape of the report and the speed targets (ratios, plus one
generous absolute bound for 100k orders)."""

from __future__ import annotations

import pytest

from gridledger.bench.clearing import run


@pytest.fixture(scope="module")
def report() -> dict:  # type: ignore[type-arg]
    return run(quick=True)


def test_shape(report: dict) -> None:  # type: ignore[type-arg]
    assert isinstance(report["peer"], str) and report["peer"].startswith("pymarket")
    assert [row["orders"] for row in report["sizes"]] == [1_000, 10_000, 100_000]
    for row in report["sizes"]:
        assert {"orders", "gridledger_s", "peer_s"} <= row.keys()
        assert isinstance(row["gridledger_s"], float) and row["gridledger_s"] > 0
        assert row["peer_s"] is None or (isinstance(row["peer_s"], float) and row["peer_s"] > 0)
        assert row["gridledger_volume_wh"] > 0


def test_100k_orders_well_under_a_second(report: dict) -> None:  # type: ignore[type-arg]
    row = next(r for r in report["sizes"] if r["orders"] == 100_000)
    # Typically ~0.1-0.25 s on a shared 2-core box; the bound is generous for noisy CI.
    assert row["gridledger_s"] < 1.0


def test_at_least_100x_faster_than_peer(report: dict) -> None:  # type: ignore[type-arg]
    timed = [r for r in report["sizes"] if r["peer_s"] is not None]
    if not timed:
        pytest.skip(f"peer did not run: {report['sizes'][0]['peer_status']}")
    for r in timed:
        assert r["peer_s"] / r["gridledger_s"] >= 100, r
