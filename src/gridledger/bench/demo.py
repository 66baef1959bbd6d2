"""Demo benchmark: how long the README's main job takes, and what the attacks cost.

Runs, in one process, side by side:

* ``default`` — ``gridledger demo`` exactly as a newcomer runs it (30 participants, 96 slots,
  4 validators, the default attacks), including verify-chain of all four stores;
* ``honest`` — the same day with ``--attacks none`` (the baseline).

Reports wall and CPU seconds of each, their ratio (the attacks' overhead: mostly the flood's
signature checks and the byzantine validator's extra votes), and the per-slot rate. Target:
the default demo under 2 minutes. ``--quick`` runs 16 slots of each and projects a day.

Run: ``gridledger bench demo`` (or ``python -m gridledger.bench.demo [--quick]``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 120.0


def _one(attacks: str, slots: int) -> dict[str, Any]:
    from gridledger.sim.demo import run_demo, scenario_from_flags, write_outputs
    from gridledger.sim.scenario import Scenario

    base = scenario_from_flags(30, 24, 4, attacks, 7, None)
    sc = Scenario(**{**base.__dict__, "slots": slots})
    with tempfile.TemporaryDirectory(prefix="gl-bench-demo-") as d:
        w0, c0 = time.perf_counter(), time.process_time()
        summary, series = run_demo(sc, Path(d))
        write_outputs(summary, series, Path(d))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"attacks": list(sc.attacks), "slots": slots, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "wall_per_slot_s": round(wall / slots, 4),
            "txs": summary["ledger"]["txs"], "blocks": summary["ledger"]["blocks"],
            "verify_chain_s": summary["timings"]["verify_chain_s"],
            "all_mitigated": all(a["mitigated"] for a in summary["attacks"].values()),
            "invariants_ok": all(summary["invariants"].values())}


def run(quick: bool = False) -> dict[str, Any]:
    slots = 16 if quick else 96
    # warm-up outside the timings: load the grid and its SimBench tags once (cached)
    from gridledger.grid import load_grid
    from gridledger.sim.community import equipment
    from gridledger.sim.scenario import DEFAULT_NETWORK

    equipment(load_grid(DEFAULT_NETWORK))
    honest = _one("none", slots)
    default = _one("default", slots)
    scale = 96 / slots
    return {
        "slots": slots,
        "default": default,
        "honest": honest,
        "attack_overhead_ratio": round(default["wall_s"] / honest["wall_s"], 2),
        "default_day_s": round(default["wall_s"] * scale, 1),
        "target_s": TARGET_S,
        "meets_target": default["wall_s"] * scale < TARGET_S,
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
