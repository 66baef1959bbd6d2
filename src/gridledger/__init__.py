"""GridLedger: a post-quantum permissioned ledger and transactive energy market."""

import os as _os

# One BLAS / OpenMP thread per process unless the user set it (issue 17): a run already spreads
# over every core in processes (hosted validators, signature pool, store follower, area
# workers), and OpenBLAS's own threads spin waiting for each other on a loaded machine — the
# DSO's envelopes of a 118-cp feeder took 2.2x the CPU with them (BENCHMARKS "seventh").
# Set before numpy loads (this package imports it later); child processes inherit it.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
