"""How long certification stalls when one of the three NATS servers is killed (kill -9).

Starts 3 NATS JetStream servers (R=3) and 4 validator processes on loopback (as
tests/integration do), finalises a transfer, kills the first server, then times six
transfers through validator 3 (submit to certified receipt) and prints every validator's
certified height each second while they run, then the servers' leader elections (their logs).
The first transfer's time is the stall: the JetStream elections plus whatever the
validators need to hear votes and read the log again (docs/architecture.md, "A NATS
server's death costs seconds").

usage: PYTHONPATH=<tree>/src python natskill.py
A/B:   for i in 1 2 3 4; do for t in A B; do PYTHONPATH=/tmp/snap/$t/src python natskill.py \
         | grep '^transfer 0'; done; done
"""
from __future__ import annotations

import datetime
import glob
import re
import tempfile
import threading
import time
from pathlib import Path

import httpx

from gridledger.client import Client
from gridledger.crypto.keystore import load_key
from gridledger.node.nats_cluster import NatsCluster, free_port
from gridledger.node.network_files import init_network
from gridledger.node.spawn import spawn_validator, stop_processes

PASS = "natskill"


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gl-natskill-"))
    cluster = NatsCluster(tmp / "nats").start()
    time.sleep(1)
    dirs = init_network(tmp / "net", 4, 4, "natskill", PASS, scrypt_n=2**12)
    ports = [free_port() for _ in dirs]
    procs = [spawn_validator(d, cluster.urls, p, PASS, "--tick-s", "0.5")
             for d, p in zip(dirs, ports, strict=True)]

    def height(port: int) -> int | None:
        try:
            return int(httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=2).json()["height"])
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    try:
        deadline = time.monotonic() + 120
        while not all((height(p) or 0) >= 1 for p in ports):
            if time.monotonic() > deadline:
                raise SystemExit("the validators did not finalise in 120 s")
            time.sleep(0.2)
        keys = [load_key(tmp / "net" / "participants" / f"p{i}.key.json", PASS) for i in range(4)]
        c3 = Client(f"http://127.0.0.1:{ports[3]}", keys[3])
        c3.transfer(keys[0].address, 5, wait=True, timeout_s=60)
        stop = threading.Event()
        t0 = time.monotonic()

        def monitor() -> None:
            while not stop.is_set():
                print(f"  t+{time.monotonic() - t0:5.1f} s certified heights "
                      f"{[height(p) for p in ports]}", flush=True)
                time.sleep(1.0)

        print("kill", cluster.servers[0].name, "at",
              datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S.%f"), flush=True)
        t0 = time.monotonic()
        cluster.servers[0].kill()
        threading.Thread(target=monitor, daemon=True).start()
        for i in range(6):
            a = time.monotonic()
            r = c3.transfer(keys[0].address, 5, wait=True, timeout_s=120)
            print(f"transfer {i}: {time.monotonic() - a:.2f} s (since kill "
                  f"{time.monotonic() - t0:.2f} s) height {r['height']}", flush=True)
        stop.set()
    finally:
        stop_processes(procs)
        cluster.stop()
    for f in sorted(glob.glob(str(tmp / "nats" / "*.log"))):
        for line in Path(f).read_text().splitlines():
            if re.search("new (stream|consumer) leader|metadata leader", line):
                print(Path(f).name, line.strip()[:170])


if __name__ == "__main__":
    main()
