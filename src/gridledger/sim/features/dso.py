"""The DSO: operating envelopes before each slot, false-data detection after its readings.

* block A of slot L: ``compute_envelope_report`` (linearised AC flow + LP + AC checks) gives
  every cp's import/export limit for L around what the DSO forecasts it to inject without a
  market (``community.forecast_wh_by_cp``: members PV - load, since their batteries are the
  agents' own; outsiders their profile; plus ordered flexibility and its rebound); the
  members' limits are posted as ``market/envelope`` (one per 256 members), the report (which constraint bounds
  the envelopes) is kept for the delivery's curtailment causes;
* after the readings of slot L-1 are on the ledger: WLS state estimation with chi-square,
  largest-normalised-residual and protected-sensor tests (``detect_bad_meters``); each
  flagged cp becomes a ``metering/flag`` carrying the network's estimate, submitted at the
  next block A. The two-slot test also corrects the earlier slot of a persistent lie
  (settlement waits two slots, so it is still open).

Both run in the DSO's worker process where they can (``DsoGrid._worker``): the envelopes of
L+1 while slot L's blocks B and C run, the estimation of L-1 while the next slot's block A is
prepared; the flags are signed where the DSO signs next (``SimContext.later``), so the
transactions, their order and the results are those of the same work done in the run's own
process (issue 17: the main core's grid work).

State estimation never stops the run: readings that make the estimate diverge are left out
by ``detect_bad_meters`` itself (and flagged by the tests that follow); if the estimator
still cannot give a result for a slot (``GridError``: e.g. the readings left the network
unobservable), the slot is recorded as not estimated, with the reason, and the run carries
on — settlement then uses the readings as they are, which the summary makes visible.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, ClassVar

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import GridError
from gridledger.grid import (
    DetectionResult,
    EnvelopeReport,
    GridModel,
    SlotMeasurements,
    compute_envelope_report,
    detect_bad_meters,
)
from gridledger.grid.area_workers import area_worker_timings, area_workers
from gridledger.ledger.modules.market.types import MAX_ENVELOPES_PER_TX
from gridledger.sim.clock import Step
from gridledger.sim.community import forecast_wh_by_cp
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature

ENVELOPES_PER_TX = min(128, MAX_ENVELOPES_PER_TX)
"""Members' envelopes per ``market/envelope`` (the market takes up to MAX_ENVELOPES_PER_TX;
a pseudonym's stand-in cp is 43 characters, so 128 entries keep a transaction under
admission's 16 KiB)."""



def envelope_bodies(slot: int, entries: Sequence[list[Any]]) -> list[dict[str, Any]]:
    """The ``market/envelope`` bodies that set ``entries`` (``[cp, import_wh, export_wh]``,
    sorted by cp) for ``slot``: ENVELOPES_PER_TX a transaction, at any community size. The
    DSO posts these; an attack that forges the DSO's envelopes builds them the same way, so
    that only what it tests (the signatures) differs from the honest messages."""
    return [{"slot": slot, "envelopes": list(entries[i:i + ENVELOPES_PER_TX])}
            for i in range(0, len(entries), ENVELOPES_PER_TX)]


TWO_SLOT_SCORE = 3.0
"""A cp's earlier-slot score (standard deviations) above which a persistent lie, flagged
in the next slot, is corrected in the earlier slot too."""


_REAL_DETECT = detect_bad_meters
_BESIDE_MODEL: list[GridModel] = []
"""The model a DSO detection worker holds (set in the worker as it starts)."""


def _hold_model(model: GridModel) -> None:
    _BESIDE_MODEL.append(model)


def _detect_beside(slot: int, measurements: SlotMeasurements, previous: DetectionResult | None
                   ) -> tuple[DetectionResult | GridError, float]:
    """``detect_bad_meters`` in the detection worker: (result or the ``GridError`` it
    raised, seconds)."""
    t0 = time.perf_counter()
    try:
        res: DetectionResult | GridError = detect_bad_meters(
            _BESIDE_MODEL[-1], slot, measurements, previous=previous)
    except GridError as exc:
        res = exc
    return res, time.perf_counter() - t0


def _envelopes_beside(slot: int, forecast: dict[str, int]) -> tuple[EnvelopeReport, float]:
    """``compute_envelope_report`` in the DSO's worker: (report, seconds)."""
    t0 = time.perf_counter()
    report = compute_envelope_report(_BESIDE_MODEL[-1], slot, forecast_wh_by_cp=forecast)
    return report, time.perf_counter() - t0


