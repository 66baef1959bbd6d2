"""``gridledger bench network``: 4 validator processes on a 3-server JetStream cluster.

In one run: throughput and finality latency (submission -> the block holding the
transaction is certified and stored, seen on validator 0's event stream) of pre-signed
transfers submitted in batches to the four validators' HTTP APIs, and the same workload on
the embedded network (4 in-process validators, local orderer) as the baseline.
Everything listens on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import httpx

from gridledger.crypto.keystore import load_key
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.tx import sign_tx

PASS = "bench-network"


def _start(node_dir: Path, urls: list[str], port: int) -> subprocess.Popen[bytes]:
    from gridledger.node.process import spawn_validator

    return spawn_validator(node_dir, urls, port, PASS, "--tick-s", "0.2",  # type: ignore[no-any-return]
                           "--quota-rate", "1e6", "--quota-burst", "1e6")


def _wait(pred: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("network did not come up")


def _percentile(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * (len(ys) - 1) + 0.5))]


def _workload(net_dir: Path, n_senders: int, n_txs: int) -> list[bytes]:
    chain_id = Genesis.decode((net_dir / "genesis.cbor").read_bytes()).chain_id
    keys = [load_key(net_dir / "participants" / f"p{i}.key.json", PASS) for i in range(n_senders)]
    return [sign_tx(keys[i % n_senders], chain_id, i // n_senders, "bank/transfer",
                    {"to": keys[(i + 1) % n_senders].address, "amount_micro": 1})
            for i in range(n_txs)]


def bench_processes(root: Path, n_txs: int, n_senders: int = 100,
                    batch: int = 100) -> tuple[dict[str, Any], list[bytes], Path]:
    from gridledger.node.nats_cluster import NatsCluster, free_port
    from gridledger.node.process import init_network

    cluster = NatsCluster(root / "nats").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(1.0)
        dirs = init_network(root / "net", 4, n_senders, "bench-net", PASS, scrypt_n=2**12)
        ports = [free_port() for _ in dirs]
        procs = [_start(d, cluster.urls, p) for d, p in zip(dirs, ports)]
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports]
        for c in clients:
            _wait(lambda c=c: c.get("/v1/status").json()["height"] >= 1, 90)
        raws = _workload(root / "net", n_senders, n_txs)

        seen: dict[int, float] = {}
        stop = threading.Event()

        def listen() -> None:
            try:
                with httpx.stream("GET", f"http://127.0.0.1:{ports[0]}/v1/events",
                                  timeout=None) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            seen[json.loads(line[6:])["height"]] = time.monotonic()
                        if stop.is_set():
                            return
            except httpx.HTTPError:
                return  # the validator shut down at the end of the run

        threading.Thread(target=listen, daemon=True).start()
        time.sleep(0.5)
        start_height = clients[0].get("/v1/status").json()["height"]
        submitted: dict[str, float] = {}
        t0 = time.monotonic()
        # each sender talks to one validator (its mempool tracks the sender's nonces), and
        # the four validators' queues are fed round-robin
        queues = [[raw for i, raw in enumerate(raws) if (i % n_senders) % len(clients) == v]
                  for v in range(len(clients))]
        for k in range(0, max(len(q) for q in queues), batch):
            for v, q in enumerate(queues):
                chunk = q[k:k + batch]
                if not chunk:
                    continue
                now = time.monotonic()
                res = clients[v].post("/v1/txs", content=cbor2.dumps(chunk),
                                      headers={"content-type": "application/cbor"}).json()["results"]
                for r in res:
                    if "tx_hash" not in r:
                        raise RuntimeError(f"rejected in benchmark: {r}")
                    submitted[r["tx_hash"]] = now
        # wait until every transaction is in a block
        committed: dict[str, int] = {}
        h = start_height + 1
        deadline = time.monotonic() + 300
        while len(committed) < len(submitted) and time.monotonic() < deadline:
            r = clients[0].get(f"/v1/blocks/{h}")
            if r.status_code == 404:
                time.sleep(0.05)
                continue
            for tx in r.json()["txs"]:
                committed[tx] = h
            h += 1
        last_h = h - 1
        _wait(lambda: last_h in seen, 30)
        stop.set()
        lat = [seen[committed[t]] - t_sub for t, t_sub in submitted.items() if committed.get(t) in seen]
        t_end = max(seen[hh] for hh in set(committed.values()))
        out = {"tx_per_s": round(len(committed) / (t_end - t0), 1),
               "finality_p50_s": round(_percentile(lat, 0.50), 3),
               "finality_p99_s": round(_percentile(lat, 0.99), 3),
               "committed": len(committed), "blocks": len(set(committed.values()))}
        roots = {c.get(f"/v1/blocks/{last_h}").json()["header"]["state_root"] for c in clients}
        out["validators_agree"] = len(roots) == 1
        return out, raws, root / "net"
    finally:
        from gridledger.node.process import stop_processes

        stop_processes(procs)
        cluster.stop()


def bench_embedded(root: Path, raws: list[bytes], net_dir: Path, batch: int = 500) -> float:
    from gridledger.crypto.keystore import load_key as lk
    from gridledger.node.admission import QuotaPolicy
    from gridledger.node.embedded import EmbeddedNetwork
    from gridledger.node.sigpool import SigPool

    genesis = Genesis.decode((net_dir / "genesis.cbor").read_bytes())
    vkeys = [lk(net_dir / f"validator-{i}" / "validator.key.json", PASS) for i in range(4)]
    pool = SigPool()
    net = EmbeddedNetwork(genesis, vkeys, root / "embedded", sig_pool=pool, snapshot_every=0,
                          quota=QuotaPolicy(rate_per_s=1e9, burst=1e9),
                          mempool_capacity=len(raws) + 1)
    t0 = time.perf_counter()
    for k in range(0, len(raws), batch):
        net.submit_many(raws[k:k + batch], now_s=float(k))
        net.tick(k + 1)
    rate = len(raws) / (time.perf_counter() - t0)
    net.close()
    pool.close()
    return rate


def run(quick: bool = False) -> dict[str, Any]:
    n_txs = 2000 if quick else 6000
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        out, raws, net_dir = bench_processes(root, n_txs)
        out["embedded_tx_per_s"] = round(bench_embedded(root, raws, net_dir), 1)
    out["ratio_to_embedded"] = round(out["tx_per_s"] / out["embedded_tx_per_s"], 3)
    out["validators"] = 4
    out["nats_servers"] = 3
    out["txs"] = n_txs
    return out
