"""``gridledger bench network``: 4 validator processes on a 3-server JetStream cluster.

In one run, on one network, pre-signed transfers (signing is not timed) from 100 senders go
to the four validators' HTTP APIs (a sender always to the same validator):

1. **saturation**: one client thread per validator sends batches of 100 as fast as the
   validator admits them -> throughput
   (``tx_per_s``: transactions / (first submission -> last block final));
2. **paced**: an open loop at 1,000 tx/s offered (16 client threads, each sending the next
   nonce round of its senders on a fixed schedule, whatever the replies take) ->
   finality latency at the target rate (``finality_p50_s``/``p99_s``: submission -> the
   block holding the transaction is certified and stored, seen on validator 0's event
   stream). A saturating burst measures queueing, not finality, so its latencies are
   reported separately (``saturated``).

Baseline: the saturation workload on the embedded network (4 in-process validators, local
orderer) in the same run. Everything listens on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cbor2
import httpx

from gridledger.crypto.keystore import load_key
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.tx import sign_tx

PASS = "bench-network"


def _start(node_dir: Path, urls: list[str], port: int) -> subprocess.Popen[bytes]:
    from gridledger.node.spawn import spawn_validator

    return spawn_validator(node_dir, urls, port, PASS, "--tick-s", "0.2",
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


def _workload(net_dir: Path, n_senders: int, n_txs: int, first_nonce: int = 0) -> list[bytes]:
    chain_id = Genesis.decode((net_dir / "genesis.cbor").read_bytes()).chain_id
    keys = [load_key(net_dir / "participants" / f"p{i}.key.json", PASS) for i in range(n_senders)]
    return [sign_tx(keys[i % n_senders], chain_id, first_nonce + i // n_senders, "bank/transfer",
                    {"to": keys[(i + 1) % n_senders].address, "amount_micro": 1})
            for i in range(n_txs)]


class _Events:
    """Validator 0's event stream: when each height was announced (certified and stored)."""

    def __init__(self, port: int) -> None:
        self.seen: dict[int, float] = {}
        self.txs: dict[int, int] = {}  # transactions per announced block
        self.stop = threading.Event()
        threading.Thread(target=self._listen, args=(port,), daemon=True).start()

    def _listen(self, port: int) -> None:
        try:
            with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/events", timeout=None) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        ev = json.loads(line[6:])
                        self.seen[ev["height"]] = time.monotonic()
                        self.txs[ev["height"]] = int(ev["txs"])
                    if self.stop.is_set():
                        return
        except httpx.HTTPError:
            return  # the validator shut down at the end of the run


def _drive(clients: list[httpx.Client], events: _Events, raws: list[bytes], n_senders: int,
           batch: int, rate_tx_s: float | None, feeders_per_validator: int = 1) -> dict[str, Any]:
    """Submit ``raws`` and wait until all are final.

    ``rate_tx_s`` None: as fast as the validators admit them, ``batch`` transactions per
    request; else an open loop at that offered load: each feeder thread sends the next
    nonce round of its senders on a fixed schedule, whatever the replies take (a feeder
    owns its senders, so their nonces arrive in order).
    """
    start_height = clients[0].get("/v1/status").json()["height"]
    # sender s always talks to validator s % 4 (its mempool tracks the sender's nonces),
    # through feeder thread s % n_feeders
    n_feeders = len(clients) * feeders_per_validator
    queues = [[raw for i, raw in enumerate(raws) if (i % n_senders) % n_feeders == f]
              for f in range(n_feeders)]
    posts: list[float] = []  # request round trips (admission latency)
    t0 = time.monotonic()

    feeders: list[tuple[int, float, float]] = []  # (transactions, last request start, period)

    def feed(f: int) -> dict[str, float]:
        mine: dict[str, float] = {}
        q = queues[f]
        client = clients[f % len(clients)]
        if rate_tx_s is None:
            step, period = batch, 0.0
        else:
            step = len(range(f, n_senders, n_feeders))  # one nonce round of this feeder's senders
            period = step * n_feeders / rate_tx_s
        for j, k in enumerate(range(0, len(q), step)):
            if period:  # open loop: the schedule does not wait for the system
                time.sleep(max(0.0, t0 + j * period - time.monotonic()))
            now = time.monotonic()
            res = client.post("/v1/txs", content=cbor2.dumps(q[k:k + step]),
                              headers={"content-type": "application/cbor"}).json()["results"]
            posts.append(time.monotonic() - now)
            for r in res:
                if "tx_hash" not in r:
                    raise RuntimeError(f"rejected in benchmark: {r}")
                mine[r["tx_hash"]] = now
        if mine:
            feeders.append((len(q), max(mine.values()), period))
        return mine

    submitted: dict[str, float] = {}
    with ThreadPoolExecutor(n_feeders) as ex:
        for mine in ex.map(feed, range(n_feeders)):
            submitted.update(mine)
    # the rate the load went in at: per feeder, its transactions over the time to the start
    # of its last request plus one period (as fast as possible: all over the last reply)
    if rate_tx_s is None:
        sent_rate = len(submitted) / (time.monotonic() - t0)
    else:
        sent_rate = sum(n / (last - t0 + per) for n, last, per in feeders)
    # wait until every transaction is in a block: on validator 0's event stream (polling
    # its API meanwhile would load the validator being measured), then map transactions to
    # blocks, untimed
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if sum(n for hh, n in list(events.txs.items()) if hh > start_height) >= len(submitted):
            break
        time.sleep(0.05)
    committed: dict[str, int] = {}
    h = start_height + 1
    deadline = max(deadline, time.monotonic() + 30)
    while len(committed) < len(submitted) and time.monotonic() < deadline:
        r = clients[0].get(f"/v1/blocks/{h}")
        if r.status_code == 404:
            time.sleep(0.05)
            continue
        for tx in r.json()["txs"]:
            committed[tx] = h
        h += 1
    last_h = h - 1
    _wait(lambda: last_h in events.seen, 30)
    seen = events.seen
    lat = [seen[committed[t]] - t_sub for t, t_sub in submitted.items() if committed.get(t) in seen]
    t_end = max(seen[hh] for hh in set(committed.values()))
    return {"tx_per_s": round(len(committed) / (t_end - t0), 1),
            "sent_tx_per_s": round(sent_rate, 1),
            "finality_p50_s": round(_percentile(lat, 0.50), 3),
            "finality_p99_s": round(_percentile(lat, 0.99), 3),
            "admission_p50_s": round(_percentile(posts, 0.50), 3),
            "admission_p99_s": round(_percentile(posts, 0.99), 3),
            "committed": len(committed), "submitted": len(submitted),
            "blocks": len(set(committed.values())), "last_height": last_h}