class DsoGrid(Feature):
    name: ClassVar[str] = "dso"
    threat_rows: ClassVar[tuple[str, ...]] = ("1",)

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.last: DetectionResult | None = None
        """The latest slot's result (the next slot's two-slot test reads it)."""
        self.slots_estimated = 0
        """Slots a state estimate backs in every part (the whole network, or every
        secondary substation's part and the MV level)."""
        self.not_estimated: dict[int, str] = {}
        """Slot -> why state estimation gave no result (the run carried on without it)."""
        self.partly_estimated: dict[int, tuple[str, ...]] = {}
        """Slot -> the parts (``DetectionResult.unestimated``) no estimate backs, on a network
        estimated per secondary substation where the others were estimated: their cps kept
        their readings (nothing flagged there), so such a slot is not counted as estimated."""
        self._beside: ProcessPoolExecutor | None = None
        self._ahead: dict[int, tuple[dict[str, int], Future[tuple[EnvelopeReport, float]]]] = {}
        """Slot -> (the forecast, its envelope report being computed in the worker)."""

    # -- envelopes -------------------------------------------------------------------------
    def txs_a(self, step: Step) -> Sequence[bytes]:
        if not step.trading:
            return []
        ctx, slot = self.ctx, step.slot
        forecast = self._forecast(slot)
        ahead = self._ahead.pop(slot, None)
        with ctx.timed("grid_s"):
            if ahead is not None and ahead[0] == forecast:
                report, seconds = ahead[1].result()
                ctx.timings["grid_beside_s"] = ctx.timings.get("grid_beside_s", 0.0) + seconds
            else:
                report = compute_envelope_report(ctx.model, slot, forecast_wh_by_cp=forecast)
        # the members' envelopes (the market's); every cp's is in the report until delivery
        envelopes = {m.cp: report.envelopes[m.cp].as_tuple() for m in ctx.members}
        ctx.data.envelopes[slot] = envelopes
        ctx.data.envelope_reports[slot] = report  # what bounds them: the curtailment causes
        # keyed by the cp the ledger knows each member by in this slot (a pseudonym's stand-in
        # under privacy mode), sorted by it so the order says nothing about who is who
        entries = sorted([ctx.identities.ledger_cp(m, slot), *envelopes[m.cp]]
                         for m in ctx.members)
        # each transaction sets its own cps' envelopes: ENVELOPES_PER_TX at a time (admission
        # takes 16 KiB: 1,000 members' envelopes are 22 KB, 256 pseudonyms' 17 KB). Signed
        # when the engine reads the phase's batches (or the DSO signs again before), after
        # the previous slot's flags: its estimation, in the worker, runs meanwhile
        dso = ctx.community.dso
        return ctx.txs_later(lambda: [ctx.tx(dso, "market/envelope", body)
                                      for body in envelope_bodies(slot, entries)], dso.address)

    def _forecast(self, slot: int) -> dict[str, int]:
        """What the DSO expects every cp to inject in ``slot``: the forecast without a market
        plus the flexibility ordered for it (and its rebound)."""
        ctx = self.ctx
        adjust = ctx.data.flex_adjust_wh.get(slot, {})
        return {cp: wh + adjust.get(cp, 0)
                for cp, wh in forecast_wh_by_cp(ctx.model, ctx.by_cp, slot).items()}

    def txs_b(self, step: Step) -> list[bytes]:
        # the next slot's envelopes, in the worker beside blocks B and C: its forecast is
        # complete once this step's block-A features ran (flexibility orders slot L+1 in
        # slot L's block A); txs_a uses the report only if the forecast is still the same
        nxt = step.slot + 1
        beside = self._worker() if nxt in self.ctx.trading_slots() else None
        if beside is not None:
            forecast = self._forecast(nxt)
            self._ahead[nxt] = (forecast, beside.submit(_envelopes_beside, nxt, forecast))
        return []

    # -- false data detection ----------------------------------------------------------------
    def after_readings(self, step: Step) -> None:
        self.detect(step.slot - 1)

    def detect(self, slot: int) -> None:
        """Estimate the state of ``slot`` from its measurements and flag lying meters.

        On a network without area workers (``grid.area_workers``: the default day's) the
        estimation runs in a worker process beside what the run does next (the next slot's
        envelopes, orders), and its flags are signed when the DSO next signs or anything is
        deferred or submitted (``SimContext.later``) — the same transactions in the same
        order as if it had run here (issue 17: the main core's grid work)."""
        ctx = self.ctx
        d = ctx.data.delivered.get(slot)
        if d is None:
            return
        prev = self.last if self.last is not None and self.last.slot == slot - 1 else None
        beside = self._worker()
        if beside is None:
            try:
                with ctx.timed("grid_s"):
                    res = detect_bad_meters(ctx.model, slot, d.measurements, previous=prev)
            except GridError as exc:
                self.not_estimated[slot] = str(exc)
                return
            self._flag(slot, res, prev)
            return
        job = beside.submit(_detect_beside, slot, d.measurements, prev)
        ctx.later(lambda: self._collect(slot, job, prev), ctx.community.dso.address)

    def _worker(self) -> ProcessPoolExecutor | None:
        """The DSO's worker process (forked at the first use: it holds the model as this
        process does; it estimates the state and computes the next slot's envelopes), or
        None to do both here: one core, a network with area workers (they hold pipes of this
        process), or a detector a test replaced (its effects are observed here)."""
        if self._beside is None:
            if (os.cpu_count() or 1) < 2 or detect_bad_meters is not _REAL_DETECT \
                    or area_workers(self.ctx.model) is not None:
                return None
            self._beside = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("fork"),
                initializer=_hold_model, initargs=(self.ctx.model,))
        return self._beside

    def _collect(self, slot: int, job: Future[tuple[DetectionResult | GridError, float]],
                 prev: DetectionResult | None) -> None:
        with self.ctx.timed("grid_s"):  # what this process waited for
            res, seconds = job.result()
        self.ctx.timings["grid_beside_s"] = self.ctx.timings.get("grid_beside_s", 0.0) + seconds
        if isinstance(res, GridError):
            self.not_estimated[slot] = str(res)
            return
        self._flag(slot, res, prev)

    def finish(self) -> None:
        # how the areas' work split between the cores (timings, as grid_s): the caller's
        # own share and its waits for the area workers
        self.ctx.timings.update(area_worker_timings(self.ctx.model))
        self.close()

    def run_ended(self, summary: dict[str, Any] | None) -> None:
        self.close()

    def close(self) -> None:
        """End the detection worker (a run that failed half-way too)."""
        self._ahead.clear()
        if self._beside is not None:
            self._beside.shutdown(wait=True, cancel_futures=True)
            self._beside = None

    def _flag(self, slot: int, res: DetectionResult, prev: DetectionResult | None) -> None:
        """Record ``res`` and defer the DSO's ``metering/flag`` for every flagged cp."""
        ctx = self.ctx
        self.last = res
        if res.estimated:
            self.slots_estimated += 1
        elif len(res.unestimated) < max(1, len(res.parts)):
            self.partly_estimated[slot] = res.unestimated
        else:
            # nothing fitted anywhere: a result (the forecast, nothing flagged), no estimate
            self.not_estimated[slot] = res.reason
        on_ledger = ctx.data.flagged
        ids = ctx.identities
        # readings the ledger took from quarantined meters (firmware registry) are replaced by
        # the network's estimate like false data, whatever the tests say about them; the
        # ledger names them by ledger_cp, the DSO knows whose meter each is (owner_of_cp)
        untrusted = {owner.cp for owner in map(ids.owner_of_cp,
                                                ctx.data.quarantined_readings.get(slot, set()))
                     if owner is not None}
        flags: list[tuple[int, str, int]] = []
        for cp in sorted((res.flagged | untrusted) & set(ctx.by_cp)):
            m = ctx.by_cp[cp]
            # the DSO knows its customers' cps; the ledger knows them by ledger_cp (a
            # pseudonym's stand-in under privacy mode, which the DSO attested)
            flags.append((slot, ids.ledger_cp(m, slot), int(res.estimated_wh_by_cp[cp])))
            # the two-slot test fires on persistent lying: the earlier slot, whose own score
            # already leaned the same way, is corrected too (settlement waits two slots)
            before = prev.cp_scores.get(cp, 0.0) if prev is not None else 0.0
            earlier = ids.ledger_cp(m, slot - 1)
            if prev is not None and cp not in prev.flagged \
                    and before * res.cp_scores.get(cp, 0.0) > 0 and abs(before) > TWO_SLOT_SCORE \
                    and earlier not in on_ledger.get(slot - 1, set()) \
                    and earlier not in ctx.data.estimated.get(slot - 1, set()):
                flags.append((slot - 1, earlier, int(prev.estimated_wh_by_cp[cp])))
        evidence = tagged_hash("gl/fdi-report", repr((res.slot, sorted(res.flagged),
                                                      round(res.chi2, 6))).encode())
        ctx.defer([ctx.tx(ctx.community.dso, "metering/flag", {
            "slot": s, "cp": cp, "import_wh": max(0, -est), "export_wh": max(0, est),
            "evidence": evidence}) for s, cp, est in flags])

    def detections(self) -> dict[str, int]:
        return {"fdi_flags": sum(len(v) for v in self.ctx.data.flagged.values())}

    def summary(self) -> dict[str, Any]:
        return {"state_estimation": {
            "slots_estimated": self.slots_estimated,
            "slots_partly_estimated": len(self.partly_estimated),
            "slots_not_estimated": len(self.not_estimated),
            "not_estimated": [{"slot": s, "reason": why}
                              for s, why in sorted(self.not_estimated.items())],
            "partly_estimated": [{"slot": s, "unestimated": list(parts)}
                                 for s, parts in sorted(self.partly_estimated.items())]}}
