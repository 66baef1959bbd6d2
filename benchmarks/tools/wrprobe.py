"""Which weak references grow by day (tenth session): the demo's job (privacy mode), and at
each day's end a census of the live weakref objects by (referent type, holder type, a sample
key when the holder is a dict), one pass over the collector's objects.
usage: PYTHONPATH=<tree>/src python wrprobe.py PROSUMERS DAYS OUT"""
import gc
import sys
import weakref
from collections import Counter
from pathlib import Path

from gridledger.grid import SLOTS_PER_DAY
from gridledger.sim.demo import run_demo, scenario_from_flags
from gridledger.sim.scenario import Scenario

prosumers, days, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
base = scenario_from_flags(prosumers, 24, 4, "default", 7, None, True)
sc = Scenario(**{**base.__dict__, "slots": days * SLOTS_PER_DAY})
out.mkdir(parents=True, exist_ok=True)
log = open(out / "weakrefs.txt", "w")


def census(label: str) -> None:
    gc.collect()
    objs = gc.get_objects()
    wrs = {id(o): o for o in objs if isinstance(o, weakref.ReferenceType)}
    holder: dict[int, object] = {}
    for o in objs:
        if id(o) in wrs:
            continue
        for r in gc.get_referents(o):
            if id(r) in wrs and id(r) not in holder:
                holder[id(r)] = o
    c: Counter = Counter()
    for i, w in wrs.items():
        h = holder.get(i)
        if isinstance(h, dict):
            k = next(iter(h), None)
            hd = f"dict n={len(h)} first key {str(k)[:40]!r}"
        elif isinstance(h, (list, set, tuple)):
            hd = f"{type(h).__qualname__} n={len(h)}"
        elif h is None:
            hd = "-"
        else:
            hd = type(h).__qualname__
        c[(type(w).__qualname__, type(w()).__qualname__, hd)] += 1
    log.write(f"== {label}: {len(wrs)} weakrefs\n")
    for (wt, t, h), n in c.most_common(20):
        log.write(f"  {n}  {wt} -> {t}  held by {h}\n")
    log.flush()


def progress(done: int, total: int, label: str) -> None:
    if done in (1,) or done % SLOTS_PER_DAY == 0:
        census(f"step {done}")


run_demo(sc, out, progress)
