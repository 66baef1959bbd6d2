#!/usr/bin/env python
"""Usage: PYTHONPATH=src python benchmarks/tools/setup_rss.py N NETWORK on|off STEPS trace|notrace OUT

RSS after the demo's setup (Engine construction) and after k steps; optional tracemalloc top."""
import sys, time, resource, tracemalloc, os
from pathlib import Path
from gridledger.sim.demo import scenario_from_flags, check_scenario
from gridledger.sim.scenario import Scenario
from gridledger.sim.engine import Engine
n, net, priv, steps, trace = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "on", int(sys.argv[4]), sys.argv[5] == "trace"
out = Path(sys.argv[6])
import shutil
shutil.rmtree(out / "ledger", ignore_errors=True)  # a fresh chain: a stale store holds another genesis
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
if trace:
    tracemalloc.start(int(os.environ.get("FRAMES", "1")))
base = scenario_from_flags(n, 24, 4, "default", 7, net, privacy=priv)
sc = Scenario(**{**base.__dict__, "slots": 96})
model = check_scenario(sc)
print("model", rss(), flush=True)
t = time.perf_counter()
eng = Engine(sc, model, out)
print(f"setup {time.perf_counter()-t:.1f}s rss {rss()} MiB", flush=True)
allsteps = eng.ctx.clock.steps()
for i in range(steps):
    t = time.perf_counter()
    eng.step(allsteps[i])
    print(f"step {i+1} {time.perf_counter()-t:.1f}s rss {rss()} MiB", flush=True)
if trace:
    snap = tracemalloc.take_snapshot()
    for key in ("lineno", "traceback"):
        stats = snap.statistics(key)
        print(f"--- top by {key}; total {sum(s.size for s in stats)/2**20:.0f} MiB")
        for s in stats[:25 if key == "lineno" else 8]:
            print(f"{s.size/2**20:8.1f} MiB {s.count:9d}", s.traceback.format()[-1] if key == "lineno" else "\n   " + "\n   ".join(s.traceback.format()))
eng.ctx.close()
