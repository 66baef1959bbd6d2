"""``gridledger demo --serve PORT``: the node's live dashboard for the run in progress.

When the scenario names a port, this feature serves the entry validator's API — with the
dashboard at ``/`` (``gridledger.api.dashboard``) — on 127.0.0.1 while the run goes: every
finalized block is published to the page's event stream, and the network panel is fed by
the run's power flows (per delivered slot: highest and lowest voltage in p.u., worst line or
transformer loading in %, against the run's limits). API reads take the run's ledger lock,
so they see certified state between blocks, never a block half applied.

The attack lab's table fills as the run goes: after every step each scenario's ``result()``
is read from what the run has seen so far (receipts, block events, detections, bills) and
published on the page's panel (``api.dashboard.RunPanel``); scenarios measured only on the
finished chain (``Attack.measured_at_end``: the audit bundle, a validator's store analysed)
say so until the end. When the last block is executed the page keeps its last certified
snapshot (the stores close) while verify-chain runs; once the summary exists the panel
shows the final results and says the run ended, the open pages receive it, and the server
stops. Without a port the feature does nothing, and imports none of the server (FastAPI,
uvicorn, the API: ~0.5 s of a run's start-up, issue 17).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gridledger.errors import ConfigError
from gridledger.grid.single_line import network_state
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature
from gridledger.sim.records import Delivered

if TYPE_CHECKING:
    from gridledger.api.dashboard import RunPanel
    from gridledger.api.limits import ServerThread
    from gridledger.node.service import EmbeddedService

START_TIMEOUT_S = 10.0
SERIES_SLOTS = 96
FINAL_WAIT_S = 10.0
"""How long the server waits, after the final results, for the open pages to receive them."""
LAB_FIELDS = ("injected", "detected", "mitigated", "loss", "loss_unit", "passive")


class LiveDashboard(Feature):
    name = "dashboard"

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.port = ctx.sc.serve_port
        self.panel: RunPanel | None = None  # the page's attack-lab panel, while serving
        self._delivered: tuple[int, dict[str, int]] | None = None  # last slot's net injections
        self._state: dict[str, Any] | None = None  # its single-line state, drawn once
        self.service: EmbeddedService | None = None
        self._server: ServerThread | None = None
        if self.port is not None:
            self._start(self.port)

    def _start(self, port: int) -> None:
        from gridledger.api import create_app
        from gridledger.api.dashboard import RunPanel
        from gridledger.api.limits import ServeError, ServerThread
        from gridledger.node.service import EmbeddedService

        self.panel = RunPanel()
        self.service = EmbeddedService(self.ctx.net, lock=self.ctx.ledger_lock)
        app = create_app(self.service, grid=self.grid, run=self.panel)
        try:  # open event streams end with the run: 2 s of graceful shutdown
            self._server = ServerThread(app, "127.0.0.1", port, name="demo-dashboard",
                                        start_timeout_s=START_TIMEOUT_S, graceful_s=2)
        except ServeError as exc:
            self.stop()
            raise ConfigError(f"--serve {port}: the dashboard could not listen: {exc}") from exc

    def grid(self, _read_slot: int | None, _readings: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The network panel's feed (``api.dashboard.GridSource``; the run's own power flows,
        not the ledger's readings): the last delivered slot on the single-line view (every
        bus's voltage, every line's and transformer's loading) and the delivered slots'
        extremes (``series``)."""
        recs = [r for r in self.ctx.data.slots.values() if r.max_loading_pct > 0][-SERIES_SLOTS:]
        delivered = self._delivered
        if not recs or delivered is None:
            return None
        if self._state is None or self._state["slot"] != delivered[0]:
            self._state = network_state(self.ctx.model, delivered[0], delivered[1],
                                        limits=self.ctx.limits,
                                        source="demo power flow of what was delivered")
        return {**self._state,
                "series": {"slots": [r.slot for r in recs], "labels": [r.label for r in recs],
                           "max_vm_pu": [r.max_vm_pu for r in recs],
                           "min_vm_pu": [r.min_vm_pu for r in recs],
                           "max_loading_pct": [r.max_loading_pct for r in recs]}}

    def after_delivery(self, step: Step, delivered: Delivered) -> None:
        if self.service is not None:  # the server thread draws it (one power flow a slot)
            self._delivered = (delivered.slot, dict(delivered.actual_wh_by_cp))

    def lab_rows(self) -> list[dict[str, Any]]:
        """The attack lab's table so far: each scenario's ``result()`` now (figures so far),
        or ``at the end`` for a scenario measured on the finished chain."""
        t0 = time.perf_counter()
        rows = []
        for a in self.ctx.attacks:
            row: dict[str, Any] = {"attack": a.name, "row": a.threat_row()}
            if a.measured_at_end:
                rows.append({**row, "state": "at the end"})
                continue
            try:
                r = a.result()
            except Exception as exc:  # an observer must not end the run:
                # the page shows the scenario's row with the error instead of figures
                rows.append({**row, "state": "error", "error": f"{type(exc).__name__}: {exc}"})
                continue
            rows.append({**row, "state": "live", **{k: r.get(k) for k in LAB_FIELDS}})
        self.ctx.timings["dashboard_lab_s"] = (self.ctx.timings.get("dashboard_lab_s", 0.0)
                                               + time.perf_counter() - t0)
        return rows

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        if self.service is not None:
            self.service.notify(fb.header, fb.result)

    def after_readings(self, step: Step) -> None:
        if self.service is not None and self.panel is not None:
            self.panel.publish("running", self.lab_rows(), f"slot {self.ctx.label(step.slot)}")

    def finish(self) -> None:
        """The last block is executed: the page keeps its last certified snapshot (read now,
        before the stores close) and says what comes next."""
        if self.service is not None and self.panel is not None:
            self.panel.publish("verifying", self.lab_rows(),
                               "last block executed: verify-chain and the final results")
            # the page has its last snapshot; the API's reader must let go of the stores
            # (with it open, closing the writer leaves their WAL unmerged for the readers
            # that follow: verify-chain, the privacy scan)
            self.service.close()

    def run_ended(self, summary: dict[str, Any] | None) -> None:
        """The final results on the page (the run ended), then the server stops once the
        open pages received them (at most ``FINAL_WAIT_S``)."""
        if self.service is not None and self.panel is not None and summary is not None:
            attacks = summary["attacks"]
            rows = [{"attack": name, "row": str(r.get("threat", "")).split(" ", 1)[0],
                     "state": "final", **{k: r.get(k) for k in LAB_FIELDS}}
                    for name, r in attacks.items()]
            ok = sum(1 for r in attacks.values() if r["mitigated"])
            failed = [k for k, v in summary["invariants"].items() if not v]
            note = (f"run ended{' early (stopped)' if summary.get('interrupted') else ''}: "
                    f"{ok} / {len(attacks)} attack scenarios mitigated; verify-chain "
                    f"{'passed' if summary['ledger']['certificates_ok'] else 'FAILED'}; "
                    f"invariants {'hold' if not failed else 'FAILED: ' + ', '.join(failed)}")
            self.panel.publish("ended", rows, note)
            deadline = time.monotonic() + FINAL_WAIT_S
            while self.panel.viewers > 0 and time.monotonic() < deadline:
                time.sleep(0.02)
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self.service is not None:
            self.service.close()
        self._server = self.service = None
