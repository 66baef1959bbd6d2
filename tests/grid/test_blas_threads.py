"""One BLAS thread per process (``gridledger/__init__``): the run's processes already use
every core, and OpenBLAS's threads spin against each other on a loaded machine."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("import gridledger, numpy, scipy.sparse.linalg, scipy.optimize\n"
         "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('Threads')),"
         " os.environ['OPENBLAS_NUM_THREADS'])")


def threads(**env: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", "import os\n" + PROBE], env=base | env,
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), out[1]


def test_the_package_loads_numerics_on_one_thread_unless_the_user_says_otherwise() -> None:
    assert threads() == (1, "1")           # numpy's and scipy's OpenBLAS start no threads
    n, val = threads(OPENBLAS_NUM_THREADS="2")
    assert val == "2" and n > 1           # the user's setting is kept (and takes effect)
