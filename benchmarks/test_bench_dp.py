"""Utility cost of the DSO's DP publication (``gridledger.bench.dp``): error falls with
epsilon and with longer periods; protecting commercial cps with a household clamp costs
mostly clamping bias."""

from gridledger.bench.dp import run


def test_dp_publication_error_follows_epsilon_and_period() -> None:
    r = run(repeats=5, epsilons=(0.5, 1.0, 5.0), periods=(96, 24))
    rows = {(x["epsilon"], x["period_h"], x["protected"]): x for x in r["rows"]}
    hh = "30 households"
    for period in (24, 6):
        errs = [rows[(e, period, hh)]["expected_noise_error_pct"] for e in (0.5, 1.0, 5.0)]
        assert errs == sorted(errs, reverse=True) and errs[0] > errs[-1]
    for eps in (0.5, 1.0, 5.0):
        assert (rows[(eps, 24, hh)]["expected_noise_error_pct"]
                < rows[(eps, 6, hh)]["expected_noise_error_pct"])
    every = rows[(1.0, 6, "every cp")]
    assert every["clipping_error_pct"] > 10 * rows[(1.0, 6, hh)]["clipping_error_pct"]
