"""Memory driver (issue 17, mem helper): run the demo's job with main-process and children RSS
sampled after every engine step; optional tracemalloc snapshots at day boundaries.

usage: PYTHONPATH=<tree>/src python memrun.py PROSUMERS DAYS NETWORK|default on|off OUT [--trace]
       [--hours H] [--attacks default]
Writes OUT/rss.tsv (step, label, wall_s, main_rss_mib, children rss mib, n children) and, with
--trace, OUT/trace_dayN.snap snapshots + OUT/trace_diff.txt (top allocation sites grown from the
end of day 1 to the end of each later day).
"""
from __future__ import annotations

import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path


def rss_kib(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class _MallInfo2(__import__("ctypes").Structure):
    _fields_ = [(n, __import__("ctypes").c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def heap_mib() -> float:
    """glibc's live heap (malloc'd and not freed: uordblks + mmapped hblkhd), in MiB: what the
    process holds, Python and native (OpenSSL keys, numpy), without the allocator's high water."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return (m.uordblks + m.hblkhd) / 2**20


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def main() -> None:
    args = sys.argv[1:]
    trace = "--trace" in args
    hours = None
    attacks = "default"
    if "--hours" in args:
        i = args.index("--hours"); hours = int(args[i + 1]); del args[i:i + 2]
    if "--attacks" in args:
        i = args.index("--attacks"); attacks = args[i + 1]; del args[i:i + 2]
    args = [a for a in args if a != "--trace"]
    prosumers, days, network, privacy, out = int(args[0]), int(args[1]), args[2], args[3], Path(args[4])
    from gridledger.grid import SLOTS_PER_DAY
    from gridledger.sim.demo import run_demo, scenario_from_flags, write_outputs
    from gridledger.sim.scenario import Scenario

    base = scenario_from_flags(prosumers, 24, 4, attacks, 7, None if network == "default" else network,
                               privacy == "on")
    slots = hours * 4 if hours else days * SLOTS_PER_DAY
    sc = Scenario(**{**base.__dict__, "slots": slots})
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "rss.tsv", "w")
    log.write("step\tlabel\twall_s\tmain_mib\tkids_mib\tnkids\tkid_rss\theap_mib\tpyblocks_k\ttraced_mib\n")
    t0 = time.perf_counter()
    me = os.getpid()
    # --trace FROM,A,B: trace allocations from step FROM on (5 frames), snapshots after steps A and B
    tr_from = tr_a = tr_b = 0
    if trace:
        tr_from, tr_a, tr_b = (int(x) for x in os.environ.get("MEMRUN_TRACE", "96,144,240").split(","))
        if tr_from == 0:
            tracemalloc.start(5)
    snaps: list[Path] = []

    def progress(done: int, total: int, label: str) -> None:
        kids = descendants(me)
        krss = [rss_kib(k) for k in kids]
        if trace and done == tr_from:
            tracemalloc.start(5)
        traced = f"\t{tracemalloc.get_traced_memory()[0] / 2**20:.1f}" if tracemalloc.is_tracing() else ""
        log.write(f"{done}\t{label}\t{time.perf_counter() - t0:.1f}\t{rss_kib(me) / 1024:.1f}\t"
                  f"{sum(krss) / 1024:.1f}\t{len(kids)}\t{','.join(str(r // 1024) for r in krss)}"
                  f"\t{heap_mib():.1f}\t{sys.getallocatedblocks() // 1000}{traced}\n")
        log.flush()
        if trace and done in (tr_a, tr_b):
            gc.collect()
            p = out / f"trace_step{done}.snap"
            tracemalloc.take_snapshot().dump(str(p))
            snaps.append(p)
            if done == tr_b:
                tracemalloc.stop()

    summary, series = run_demo(sc, out, progress)
    log.write(f"end\t-\t{time.perf_counter() - t0:.1f}\t{rss_kib(me) / 1024:.1f}\t\t\t\n")
    write_outputs(summary, series, out)
    import resource
    log.write(f"peak_main_mib\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}\n")
    log.close()
    if trace and len(snaps) >= 2:
        tracemalloc.start(1)  # Snapshot.load/compare need no tracing; harmless
        with open(out / "trace_diff.txt", "w") as f:
            first = tracemalloc.Snapshot.load(str(snaps[0]))
            for p in snaps[1:]:
                later = tracemalloc.Snapshot.load(str(p))
                for key in ("lineno", "traceback"):
                    stats = later.compare_to(first, key)
                    f.write(f"==== {p.name} vs {snaps[0].name} by {key}\n")
                    for st in stats[:40]:
                        f.write(f"{st.size_diff / 2**20:+.2f} MiB ({st.count_diff:+d}) {st.size / 2**20:.2f} MiB\n")
                        if key == "traceback":
                            for line in st.traceback.format()[-16:]:
                                f.write("    " + line + "\n")
                        else:
                            f.write(f"    {st.traceback[0]}\n")


if __name__ == "__main__":
    main()
