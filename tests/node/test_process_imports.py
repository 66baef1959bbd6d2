"""What each process of a demo run imports before it does any work (issue 17: the default day
is CPU-bound, and every child process pays its imports on the shared cores).

The validator host (``node.validator_host``, two of the demo's validators) and the store
follower (``node.verify``) only execute and replay blocks: they import the ledger side, never
the simulator, the grid (pandapower, matplotlib) or the API server. The host also imports
every release its operator installs by name (``release_ref``): ``contract-bug``'s faulty bank
lives in ``sim.releases`` for that reason — defined in ``sim.attacks.contract_bug`` it took
the whole attack lab with it (~4.6 s of the host's CPU in the default day). The demo itself
imports the API server only when it serves a dashboard (``--serve``)."""

import subprocess
import sys

from gridledger.node.validator_host import release_ref
from gridledger.sim.releases import FAULTY_BANK

SIMULATOR = ("gridledger.sim.attacks", "gridledger.sim.features", "gridledger.sim.engine",
             "gridledger.grid", "pandapower", "pandas", "matplotlib", "scipy")
SERVER = ("fastapi", "uvicorn", "starlette", "gridledger.api")

_PROBE = """
import importlib, sys
def loaded():
    print(" ".join(sorted(sys.modules)))
from gridledger.node.validator_host import _host_main
import gridledger.node.embedded, gridledger.node.sync, gridledger.node.validator  # _host_main's
importlib.import_module({release_module!r})   # what install_release imports in the host
loaded()
from gridledger.node.verify import _follow_main, _worker_main
loaded()
import gridledger.sim.demo
loaded()
"""


def _heavy(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_validator_processes_import_the_ledger_not_the_simulator_nor_the_server():
    ref = release_ref(FAULTY_BANK)
    assert ref == ("gridledger.sim.releases", "FAULTY_BANK")  # travels by name, from here
    out = subprocess.run([sys.executable, "-c", _PROBE.format(release_module=ref[0])],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    host, follower, demo = (set(line.split()) for line in out)
    assert "gridledger.ledger.modules.catalog" in host and "gridledger.node.verify" in follower
    assert _heavy(host, SIMULATOR + SERVER) == []
    assert _heavy(follower, SIMULATOR + SERVER) == []
    # the demo needs the simulator, not the server it starts only for --serve
    assert "gridledger.sim.attacks" in demo and _heavy(demo, SERVER) == []


def test_the_removal_a_release_defined_among_the_attacks_brings_the_simulator():
    """Removal test: a release defined where ``contract-bug`` defined it before would make
    the host import every attack, the features and the grid."""
    probe = ("import sys; import gridledger.sim.attacks.contract_bug; "
             "print(' '.join(sorted(sys.modules)))")
    mods = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True).stdout.split())
    assert "gridledger.sim.features" in mods and "pandapower" in mods
