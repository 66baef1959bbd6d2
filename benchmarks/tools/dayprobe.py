"""Memory by day (issue 17, tenth session): the demo's job with, at each day's end (and after
setup), the main process's RSS after a full collection, the number of Python objects by type
(every object reachable from the collector's containers, each once), the large containers
that grew since the previous day (with what holds them), and each in-process validator
state's key count by prefix.

usage: PYTHONPATH=<tree>/src python dayprobe.py PROSUMERS DAYS on|off OUT [--attacks A]
Writes OUT/days.txt (human-readable) and OUT/days.json.
"""
from __future__ import annotations

import gc
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def prefix_of(key: bytes) -> str:
    first = key.find(b"/")
    if first < 0 or first > 12:
        return key[:8].decode("latin-1")
    second = key.find(b"/", first + 1)
    end = second + 1 if 0 < second <= first + 12 else first + 1
    return key[:end].decode("latin-1")


def states() -> list[Any]:
    from gridledger.ledger.state import State
    return [o for o in gc.get_objects() if isinstance(o, State)]


def type_counts() -> tuple[Counter[str], int]:
    seen: set[int] = set()
    counts: Counter[str] = Counter()
    objs = gc.get_objects()
    for o in objs:
        if id(o) not in seen:
            seen.add(id(o))
            counts[type(o).__qualname__] += 1
        for r in gc.get_referents(o):
            if id(r) not in seen and not gc.is_tracked(r):
                seen.add(id(r))
                counts[type(r).__qualname__] += 1
    return counts, len(seen)


def big_containers(min_len: int = 1000) -> dict[int, tuple[str, int]]:
    out = {}
    for o in gc.get_objects():
        if isinstance(o, (dict, list, set, frozenset, tuple)) or hasattr(o, "__len__"):
            try:
                n = len(o)  # type: ignore[arg-type]
            except Exception:
                continue
            if n >= min_len:
                out[id(o)] = (type(o).__qualname__, n)
    return out


def holder_of(obj_id: int, depth: int = 4) -> str:
    """A short description of what holds the object (class.attribute, module global, key)."""
    target = next((o for o in gc.get_objects() if id(o) == obj_id), None)
    if target is None:
        return "?"
    path = []
    cur = target
    for _ in range(depth):
        refs = [r for r in gc.get_referrers(cur) if r is not sys._getframe()
                and not isinstance(r, type(sys._getframe()))]
        name = None
        for r in refs:
            if isinstance(r, dict):
                for k, v in r.items():
                    if v is cur:
                        owners = [o for o in gc.get_referrers(r) if getattr(o, "__dict__", None) is r]
                        mods = [m for m in sys.modules.values() if getattr(m, "__dict__", None) is r]
                        if owners:
                            name = f"{type(owners[0]).__qualname__}.{k}"
                            cur = owners[0]
                        elif mods:
                            name = f"{mods[0].__name__}.{k}"
                            cur = None
                        else:
                            name = f"[{str(k)[:30]}]"
                            cur = r
                        break
            if name:
                break
        if name is None:
            slotted = [r for r in refs if hasattr(type(r), "__slots__") or hasattr(r, "__dict__")]
            name = f"<{type(refs[0]).__qualname__ if refs else '-'}>"
            cur = slotted[0] if slotted else None
        path.append(name)
        if cur is None:
            break
    return " <- ".join(path)


def main() -> None:
    args = sys.argv[1:]
    attacks = "default"
    if "--attacks" in args:
        i = args.index("--attacks"); attacks = args[i + 1]; del args[i:i + 2]
    prosumers, days, privacy, out = int(args[0]), int(args[1]), args[2], Path(args[3])
    from gridledger.grid import SLOTS_PER_DAY
    from gridledger.sim.demo import run_demo, scenario_from_flags
    from gridledger.sim.scenario import Scenario

    base = scenario_from_flags(prosumers, 24, 4, attacks, 7, None, privacy == "on")
    sc = Scenario(**{**base.__dict__, "slots": days * SLOTS_PER_DAY})
    out.mkdir(parents=True, exist_ok=True)
    txt = open(out / "days.txt", "w")
    rows: list[dict[str, Any]] = []
    prev_types: Counter[str] = Counter()
    prev_big: dict[int, tuple[str, int]] = {}
    t0 = time.perf_counter()

    def probe(label: str) -> None:
        nonlocal prev_types, prev_big
        gc.collect()
        counts, total = type_counts()
        big = big_containers()
        sts = sorted(states(), key=lambda s: -len(s.keys_with_prefix(b"")))
        by_prefix: Counter[str] = Counter()
        nkeys = 0
        if sts:
            keys = sts[0].keys_with_prefix(b"")
            nkeys = len(keys)
            by_prefix.update(prefix_of(k) for k in keys)
        row = {"label": label, "wall_s": round(time.perf_counter() - t0, 1),
               "rss_mib": round(rss_mib(), 1), "objects": total, "states": len(sts),
               "state_keys": nkeys, "by_prefix": dict(by_prefix.most_common())}
        rows.append(row)
        txt.write(f"==== {label}: wall {row['wall_s']} s, RSS {row['rss_mib']} MiB, "
                  f"objects {total}, states {len(sts)}, validator state keys {nkeys}\n")
        txt.write("  prefixes: " + ", ".join(f"{p}={n}" for p, n in by_prefix.most_common(25)) + "\n")
        if prev_types:
            grew = sorted(((counts[t] - prev_types[t], t) for t in counts), reverse=True)[:25]
            txt.write("  types grown: " + ", ".join(f"{t}+{d}" for d, t in grew if d > 0) + "\n")
            growth = sorted(((n - prev_big[i][1], i, tp, n) for i, (tp, n) in big.items()
                             if i in prev_big), reverse=True)[:12]
            new = sorted(((n, i, tp) for i, (tp, n) in big.items() if i not in prev_big),
                         reverse=True)[:8]
            for d, i, tp, n in growth:
                if d > 0:
                    txt.write(f"  grew {tp} +{d} -> {n}: {holder_of(i)}\n")
            for n, i, tp in new:
                txt.write(f"  new {tp} {n}: {holder_of(i)}\n")
        else:
            txt.write("  types: " + ", ".join(f"{t}={n}" for t, n in counts.most_common(25)) + "\n")
        txt.flush()
        prev_types, prev_big = counts, big

    def progress(done: int, total: int, label: str) -> None:
        if done == 1 or done % SLOTS_PER_DAY == 0:
            probe(f"step {done} ({label})")

    run_demo(sc, out, progress)
    probe("after run")
    (out / "days.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
