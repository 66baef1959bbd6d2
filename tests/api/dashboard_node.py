"""A running node for the dashboard test: four validators (embedded), the production
server (``api.limits.make_server``) and a small market community, all in this process.

Every ``PERIOD_S`` of wall time the ledger advances ``STEP_S`` seconds. In each step the six
members order for the open slot (books fill, slots clear and trade); once a slot has ended
their meters post its readings and the DSO flags one of them (a false-data alert); and one
transfer to oneself is refused (``transfer-to-self``): the page has something to show.
With a network code the members sit at that network's first six connection points and the
node draws the power flow of their certified readings (``node start --network``'s panel).

Usage: python -m tests.api.dashboard_node PORT DATA_DIR [NETWORK]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from gridledger.api import create_app
from gridledger.api.limits import make_server
from gridledger.grid import load_grid
from gridledger.grid.single_line import ledger_grid_source
from gridledger.node.embedded import EmbeddedNetwork
from gridledger.node.service import EmbeddedService
from tests.ledger.modules.world import GATE, S, World, make_world

PERIOD_S = 0.4
STEP_S = 150


def step_txs(w: World, t: int, k: int, cps: tuple[str, ...] = ()) -> list[bytes]:
    open_slot = (t + GATE) // S + 1
    raws = []
    for i in range(3):
        raws.append(w.order(i, open_slot, "buy", 400 + 50 * i, 150_000 + 10_000 * ((k + i) % 5)))
        raws.append(w.order(3 + i, open_slot, "sell", 300 + 80 * i, 100_000 + 12_000 * ((k + 2 * i) % 5)))
    if t % S == STEP_S:  # early in a slot: readings of the slot that just ended
        done = t // S - 1
        raws += [w.reading(i, done, 300 + 40 * i if i < 3 else 0, 0 if i < 3 else 250 + 60 * i)
                 for i in range(6)]
    if t % S == 2 * STEP_S:  # the DSO's state estimation disagrees with one meter
        cp = cps[k % 6] if cps else f"cp{k % 6}"
        raws.append(w.tx(w.dso, "metering/flag", {"slot": t // S - 1, "cp": cp,
                                                  "import_wh": 200, "export_wh": 0,
                                                  "evidence": bytes(32)}))
    raws.append(w.tx(w.users[k % 6], "bank/transfer", {"to": w.users[k % 6].address,
                                                       "amount_micro": 1}))
    return raws


def trade(svc: EmbeddedService, w: World, start: int, stop: threading.Event,
          cps: tuple[str, ...] = ()) -> None:
    t, k = start, 0
    while not stop.is_set():
        t += STEP_S
        k += 1
        svc.submit_many(step_txs(w, t, k, cps))  # refusals at admission are part of the show
        svc.tick(t)
        stop.wait(PERIOD_S)


def main() -> None:
    port, data = int(sys.argv[1]), Path(sys.argv[2])
    grid, cps = None, ()
    if len(sys.argv) > 3:
        model = load_grid(sys.argv[3])
        grid, cps = ledger_grid_source(model), model.cp_ids[:6]
    w = make_world(n_users=6, n_validators=4, cps=cps)
    net = EmbeddedNetwork(w.app.genesis, w.validators, data)
    svc = EmbeddedService(net)
    start = 4 * S
    svc.tick(start)
    stop = threading.Event()
    threading.Thread(target=trade, args=(svc, w, start, stop, cps), daemon=True).start()
    server = make_server(create_app(svc, grid=grid), "127.0.0.1", port, request_timeout_s=30.0)
    try:
        server.run()
    finally:
        stop.set()
        time.sleep(PERIOD_S)
        net.close()


if __name__ == "__main__":
    main()
