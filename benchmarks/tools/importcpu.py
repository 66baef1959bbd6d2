"""What each process of a demo run pays to import its code (issue 17, eleventh session).

For each process entry a fresh interpreter imports what that process imports before any
work, and reports its CPU (user + sys, the interpreter's start included), how many modules
it holds and its peak RSS; one JSON line per entry.

usage: PYTHONPATH=<tree>/src python importcpu.py
A/B:   for x in A B A B A B; do PYTHONPATH=/tmp/snap/$x/src python importcpu.py; done
       (snapshots by ``git archive``, byte-compiled; a tree without ``gridledger.sim.releases``
       gets contract-bug's release from ``sim.attacks.contract_bug``, as before)
"""
from __future__ import annotations

import json
import subprocess
import sys

RELEASE = ("import importlib, importlib.util; importlib.import_module("
           "'gridledger.sim.releases' if importlib.util.find_spec('gridledger.sim.releases') "
           "else 'gridledger.sim.attacks.contract_bug')")
ENTRIES = {
    # _host_main's imports, and the module of the release contract-bug installs (by name)
    "validator host": "from gridledger.node.validator_host import _host_main; "
                      "import gridledger.node.embedded, gridledger.node.sync, "
                      "gridledger.node.validator; " + RELEASE,
    "store follower": "from gridledger.node.verify import _follow_main",
    "demo": "import gridledger.sim.demo",
}
REPORT = ("\nimport json, resource, sys; r = resource.getrusage(resource.RUSAGE_SELF); "
          "print(json.dumps([round(r.ru_utime + r.ru_stime, 3), len(sys.modules), "
          "r.ru_maxrss // 1024]))")


def main() -> None:
    for name, code in ENTRIES.items():
        out = subprocess.run([sys.executable, "-c", code + REPORT], capture_output=True,
                             text=True, check=True).stdout
        cpu, modules, rss = json.loads(out.splitlines()[-1])
        print(json.dumps({"entry": name, "cpu_s": cpu, "modules": modules, "max_rss_mib": rss}))


if __name__ == "__main__":
    main()
