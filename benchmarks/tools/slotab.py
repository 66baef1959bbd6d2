"""A few slots of a large community in-process, CPU per engine step, for same-machine A/B
runs of the per-slot cost at scale (issue 17, eleventh session).

``scenario_from_flags(N, …, "default", 7, NETWORK, privacy)`` resized to ``SLOTS`` slots from
``start_slot_of_day = START`` (e.g. 1,000 members on ``1-MVLV-semiurb-all-2-sw``, 3 slots from
10:00 = slot 40), run by ``run_demo``; prints one JSON line: each step's wall, main-process CPU
and children's CPU (live descendants read from ``/proc``, finished ones from
``RUSAGE_CHILDREN``), the whole run's wall / CPU / peak RSS, and the final state root of the
run's ledger (for equality checks between trees with the same commitment).

usage: PYTHONPATH=<tree>/src python slotab.py N SLOTS START NETWORK on|off
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from gridledger.sim.demo import run_demo, scenario_from_flags
from gridledger.sim.scenario import Scenario

TICK = os.sysconf("SC_CLK_TCK")


def _kids_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s live descendants (utime + stime from /proc)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p:
                todo.append(c)
                try:
                    f = open(f"/proc/{c}/stat").read().rsplit(")", 1)[1].split()
                    total += (int(f[11]) + int(f[12])) / TICK
                except (OSError, IndexError, ValueError):
                    pass
    return total


def _children_done() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    n, slots, start, network, privacy = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                         sys.argv[4], sys.argv[5] == "on")
    base = scenario_from_flags(n, 24, 4, "default", 7, network, privacy)
    sc = Scenario(**{**base.__dict__, "slots": slots, "start_slot_of_day": start})
    me = os.getpid()
    steps: list[dict[str, object]] = []
    w0, c0 = time.perf_counter(), time.process_time()
    last = [w0, c0, 0.0]

    def progress(done: int, total: int, label: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        k = _kids_cpu(me) + _children_done()
        steps.append({"step": done, "label": label, "wall_s": round(w - last[0], 2),
                      "main_cpu_s": round(c - last[1], 2), "kids_cpu_s": round(k - last[2], 2)})
        last[:] = [w, c, k]

    with tempfile.TemporaryDirectory(prefix="gl-slotab-") as d:
        summary, _ = run_demo(sc, Path(d), progress)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"src": __import__("gridledger").__file__, "n": n, "slots": slots,
                      "wall_s": round(wall, 1), "main_cpu_s": round(cpu, 1),
                      "children_cpu_s": round(_children_done(), 1),
                      "peak_main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "state_root": summary.get("ledger", {}).get("state_root", ""),
                      "steps": steps}))


if __name__ == "__main__":
    main()
