"""Benchmark: uniform-price clearing of random books, GridLedger vs pymarket (huang).

``gridledger bench clearing`` calls ``run()``. The same random book of each size is cleared
by ``gridledger.market.clear_uniform`` (in process, best of a few runs, from ``Order``
objects to the finished ``ClearingResult`` with bilateral trades) and by the published
peer, pymarket's ``Market.run("huang")`` (Huang, Scheller-Wolf & Sycara 2002), in a
subprocess with a time cap. Only the clearing call is timed on both sides, not building the
book. pymarket's huang is a different double auction (trade reduction), so the volumes are
reported too; the comparison is one of speed at equal book size.

If the peer did not finish within the cap, or a smaller size already took so long that even
linear scaling (a lower bound for it) would exceed the cap, ``peer_s`` is ``None``.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gridledger.market import Order, clear_uniform

SIZES_FULL = (1_000, 10_000, 100_000, 1_000_000)
SIZES_QUICK = (1_000, 10_000, 100_000)
PEER_CAP_S_FULL = 120.0
PEER_CAP_S_QUICK = 20.0
N_OWNERS = 5_000

# Runs in a fresh interpreter: load the book, feed pymarket, time only Market.run.
_PEER_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import pymarket as pm
book = np.load(sys.argv[1])
mkt = pm.Market()
for q, p, u, b in zip(book["energy_wh"].tolist(), book["price"].tolist(),
                      book["owner"].tolist(), book["is_buy"].tolist()):
    mkt.accept_bid(float(q), float(p), int(u), bool(b))
t0 = time.perf_counter()
trans, extra = mkt.run("huang")
dt = time.perf_counter() - t0
df = trans.get_df()
vol = float(df.quantity[[bool(b) for b in book["is_buy"][df.bid.values]]].sum()) if len(df) else 0.0
print(json.dumps({"seconds": dt, "volume_wh": vol}))
"""


def make_book(n: int, seed: int = 2024) -> dict[str, np.ndarray]:
    """A random slot: half bids, half asks, 0.1-10 kWh, prices 0.05-0.40 units/kWh."""
    rng = np.random.default_rng(seed + n)
    return {
        "is_buy": rng.integers(0, 2, n).astype(bool),
        "energy_wh": rng.integers(100, 10_001, n),
        "price": rng.integers(50_000, 400_001, n),
        "owner": rng.integers(0, N_OWNERS, n),
        "ids": np.frombuffer(rng.bytes(32 * n), dtype="S32"),
    }


def to_orders(book: dict[str, np.ndarray]) -> list[Order]:
    """The book as ``Order`` objects (32-byte ids and owner addresses)."""
    raw = book["ids"].tobytes()
    owners = [i.to_bytes(4, "big") * 8 for i in range(N_OWNERS)]
    return [
        Order(raw[32 * k : 32 * k + 32], owners[u], "buy" if b else "sell", q, p)
        for k, (b, q, p, u) in enumerate(
            zip(
                book["is_buy"].tolist(),
                book["energy_wh"].tolist(),
                book["price"].tolist(),
                book["owner"].tolist(),
                strict=True,
            )
        )
    ]


def _peer_version() -> str | None:
    try:
        return importlib.metadata.version("pymarket")
    except importlib.metadata.PackageNotFoundError:
        return None


def _run_peer(book: dict[str, np.ndarray], cap_s: float) -> tuple[float | None, float | None, str]:
    with tempfile.TemporaryDirectory(prefix="gl-bench-") as tmp:
        path = Path(tmp) / "book.npz"
        cols = {k: v for k, v in book.items() if k != "ids"}
        np.savez(
            path,
            is_buy=cols["is_buy"],
            energy_wh=cols["energy_wh"],
            price=cols["price"],
            owner=cols["owner"],
        )
        try:
            # The cap also covers interpreter start-up and loading the bids (a few seconds
            # at most), so it only ever errs against the peer finishing.
            out = subprocess.run(
                [sys.executable, "-c", _PEER_SCRIPT, str(path)],
                capture_output=True,
                text=True,
                timeout=cap_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, None, "timeout"
    if out.returncode != 0:
        return None, None, "error: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(res["seconds"]), float(res["volume_wh"]), "ok"


def run(quick: bool = False) -> dict[str, Any]:
    """Clear random books of each size with GridLedger and the peer; return the timings.

    Returns:
        ``{"peer": NAME, "peer_timeout_s": cap, "sizes": [{"orders": N, "gridledger_s": S,
        "peer_s": S or None, "peer_status": ..., "speedup": peer_s / gridledger_s or None,
        "gridledger_volume_wh": .., "peer_volume_wh": ..}, ...]}``
    """
    sizes = SIZES_QUICK if quick else SIZES_FULL
    cap = PEER_CAP_S_QUICK if quick else PEER_CAP_S_FULL
    version = _peer_version()
    rows: list[dict[str, Any]] = []
    last_peer: tuple[int, float] | None = None
    peer_dead = version is None
    for n in sizes:
        book = make_book(n)
        orders = to_orders(book)
        best = float("inf")
        for _ in range(5 if n <= 10_000 else 3 if n <= 100_000 else 1):
            t0 = time.perf_counter()
            result = clear_uniform(orders)
            best = min(best, time.perf_counter() - t0)
        del orders
        peer_s: float | None = None
        peer_vol: float | None = None
        if version is None:
            status = "unavailable (pip install 'pymarket>=0.7.6')"
        elif peer_dead:
            status = "skipped: a smaller book already hit the cap"
        elif last_peer is not None and last_peer[1] * n / last_peer[0] > cap:
            status = "skipped: linear extrapolation of the previous size exceeds the cap"
            peer_dead = True
        else:
            peer_s, peer_vol, status = _run_peer(book, cap)
            if peer_s is None:
                peer_dead = True
            else:
                last_peer = (n, peer_s)
        rows.append(
            {
                "orders": n,
                "gridledger_s": round(best, 6),
                "peer_s": None if peer_s is None else round(peer_s, 6),
                "peer_status": status,
                "speedup": None if peer_s is None else round(peer_s / best, 1),
                "gridledger_volume_wh": result.volume_wh,
                "peer_volume_wh": None if peer_vol is None else round(peer_vol),
            }
        )
    return {
        "peer": f"pymarket {version or '(not installed)'} huang",
        "peer_timeout_s": cap,
        "sizes": rows,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
