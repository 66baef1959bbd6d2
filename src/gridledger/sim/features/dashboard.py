"""``gridledger demo --serve PORT``: the node's live dashboard for the run in progress.

When the scenario names a port, this feature serves the entry validator's API — with the
dashboard at ``/`` (``gridledger.api.dashboard``) — on 127.0.0.1 while the run goes: every
finalized block is published to the page's event stream, and the network panel is fed by
the run's power flows (per delivered slot: highest and lowest voltage in p.u., worst line or
transformer loading in %, against the run's limits). API reads take the run's ledger lock,
so they see certified state between blocks, never a block half applied. The server stops
when the run ends (before the stores close). Without a port the feature does nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gridledger.api import create_app
from gridledger.api.limits import make_server
from gridledger.errors import ConfigError
from gridledger.node.embedded import FinalizedBlock
from gridledger.node.service import EmbeddedService
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature

START_TIMEOUT_S = 10.0
SERIES_SLOTS = 96


class LiveDashboard(Feature):
    name = "dashboard"

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.port = ctx.sc.serve_port
        self.service: EmbeddedService | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        if self.port is not None:
            self._start(self.port)

    def _start(self, port: int) -> None:
        self.service = EmbeddedService(self.ctx.net, lock=self.ctx.ledger_lock)
        app = create_app(self.service, grid=self.grid)
        self._server = make_server(app, "127.0.0.1", port)
        self._server.config.timeout_graceful_shutdown = 2  # open event streams end with the run
        self._thread = threading.Thread(target=self._server.run, name="demo-dashboard",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"--serve {port}: the dashboard could not listen on "
                                  f"127.0.0.1:{port} (in use?)")
            time.sleep(0.02)

    def grid(self) -> dict[str, Any] | None:
        """The network panel's feed: the delivered slots' power-flow extremes."""
        recs = [r for r in self.ctx.data.slots.values() if r.max_loading_pct > 0][-SERIES_SLOTS:]
        if not recs:
            return None
        lim = self.ctx.limits
        return {"source": "demo power flow (pandapower)", "slot": recs[-1].slot,
                "series": {"slots": [r.slot for r in recs], "labels": [r.label for r in recs],
                           "max_vm_pu": [r.max_vm_pu for r in recs],
                           "min_vm_pu": [r.min_vm_pu for r in recs],
                           "max_loading_pct": [r.max_loading_pct for r in recs]},
                "limits": {"vm_min_pu": lim.vm_min_pu, "vm_max_pu": lim.vm_max_pu,
                           "loading_max_pct": lim.max_loading_pct}}

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        if self.service is not None:
            self.service.notify(fb.header, fb.result)

    def finish(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.service is not None:
            self.service.close()
        self._server = self._thread = self.service = None
