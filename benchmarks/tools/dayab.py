"""One default day in-process, for same-machine A/B runs (issue 17, tenth session).

``gridledger demo``'s defaults (30 participants, 96 slots, 4 validators, the default attacks,
privacy as ``DEMO_PRIVACY``, seed 7) through ``run_demo`` + ``write_outputs`` — the
``default`` run of ``gridledger bench demo`` — printing one JSON line: wall, this process's
CPU, its children's CPU, the run's ``timings``, scenarios mitigated, rejections by rule and
the governance proposals (proposed at, activation, status, yes, no).

usage: PYTHONPATH=<tree>/src python dayab.py
A/B:   for x in A B A B A B; do PYTHONPATH=/tmp/snap/$x/src python dayab.py; done
       (snapshots by ``git archive``, byte-compiled; the whole loop in one heavy hold)
"""
from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import gridledger
from gridledger.grid import load_grid
from gridledger.sim.community import equipment
from gridledger.sim.demo import run_demo, scenario_from_flags, write_outputs
from gridledger.sim.scenario import DEFAULT_NETWORK, DEMO_PRIVACY


def main() -> None:
    equipment(load_grid(DEFAULT_NETWORK))  # the grid's tags once, outside the timing
    sc = scenario_from_flags(30, 24, 4, "default", 7, None, DEMO_PRIVACY)
    with tempfile.TemporaryDirectory(prefix="gl-dayab-") as d:
        w0, c0 = time.perf_counter(), time.process_time()
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary, series = run_demo(sc, Path(d))
        write_outputs(summary, series, Path(d))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = ch1.ru_utime + ch1.ru_stime - ch0.ru_utime - ch0.ru_stime
    props = summary.get("governance", {}).get("proposals", [])
    print(json.dumps({
        "src": gridledger.__file__, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "children_cpu_s": round(children, 2),
        "timings": {k: round(v, 2) for k, v in summary["timings"].items()
                    if isinstance(v, (int, float))},
        "mitigated": sum(a["mitigated"] for a in summary["attacks"].values()),
        "attacks": len(summary["attacks"]),
        "invariants_ok": all(summary["invariants"].values()),
        "rejected": summary["ledger"]["rejected_by_rule"],
        "proposals": [(p["proposed_at"], p["activation"], p["status"], p["yes"], p["no"])
                      for p in props]}))


if __name__ == "__main__":
    main()
