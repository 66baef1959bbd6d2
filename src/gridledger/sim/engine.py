"""The scenario engine: a community trading on the embedded ledger over a real grid.

The engine is the step loop and nothing else. What happens in a step is done by the
registered features (``sim.features.FEATURES``) and attacks (``sim.attacks``), called phase
by phase in registry order; they share the run through a ``SimContext``. One step per
15-minute slot L (``sim.clock``), three blocks each:

=========  ==================================================================================
phase      what the engine calls
=========  ==================================================================================
block A    submits, in this order: transactions deferred from the last step
           (``ctx.defer``: the DSO's flags), attacks' ``txs_block_a``, features' ``txs_a``
           (envelopes, orders); then attacks' ``after_submit``; tick at ``900 L - 450``
block B    features' ``txs_b``; tick at ``900 L - 150`` (slot L clears); then, in trading
           steps, features' ``after_clearing`` and ``deliver`` (physics of slot L)
block C    features' ``txs_c`` (readings and aggregation partials of slot L-1); tick at
           ``900 L + 10`` (slot L-3 settles); then features' ``after_readings``
           (the DSO's state estimation on L-1)
=========  ==================================================================================

Every finalized block goes to the blackboard, then to every feature's and attack's
``on_block``. After the last slot, ``TAIL_STEPS`` steps without orders read, check, settle and
dispute the tail. Everything is derived from ``Scenario.seed``; the ledger side is exact
integers, the grid side (power flow, estimation) floats, deterministic on one machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gridledger.grid import SLOTS_PER_DAY, GridModel
from gridledger.node.verify import VerifyReport
from gridledger.sim import heap
from gridledger.sim.attack_base import Attack
from gridledger.sim.attacks import make_attacks
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature
from gridledger.sim.features import FEATURES
from gridledger.sim.records import SlotRecord
from gridledger.sim.scenario import Scenario

Progress = Callable[[int, int, str], None]
"""(steps done, steps in all, label of the slot reached)."""


class Engine:
    """Builds the run (context, features, attacks) and drives its steps."""

    def __init__(self, sc: Scenario, model: GridModel, out: Path, *,
                 progress: Progress | None = None,
                 attack_overrides: dict[str, dict[str, Any]] | None = None,
                 features: Sequence[type[Feature]] = FEATURES,
                 stop: threading.Event | None = None) -> None:
        self.ctx = SimContext(sc, model, out)
        self.progress = progress
        self.stop = stop
        """Set (e.g. by a Ctrl-C handler) to end the run after the step in progress."""
        self.stopped: tuple[int, int, str] | None = None
        """(steps done, steps in all, label of the last slot reached) when ``stop`` ended
        the run early; None for a whole run."""
        self.features: list[Feature] = [cls(self.ctx) for cls in features]
        self.attacks: list[Attack] = make_attacks(sc.attacks, self.ctx, attack_overrides or {})
        self.ctx.features = self.features
        self.ctx.attacks = self.attacks
        heap.trim()  # the setup's transients (a privacy epoch's issuance) back to the OS

    def feature(self, name: str) -> Feature:
        """The registered feature called ``name`` (``KeyError`` if the run has none)."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r} in this run")

    def run(self) -> None:
        """Every step of the scenario; the stores are closed even if a step fails."""
        ctx = self.ctx
        steps = ctx.clock.steps()
        last = ctx.clock.first + ctx.clock.slots - 1
        started = time.perf_counter()
        try:
            for k, step in enumerate(steps):
                if self.stop is not None and self.stop.is_set():
                    # between steps: every block so far is final and stored, none half-made
                    self.stopped = (k, len(steps), ctx.label(min(steps[k - 1].slot, last))
                                    if k else "-")
                    break
                if k == len(steps) - 1:
                    ctx.release_held()  # held transactions go at the last block A at the latest
                self.step(step)
                if step.trading and (step.slot + 1) % SLOTS_PER_DAY == 0:
                    heap.trim()  # the day's freed peaks (the next epoch's issuance)
                if self.progress is not None:
                    self.progress(k + 1, len(steps), ctx.label(min(step.slot, last)))
            ctx.settle()  # work a plug-in left to finish (``SimContext.later``)
            ctx.resolve_deferred()  # ... and deferred transactions still to be made
            for f in self.features:
                f.finish()
        finally:
            ctx.timings["run_s"] = time.perf_counter() - started
            ctx.close()

    def after_run(self) -> None:
        """Tell every feature and attack the run is over (``after_run``); after ``run``."""
        for f in self.features:
            f.after_run()
        for a in self.attacks:
            a.after_run()

    def after_verify(self, reports: Sequence[VerifyReport]) -> None:
        """Give every attack verify-chain's reports (``Attack.after_verify``)."""
        for a in self.attacks:
            a.after_verify(reports)

    def step(self, step: Step) -> None:
        ctx, slot = self.ctx, step.slot
        if step.trading:
            ctx.data.slots[slot] = SlotRecord(slot, ctx.label(slot))
        # ---- block A: deferred, attack, then feature transactions ------------------------
        with ctx.attack_admission() as attack_admit:
            extra = [raw for a in self.attacks for raw in a.txs_block_a(slot, step.trading)]
        raws = phase_txs([f.txs_a(step) for f in self.features])
        t0 = time.perf_counter()
        ctx.submit(ctx.take_deferred() + extra + raws, step.t_a)
        for a in self.attacks:
            a.after_submit(slot, raws)
        ctx.tick(step.t_a)
        # honest transactions wait behind whatever an attacker pushed into admission first
        ctx.step_latency_s.append((slot, time.perf_counter() - t0 + attack_admit.seconds))
        # ---- block B: clearing, then delivery --------------------------------------------
        ctx.submit(phase_txs([f.txs_b(step) for f in self.features]), step.t_b)
        ctx.tick(step.t_b)
        if step.trading:
            for f in self.features:
                f.after_clearing(step)
            for f in self.features:
                f.deliver(step)
        # ---- block C: readings of L-1, settlement ----------------------------------------
        ctx.submit(phase_txs([f.txs_c(step) for f in self.features]), step.t_c)
        ctx.tick(step.t_c)
        for f in self.features:
            f.after_readings(step)


def phase_txs(batches: Sequence[Sequence[bytes]]) -> list[bytes]:
    """A phase's transactions in feature order, read only once every feature has made its
    batch: a batch may still be signing on the pool (``SimContext.txs_ahead``), so the later
    features' work overlaps its signatures (issue 17, twelfth session); reading it waits for
    them, and raises a signing failure here."""
    return [raw for batch in batches for raw in batch]
