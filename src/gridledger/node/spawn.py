"""Running validator processes as children (tests, benchmarks, one-machine trials)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def spawn_validator(node_dir: Path, nats_urls: list[str], http_port: int, passphrase: str,
                    *extra_args: str) -> subprocess.Popen[bytes]:
    """Start ``gridledger node start`` for ``node_dir`` as a child process (log in the folder)."""
    env = {**os.environ, "GRIDLEDGER_PASSPHRASE": passphrase}
    with open(node_dir / "process.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "gridledger.cli.main", "node", "start",
                                 str(node_dir), "--nats", ",".join(nats_urls),
                                 "--http-port", str(http_port), *extra_args],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM every process, then SIGKILL whatever has not exited in ``timeout_s``."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
