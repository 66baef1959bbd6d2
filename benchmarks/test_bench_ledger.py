"""Ledger throughput benchmark (quick mode): targets are ratios measured in one run."""

import pytest

from gridledger.bench.ledger import run


@pytest.mark.slow
def test_ledger_overhead_at_most_the_signature_check():
    r = run(quick=True)
    for k in ("mldsa65_verify_per_s", "tx_per_s_1_validator", "tx_per_s_4_validators"):
        assert r[k] > 0
    # 1 validator: end-to-end rate >= 50 % of the raw single-core verify rate
    # (checked on CPU time, which other jobs on a shared machine cannot distort)
    assert r["cpu_ratio_1_validator_to_raw_verify"] >= 0.5, r
