"""RSS after day 1 (issue 17, thirteenth session): the demo's job with, at each day's end,
the main process's RSS (after a full collection and malloc_trim, as the engine does), the
validator host's RSS, the lengths of the run's bounded logs, memos and caches, and (from the
end of day 1, so day 1 runs at full speed) a tracemalloc diff against the previous day's end,
grouped by allocation traceback: every site whose live memory grew.

usage: PYTHONPATH=<tree>/src python memprobe.py PROSUMERS DAYS on|off OUT [--no-trace]
Writes OUT/mem.txt and OUT/mem.json.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any


def rss_mib(pid: int | str = "self") -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def host_pids() -> list[int]:
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = open(f"/proc/{d}/cmdline", "rb").read()
        except OSError:
            continue
        if ppid == me and b"_host_main" in cmd:
            out.append(int(d))
    return out


def sizes() -> dict[str, int]:
    """Lengths of the structures that earlier sessions saw grow over days."""
    import importlib
    out: dict[str, int] = {}
    for mod, name in [("gridledger.ledger.tx", "_DECODED"), ("gridledger.ledger.record", "_STORED"),
                      ("gridledger.ledger.modules.certificates.keeper", "_CACHE"),
                      ("gridledger.ledger.modules.metering.keeper", "_READINGS"),
                      ("gridledger.ledger.modules.registry.keeper", "_DECODED"),
                      ("gridledger.ledger.modules.privacy.keeper", "_DECODED"),
                      ("gridledger.ledger.state", "_SHARED"), ("gridledger.ledger.codec", "_ORDERS")]:
        try:
            obj = getattr(importlib.import_module(mod), name)
            out[f"{mod.split('.')[-2] if mod.endswith('keeper') else mod.split('.')[-1]}.{name}"] = len(obj)
        except Exception:
            pass
    for o in gc.get_objects():
        tn = type(o).__qualname__
        if tn in ("EventLog", "TxLog", "SigCache", "SlotLog", "CountLog", "ByteMap", "BlobMap"):
            try:
                n = len(getattr(o, "_mem", getattr(o, "_ok", o)))
            except Exception:
                continue
            key = f"{tn}@{id(o):x}" if tn in ("SlotLog",) else tn
            out[key] = max(out.get(key, 0), n)
        mod = getattr(type(o), "__module__", "")
        if isinstance(mod, str) and mod.startswith(("gridledger.sim.features", "gridledger.sim.attacks",
                           "gridledger.sim.context", "gridledger.sim.engine",
                           "gridledger.api.dashboard")) and hasattr(o, "__dict__"):
            for attr, val in vars(o).items():
                if isinstance(val, (dict, list, set)):
                    n = len(val) + (sum(len(v) for v in val.values() if isinstance(v, list))
                                    if isinstance(val, dict) else 0)
                    if n >= 50:
                        out[f"{tn}.{attr}"] = n
    return out


def main() -> None:
    args = sys.argv[1:]
    trace = "--no-trace" not in args
    args = [a for a in args if a != "--no-trace"]
    prosumers, days, privacy, out = int(args[0]), int(args[1]), args[2], Path(args[3])
    from gridledger.grid import SLOTS_PER_DAY
    from gridledger.sim.demo import run_demo, scenario_from_flags
    from gridledger.sim.scenario import Scenario

    base = scenario_from_flags(prosumers, 24, 4, "default", 7, None, privacy == "on")
    sc = Scenario(**{**base.__dict__, "slots": days * SLOTS_PER_DAY})
    out.mkdir(parents=True, exist_ok=True)
    txt = open(out / "mem.txt", "w")
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    prev: list[Any] = [None]
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except OSError:
        trim = None

    def probe(label: str) -> None:
        gc.collect()
        if trim is not None:
            trim(0)
        hosts = host_pids()
        row = {"label": label, "wall_s": round(time.perf_counter() - t0, 1),
               "cpu_s": round(time.process_time() - cpu0, 1),
               "children_cpu_s": round(sum(os.times()[2:4]), 1),
               "rss_mib": round(rss_mib(), 1),
               "host_rss_mib": [round(rss_mib(p), 1) for p in hosts],
               "traced_mib": round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
               if tracemalloc.is_tracing() else None,
               "sizes": sizes()}
        rows.append(row)
        txt.write(f"==== {label}: wall {row['wall_s']} s, cpu {row['cpu_s']} s, children cpu "
                  f"{row['children_cpu_s']} s, RSS {row['rss_mib']} MiB, host "
                  f"{row['host_rss_mib']}, traced {row['traced_mib']}\n  sizes: "
                  + ", ".join(f"{k}={v}" for k, v in sorted(row["sizes"].items())) + "\n")
        if trace and tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            if prev[0] is not None:
                diff = snap.compare_to(prev[0], "traceback")
                grew = [d for d in diff if d.size_diff > 0]
                tot = sum(d.size_diff for d in diff)
                txt.write(f"  traced net {tot / 2**20:+.1f} MiB; top sites:\n")
                for d in grew[:30]:
                    fr = " <- ".join(f"{f.filename.split('src/gridledger/')[-1]}:{f.lineno}"
                                     for f in list(d.traceback)[:6])
                    txt.write(f"   {d.size_diff / 2**20:+7.2f} MiB {d.count_diff:+7d} blk  {fr}\n")
            prev[0] = snap
        elif trace:
            tracemalloc.start(8)
        txt.flush()

    def progress(done: int, total: int, label: str) -> None:
        if done % SLOTS_PER_DAY == 0:
            probe(f"step {done} ({label})")

    run_demo(sc, out, progress)
    probe("after run")
    (out / "mem.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
