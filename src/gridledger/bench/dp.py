"""Utility cost of the DSO's differentially private publication (issue 19.3).

For the default network's day (``sim.scenario.DEFAULT_NETWORK``, ``DEFAULT_START_DAY``),
every cp's SimBench net profile (PV - load + storage, Wh per slot) is released by
``privacy.publication.publish_day`` under several plans (epsilon per household and day x
period length), each ``repeats`` times with independent seeded noise; the table gives the
mean ``aggregate_error_pct`` (published vs true import/export per period, in % of the true
total) and the clamp's share of it. One row protects every cp, commercial ones included.

Run: ``python -m gridledger.bench.dp`` (about 10 s).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from gridledger.grid import load_grid
from gridledger.privacy.dp import MICRO_EPSILON, PrivacyAccountant
from gridledger.privacy.publication import (
    SLOTS_PER_DAY,
    Product,
    publish_day,
    release_error,
)
from gridledger.privacy.rng import DeterministicRandom
from gridledger.sim.features.publication import PLAN, households_of
from gridledger.sim.scenario import DEFAULT_NETWORK, DEFAULT_START_DAY

EPSILONS = (0.5, 1.0, 2.0, 5.0)
PERIODS = (96, 24, 4)


def run(repeats: int = 20, epsilons: tuple[float, ...] = EPSILONS,
        periods: tuple[int, ...] = PERIODS) -> dict[str, Any]:
    """The table as JSON-able rows ``{epsilon, period_h, protected, aggregate_error_pct,
    clipping_error_pct, expected_noise_error_pct}``."""
    model = load_grid(DEFAULT_NETWORK)
    day = DEFAULT_START_DAY
    first = day * SLOTS_PER_DAY
    net = model.pv_wh - model.load_wh + model.storage_wh
    readings = {cp: {first + s: int(net[i, first + s]) for s in range(SLOTS_PER_DAY)}
                for i, cp in enumerate(model.cp_ids)}
    houses = households_of(model)
    cases = [(eps, p, houses) for eps in epsilons for p in periods]
    cases.append((1.0, 24, frozenset(model.cp_ids)))
    rows = []
    for eps, period, protected in cases:
        micro = int(eps * MICRO_EPSILON)
        plan = replace(PLAN, products=(Product(f"{period} slots", period, micro),),
                       daily_budget_micro=micro)
        errs, first_err = [], None
        for k in range(repeats):
            _, out, _ = publish_day("trafo-0", day, readings, protected, plan,
                                    PrivacyAccountant(micro), DeterministicRandom(k))
            e = release_error(out)
            first_err = first_err or e
            errs.append(float(e["aggregate_error_pct"] or 0.0))
        assert first_err is not None
        rows.append({"epsilon": eps, "period_h": period // 4,
                     "protected": "every cp" if protected != houses else
                     f"{len(houses)} households",
                     "aggregate_error_pct": round(sum(errs) / len(errs), 1),
                     "clipping_error_pct": first_err["clipping_error_pct"],
                     "expected_noise_error_pct": first_err["expected_noise_error_pct"]})
    return {"network": DEFAULT_NETWORK, "day": day, "repeats": repeats,
            "slot_clip_wh": [PLAN.slot_clip.lower_wh, PLAN.slot_clip.upper_wh],
            "day_l1_wh": PLAN.day_l1_wh, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