def bench_processes(root: Path, n_txs: int, n_senders: int = 100, batch: int = 100,
                    rate_tx_s: float = 1000.0, paced_feeders: int = 4
                    ) -> tuple[dict[str, Any], list[bytes], Path]:
    """Two phases on one network: saturation (as fast as admitted: throughput) and an open
    loop at ``rate_tx_s`` offered load (finality at the target rate)."""
    from gridledger.node.nats_cluster import NatsCluster, free_port
    from gridledger.node.network_files import init_network

    cluster = NatsCluster(root / "nats").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(1.0)
        dirs = init_network(root / "net", 4, n_senders, "bench-net", PASS, scrypt_n=2**12)
        ports = [free_port() for _ in dirs]
        procs = [_start(d, cluster.urls, p) for d, p in zip(dirs, ports, strict=True)]
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports]
        for c in clients:
            _wait(lambda c=c: c.get("/v1/status").json()["height"] >= 1, 90)
        # signed before timing: the clients' signing cost is not the network's
        raws = _workload(root / "net", n_senders, n_txs)
        raws2 = _workload(root / "net", n_senders, n_txs, first_nonce=-(-n_txs // n_senders))
        events = _Events(ports[0])
        time.sleep(0.5)
        sat = _drive(clients, events, raws, n_senders, batch, None)
        paced = _drive(clients, events, raws2, n_senders, batch, rate_tx_s, paced_feeders)
        events.stop.set()
        out = {"tx_per_s": sat["tx_per_s"],
               "finality_p50_s": paced["finality_p50_s"],
               "finality_p99_s": paced["finality_p99_s"],
               "committed": sat["committed"] + paced["committed"],
               "blocks": sat["blocks"] + paced["blocks"],
               "saturated": sat, "paced": {**paced, "offered_tx_per_s": rate_tx_s}}
        last_h = paced["last_height"]
        roots = {c.get(f"/v1/blocks/{last_h}").json()["header"]["state_root"] for c in clients}
        out["validators_agree"] = len(roots) == 1
        return out, raws, root / "net"
    finally:
        from gridledger.node.spawn import stop_processes

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
    paced = out["paced"]
    # met: the offered 1,000 tx/s went in on schedule, every transaction became final, and
    # 99 % of them within a second
    out["target_met"] = bool(paced["sent_tx_per_s"] >= 0.95 * paced["offered_tx_per_s"]
                             and paced["committed"] == paced["submitted"]
                             and out["finality_p99_s"] < 1.0 and out["tx_per_s"] >= 1000)
    out["validators"] = 4
    out["nats_servers"] = 3
    out["txs"] = 2 * n_txs
    return out
