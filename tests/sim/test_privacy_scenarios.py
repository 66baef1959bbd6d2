"""Privacy scenarios of the attack lab, each with its defence and with it removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.test_demo import MIDDAY, check_defended, run, undefended

pytestmark = pytest.mark.slow


def test_bad_aggregator_is_left_out_and_its_sum_rejected(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    r = check_defended(run(tmp_path / "on", ("bad-aggregator",), start=MIDDAY),
                       "bad-aggregator")
    assert r["detected"] == r["injected"] and r["wrong_totals_accepted"] == 0
    from gridledger.crypto.shamir import Decoded, Share, reconstruct_secret
    from gridledger.ledger.modules.privacy import aggregation

    # defence removed: validators take the last t partial sums at their word
    def trusting(shares: list[Share], t: int, min_agree: int | None = None) -> Decoded:
        return Decoded(reconstruct_secret(shares[-t:], t), ())

    monkeypatch.setattr(aggregation, "decode_shares", trusting)
    off = undefended(tmp_path / "off", "bad-aggregator", start=MIDDAY)
    assert off is not None and off["detected"] == 0 and off["wrong_totals_accepted"] > 0
    assert not off["mitigated"]


def test_usage_inference_and_deanonymize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("usage-inference", "deanonymize")
    s = run(tmp_path / "on", names, start=MIDDAY, slots=32)
    u, d = s["attacks"]["usage-inference"], s["attacks"]["deanonymize"]
    assert u["mitigated"] and d["mitigated"]
    assert u["correlation_without_defence"] > 0.95  # readings in the clear give it all away
    assert abs(u["residual_correlation_with_defence"]) <= u["residual_bound"]
    assert abs(u["curious_aggregator_correlation"]) <= u["residual_bound"]
    assert d["linkage_accuracy"]["none"] == 1.0
    assert d["linkage_accuracy"]["per-slot"] <= d["per_slot_bound"]
    # defences removed: threshold 1 (one aggregator holds every reading), static pseudonyms
    from gridledger.privacy.aggregation import Committee
    from gridledger.sim import community
    from gridledger.sim.privacy_attacks import Deanonymize

    monkeypatch.setattr(community, "AGGREGATOR_THRESHOLD", 1)
    monkeypatch.setattr(Committee, "__post_init__", lambda self: None)  # it refuses t = 1
    monkeypatch.setattr(Deanonymize, "rotation", "none")
    off = run(tmp_path / "off", names, start=MIDDAY, slots=32)["attacks"]
    assert off["usage-inference"]["curious_aggregator_correlation"] > 0.95
    assert not off["usage-inference"]["mitigated"] and not off["deanonymize"]["mitigated"]
