"""False-data-injection detection for meter readings (docs/threat-model.md row 1).

Per slot, ``detect_bad_meters`` runs three checks on what the meters and DSO sensors report:

1. **WLS state estimation** with the chi-square test and the largest-normalised-residual
   (LNR) test; bad rows are removed one at a time until both pass (Abur & Gómez Expósito
   2004, ch. 5). This is the classical detector.
2. **Per-feeder energy balance**: the head meter against the sum of the feeder's meters plus
   the losses of a power flow of the reported injections; with line sensors, the same for
   every metered area between sensors ("observer meters", Xiao et al., "Non-technical loss
   detection ...", IEEE SmartGridComm 2013).
3. **Protected-measurement defence** against stealthy attacks: a coordinated attack
   a = H c (Liu, Ning & Reiter, "False data injection attacks against state estimation in
   electric power grids", ACM CCS 2009) moves the estimate by c and leaves every residual
   unchanged, so tests 1 and 2 cannot see it. Bobba et al. ("Detecting false data injection
   attacks on DC state estimation", SCS 2010) show that protecting a *basic measurement
   set* — rows whose H has full column rank — makes a = H c impossible: with those rows
   untouched H_p c = 0 forces c = 0. The DSO's own sensors (authenticated, signed device
   keys) are that protected set; ``choose_protected_set`` finds a minimal basic subset.
   Every customer meter is then tested against the state estimated from protected rows
   alone, which also localises plain under-reporting.

Thresholds split a per-slot false-alarm budget ``alpha`` over the tests (Bonferroni), so an
honest day of 96 slots raises a false alarm with probability below 96 * alpha.

Roles: this module detects; ``balance.py`` computes the area energy balances (check 2),
``fdi_attacks.py`` crafts the attacks, ``fdi_report.py`` measures detection rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy import stats

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid.area_workers import area_workers
from gridledger.grid.areas import Areas, substation_areas
from gridledger.grid.balance import AreaBalance, area_balances
from gridledger.grid.estimation import (
    P_INJ,
    VM,
    EstimationDiverged,
    WlsResult,
    estimate_state,
    is_observable,
    jacobian,
    measure,
)
from gridledger.grid.measurements import (
    METER,
    SENSOR,
    VIRTUAL,
    MeterNoise,
    Rows,
    SlotMeasurements,
    build_rows,
    busbar_vm_label,
    sensor_catalogue,
)
from gridledger.grid.model import WH_PER_MW_SLOT, GridModel
from gridledger.grid.powerflow import ac_network, solve_fast

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_N_TESTS = 5  # chi2, LNR, protected single-slot, protected two-slot, energy balance


@dataclass(frozen=True)
class DetectionConfig:
    """Detector settings."""

    alpha: float = 1e-6
    """Per-slot false-alarm budget shared by all tests."""
    protected_defence: bool = True
    """Trust the DSO sensors and test every meter against them (off = classical tests only)."""
    two_slot: bool = True
    """Also test the sum of a meter's last two scores (persistent under-reporting)."""
    max_lnr_removals: int = 10
    noise: MeterNoise = field(default_factory=MeterNoise)
    per_substation: bool | None = None
    """Estimate each secondary substation's LV area and the MV level apart (``grid.areas``):
    None = whenever the network splits so, False = one estimate of the whole network."""



@dataclass(frozen=True)
class DetectionResult:
    """Outcome of ``detect_bad_meters`` for one slot."""

    slot: int
    flagged: frozenset[str]
    """Connection points whose meter readings are judged false."""
    chi2: float
    chi2_dof: int
    chi2_threshold: float
    chi2_alarm: bool
    max_normalized_residual: float
    lnr_threshold: float
    lnr_removed: tuple[str, ...]
    """Rows the LNR loop removed as bad data, in order (labels such as ``cp-00009:p_wh``)."""
    protected_used: bool
    protected_threshold: float
    cp_scores: Mapping[str, float]
    """Signed score of each cp's active-energy reading (> 0: reports more export / less
    import than the network shows), in standard deviations."""
    balances: tuple[AreaBalance, ...]
    estimated_wh_by_cp: Mapping[str, int] = field(default_factory=dict)
    """The network's own estimate of every cp's net injection (from the protected sensors
    when available, else from the cleaned WLS estimate): what settlement should use for a
    flagged meter instead of its reading."""
    suspect_sensors: tuple[str, ...] = ()
    converged: bool = True
    """False if no state fits all the readings (gross bad data): the classical statistics then
    describe the readings that remain after leaving the worst ones out (``lnr_removed``
    starts with them), or are infinite if no such set was found."""
    reason: str = ""
    """Why the slot needed more than the plain tests (divergence and what was left out);
    empty for an ordinary slot."""
    parts: tuple[DetectionResult, ...] = ()
    """Per-substation detection: the MV level's result, then each LV area's (``grid.areas``
    order); empty for a whole-network estimate."""
    unestimated: tuple[str, ...] = ()
    """What no state estimate backs: ``("network",)`` for a whole-network result whose
    estimator and protected sensors both failed, else the names of the parts (``"mv level"``, LV
    area names) without one. Their cps' ``estimated_wh_by_cp`` are the forecast and none of
    them is flagged; empty when every part was estimated."""

    @property
    def estimated(self) -> bool:
        """Whether a state estimate backs every part of the result."""
        return not self.unestimated

    @property
    def corrected_wh_by_cp(self) -> dict[str, int]:
        """Replacement readings for the flagged meters (settlement correction)."""
        return {cp: int(self.estimated_wh_by_cp[cp]) for cp in sorted(self.flagged)}

    @property
    def alarm(self) -> bool:
        """Anything suspicious at all (a flag, a chi-square alarm, an area imbalance, or
        readings no state fits)."""
        return (
            bool(self.flagged)
            or self.chi2_alarm
            or not self.converged
            or any(b.alarm for b in self.balances)
        )


def detect_bad_meters(
    model: GridModel,
    slot: int,
    measurements: SlotMeasurements,
    *,
    config: DetectionConfig = DetectionConfig(),
    previous: DetectionResult | None = None,
) -> DetectionResult:
    """Flag connection points whose meters report false data in ``slot``.

    Parameters: ``measurements`` are the slot's meter and sensor readings (see
    ``measure_slot``); ``previous`` is last slot's result, for the two-slot test.
    Readings no state fits (gross bad data that makes the estimate diverge) do not raise:
    the worst are left out until the rest converges, the liars are flagged by the tests that
    follow, and ``converged``/``reason`` say what happened.
    Raises ``GridError`` if the readings leave the network unobservable (message names the
    buses) or name unknown meters/sensors.
    """
    slot = model.check_slot(slot)
    if measurements.slot != slot:
        raise GridError(f"measurements are for slot {measurements.slot}, not {slot}")
    areas = None if config.per_substation is False else substation_areas(model)
    if areas is not None:
        return _per_substation(model, slot, measurements, areas, config, previous)
    acn = ac_network(model)
    rows = build_rows(model, measurements, config.noise)
    a_test = config.alpha / _N_TESTS

    # 1. classical WLS + chi2 + LNR with removal. Readings no state fits (a meter reporting
    # an energy the network cannot carry) make the first estimate diverge: leave the
    # readings furthest from the forecast state out until it converges, and carry on.
    reason = ""
    start = np.ones(rows.mm.m, dtype=bool)
    lnr: _LnrOutcome | None
    try:
        lnr = _lnr_loop(acn, rows, a_test, config.max_lnr_removals, start)
    except EstimationDiverged as exc:
        left_out = _leave_out_gross_errors(model, slot, acn, rows, config.max_lnr_removals)
        if left_out is None:
            lnr = None
            reason = (f"estimate unavailable: {exc}; no reading could be left out to make the "
                      "rest consistent")
        else:
            start = left_out
            lnr = _lnr_loop(acn, rows, a_test, config.max_lnr_removals, start)
            gone = [rows.mm.labels[i] for i in np.flatnonzero(~start)]
            reason = f"{exc}; converged after leaving out {', '.join(gone)}"
    dropped = [int(i) for i in np.flatnonzero(~start)]
    # A reading left out only so that the rest converges is bad data if the state the rest
    # gives cannot explain it either (a gross lie: hundreds of sigmas); one that fits is an
    # honest reading of a slot the estimator found hard, never an accusation (issue 17).
    gross = [i for i in dropped if lnr is not None and abs(lnr.score[i]) > lnr.lnr_threshold]
    fits = [rows.mm.labels[i] for i in dropped if i not in gross]
    if fits:
        reason += f"; left out but consistent with the estimate (not flagged): {', '.join(fits)}"
    removed = gross + (lnr.removed if lnr is not None else [])
    removed_labels = tuple(rows.mm.labels[i] for i in removed)
    testable = (rows.owner == METER) | (rows.owner == SENSOR)
    if lnr is not None:
        first = lnr.first
        rn_first = first.normalized_residuals()
        max_rn = float(np.max(np.abs(rn_first[testable[lnr.first_rows]]), initial=0.0))
        chi2, chi2_dof = float(first.chi2), int(first.dof)
        chi2_thr, lnr_thr = lnr.chi2_threshold, lnr.lnr_threshold
        chi2_alarm = bool(chi2 > chi2_thr)
        v_start: npt.NDArray[np.complex128] = first.v
    else:
        max_rn, chi2, chi2_dof, chi2_thr, lnr_thr = math.inf, math.inf, 0, math.inf, math.inf
        chi2_alarm = True
        v_start = _forecast_voltages(model, slot, acn)

    # 3. protected defence.
    prot_used = False
    prot_thr = math.inf
    scores: dict[str, float] = {}
    flagged: set[str] = set()
    suspect_sensors = tuple(rows.mm.labels[i] for i in removed if rows.owner[i] == SENSOR)
    estimated: dict[str, int] = {}
    if config.protected_defence:
        try:
            res = _protected_scores(model, acn, rows, v_start)
        except EstimationDiverged as exc:
            res = None
            reason = f"{reason}; " if reason else ""
            reason += f"the DSO sensors alone do not converge either ({exc})"
        if res is not None:
            prot_used = True
            z_rows, meter_rows, v_prot = res
            estimated = _injections_wh(model, acn, v_prot)
            prot_thr = float(stats.norm.isf(a_test / (2 * max(1, len(meter_rows)))))
            for i in meter_rows:
                cp = model.cp_ids[int(rows.cp[i])]
                if abs(z_rows[i]) > prot_thr:
                    flagged.add(cp)
                if rows.mm.kind[i] == P_INJ:
                    scores[cp] = float(z_rows[i])
            n_p = sum(1 for i in meter_rows if rows.mm.kind[i] == P_INJ)
            two_thr = float(stats.norm.isf(a_test / (2 * max(1, n_p))))
            if config.two_slot and previous is not None and previous.protected_used:
                for cp, z in scores.items():
                    if _two_slot_score(z, cp, previous) > two_thr:
                        flagged.add(cp)
    if not prot_used and lnr is not None:
        estimated = _injections_wh(model, acn, lnr.final.v)
        # Classical identification: meters whose rows were left out or the LNR loop removed.
        for i in removed:
            if rows.owner[i] == METER:
                flagged.add(model.cp_ids[int(rows.cp[i])])
        for row in np.flatnonzero((rows.owner == METER) & (rows.mm.kind == P_INJ)):
            scores[model.cp_ids[int(rows.cp[row])]] = float(lnr.score[row])
        if config.two_slot and previous is not None and not previous.protected_used:
            n_p = len(scores)
            two_thr = float(stats.norm.isf(a_test / (2 * max(1, n_p))))
            for cp, z in scores.items():
                if _two_slot_score(z, cp, previous) > two_thr:
                    flagged.add(cp)
    if lnr is None and not prot_used:
        reason += "; nothing is flagged without an estimate"
    if not estimated:
        # Nothing fits and nothing is protected: the forecast is the network's best guess.
        estimated = model.forecast_wh_by_cp(slot)

    # 2. energy balances.
    balances = area_balances(model, acn, rows, measurements, a_test, config.noise)
    return DetectionResult(
        slot=slot,
        flagged=frozenset(flagged),
        chi2=chi2,
        chi2_dof=chi2_dof,
        chi2_threshold=float(chi2_thr),
        chi2_alarm=chi2_alarm,
        max_normalized_residual=max_rn,
        lnr_threshold=float(lnr_thr),
        lnr_removed=removed_labels,
        protected_used=prot_used,
        protected_threshold=prot_thr,
        cp_scores=dict(sorted(scores.items())),
        balances=balances,
        estimated_wh_by_cp=estimated,
        suspect_sensors=suspect_sensors,
        converged=not dropped and lnr is not None,
        reason=reason,
        unestimated=("network",) if lnr is None and not prot_used else (),
    )


def _per_substation(
    model: GridModel,
    slot: int,
    meas: SlotMeasurements,
    areas: Areas,
    config: DetectionConfig,
    previous: DetectionResult | None,
) -> DetectionResult:
    """Detection per secondary substation (the hierarchical state estimation DSOs run):
    the MV level with each LV area as one injection at its busbar, read by the area's
    transformer head meter (energy into the area, its busbar voltage), then every LV area
    alone from its own meters, its line sensors and its busbar voltage. Each part gets an
    equal share of the false-alarm budget (``alpha / parts``), so the slot's budget stays
    ``alpha``. A part's result is the whole-network procedure on that part; they are merged
    (flags, scores and estimates of real cps; balances; alarms) and kept in ``parts`` for
    the next slot's two-slot test. Raises ``GridError`` as ``detect_bad_meters`` does, the
    message naming the area."""
    n_parts = 1 + len(areas.lv)
    cfg = replace(config, alpha=config.alpha / n_parts, per_substation=False)
    prev_parts: tuple[DetectionResult | None, ...] = (
        previous.parts if previous is not None and len(previous.parts) == n_parts
        else (None,) * n_parts)
    wh, varh, vm = meas.reported_wh_by_cp, meas.reported_varh_by_cp, meas.vm_pu_by_cp
    sensors = meas.sensor_readings
    mv = areas.mv
    mv_wh = {cp: wh[cp] for cp in mv.cp_ids if cp in wh}
    mv_varh = {cp: varh[cp] for cp in mv.cp_ids if cp in varh}
    mv_vm = {cp: vm[cp] for cp in mv.cp_ids if cp in vm}
    for a in areas.lv:
        agg = mv.cps[a.mv_index].cp_id
        # the head meter measures energy into the area (import > 0); the aggregate injects
        p, q = sensors.get(f"trafo-{a.trafo}:p_wh"), sensors.get(f"trafo-{a.trafo}:q_varh")
        v = sensors.get(busbar_vm_label(model, a.busbar))
        if p is not None:
            mv_wh[agg] = -int(round(p))
        if q is not None:
            mv_varh[agg] = -int(round(q))
        if v is not None:
            mv_vm[agg] = float(v)
    # each part's sensor readings in one pass over the slot's readings (in their order, as
    # one filter per part would give them)
    part_sensors: list[dict[str, float]] = [{} for _ in range(n_parts)]
    owners = _sensor_parts(model, areas)
    for k, v in sensors.items():
        for j in owners.get(k, ()):
            part_sensors[j][k] = v

    def part_meas(j: int, part_wh: Mapping[str, int], part_varh: Mapping[str, int],
                  part_vm: Mapping[str, float]) -> SlotMeasurements:
        return SlotMeasurements(
            slot=slot, reported_wh_by_cp=part_wh, reported_varh_by_cp=part_varh,
            vm_pu_by_cp=part_vm, sensor_readings=part_sensors[j])

    parts: list[tuple[str, GridModel, DetectionResult]] = [
        ("mv level", mv, _detect_part(mv, "mv level", slot,
                                      part_meas(0, mv_wh, mv_varh, mv_vm), cfg, prev_parts[0]))]
    jobs = []
    for i, a in enumerate(areas.lv):
        ids = a.model.cp_ids
        jobs.append((a.name, slot, part_meas(
            1 + i, {cp: wh[cp] for cp in ids if cp in wh},
            {cp: varh[cp] for cp in ids if cp in varh}, {cp: vm[cp] for cp in ids if cp in vm}),
            cfg, prev_parts[1 + i]))
    # the LV areas are independent parts: on every core
    pool = area_workers(model)
    got = (pool.map(_detect_part, jobs) if pool is not None
           else [_detect_part(a.model, *j) for a, j in zip(areas.lv, jobs, strict=True)])
    parts.extend((a.name, a.model, r) for a, r in zip(areas.lv, got, strict=True))
    real = set(model.cp_ids)
    results = [r for _n, _m, r in parts]
    flagged = frozenset(cp for r in results for cp in r.flagged if cp in real)
    scores = {cp: z for r in results for cp, z in r.cp_scores.items() if cp in real}
    estimated = {cp: e for r in results for cp, e in r.estimated_wh_by_cp.items() if cp in real}
    reasons = [f"{n}: {r.reason}" for n, _m, r in parts if r.reason]
    return DetectionResult(
        slot=slot,
        flagged=flagged,
        chi2=float(sum(r.chi2 for r in results)),
        chi2_dof=sum(r.chi2_dof for r in results),
        chi2_threshold=float(sum(r.chi2_threshold for r in results)),
        chi2_alarm=any(r.chi2_alarm for r in results),
        max_normalized_residual=max(r.max_normalized_residual for r in results),
        lnr_threshold=max(r.lnr_threshold for r in results),
        lnr_removed=tuple(lb for r in results for lb in r.lnr_removed),
        protected_used=all(r.protected_used for r in results),
        protected_threshold=max(r.protected_threshold for r in results),
        cp_scores=dict(sorted(scores.items())),
        balances=tuple(b for r in results for b in r.balances),
        estimated_wh_by_cp={cp: estimated.get(cp, 0) for cp in model.cp_ids},
        suspect_sensors=tuple(lb for r in results for lb in r.suspect_sensors),
        converged=all(r.converged for r in results),
        reason="; ".join(reasons),
        parts=tuple(results),
        unestimated=tuple(n for n, _m, r in parts if not r.estimated),
    )


def _sensor_parts(model: GridModel, areas: Areas) -> dict[str, tuple[int, ...]]:
    """Which parts (0 = the MV level, 1 + i = LV area i) carry each sensor label: their
    ``sensor_catalogue``s, fixed by the network (cached on the model with its split)."""
    key = "fdi:sensor_parts"
    hit = model._cache.get(key)
    if hit is not None and hit[0] is areas:
        return hit[1]  # type: ignore[no-any-return]
    owners: dict[str, list[int]] = {}
    for j, sub in enumerate((areas.mv, *(a.model for a in areas.lv))):
        for label in sensor_catalogue(sub):
            owners.setdefault(label, []).append(j)
    out = {label: tuple(js) for label, js in owners.items()}
    model._cache[key] = (areas, out)
    return out


def _detect_part(sub: GridModel, name: str, slot: int, meas: SlotMeasurements,
                 config: DetectionConfig, previous: DetectionResult | None) -> DetectionResult:
    """One part of a per-substation detection (``grid.area_workers`` runs it anywhere);
    a ``GridError`` names the part."""
    try:
        return detect_bad_meters(sub, slot, meas, config=config, previous=previous)
    except GridError as exc:
        raise GridError(f"{name}: {exc}") from None


def _two_slot_score(now: float, cp: str, previous: DetectionResult) -> float:
    """|z_t + z_(t-1)| / sqrt(2): persistent under-reporting adds up, honest noise does not.

    Only for a meter the previous slot did not flag already: a reading flagged on its own
    has had its correction, and a gross lie there (z in the thousands) must not flag this
    slot's honest reading of the same meter."""
    before = previous.cp_scores.get(cp)
    if before is None or cp in previous.flagged:
        return 0.0
    return abs(now + before) / math.sqrt(2)


# --------------------------------------------------------------------------- classical tests


@dataclass(frozen=True, eq=False)
class _LnrOutcome:
    final: WlsResult
    """Estimate after the removals."""
    removed: list[int]
    """Rows the LNR loop removed, in order."""
    chi2_threshold: float
    lnr_threshold: float
    first: WlsResult
    """Estimate on the starting rows (``first_rows``)."""
    first_rows: npt.NDArray[np.int64]
    score: FloatArray
    """Per row: normalised residual at removal time for removed rows, final otherwise."""


def _lnr_loop(
    acn: _acpf.AcNetwork,
    rows: Rows,
    a_test: float,
    max_removals: int,
    start: npt.NDArray[np.bool_],
) -> _LnrOutcome:
    """WLS on the ``start`` rows, then remove the largest normalised residual while it is
    significant. Raises ``EstimationDiverged`` if the first estimate does not converge."""
    active = start.copy()
    removed: list[int] = []
    score = np.zeros(rows.mm.m)
    first: WlsResult | None = None
    est: WlsResult | None = None
    chi2_thr = lnr_thr = math.inf
    v0 = None
    ok_owner = (rows.owner == METER) | (rows.owner == SENSOR)
    for _ in range(max_removals + 1):
        sub = rows.select(active)
        try:
            est = estimate_state(acn, sub.mm, sub.z, sub.sigma, v0=v0)
        except GridError:
            if first is None:
                raise
            # Removing the last row left a bus unobservable: it was critical. Put it back.
            active[removed.pop()] = True
            est = estimate_state(acn, rows.select(active).mm, rows.select(active).z,
                                 rows.select(active).sigma, v0=v0)
            break
        v0 = est.v
        idx = np.flatnonzero(active)
        if first is None:
            first = est
            m_test = int(np.sum(ok_owner[idx] & est.testable()))
            chi2_thr = float(stats.chi2.isf(a_test, est.dof)) if est.dof > 0 else math.inf
            lnr_thr = float(stats.norm.isf(a_test / (2 * max(1, m_test))))
        rn = np.where(ok_owner[idx], est.normalized_residuals(), 0.0)
        score[idx] = rn
        j = int(np.argmax(np.abs(rn))) if len(rn) else 0
        # Remove while the largest normalised residual is significant. (A chi2 alarm with no
        # significant residual has no identifiable culprit: stop and report the alarm.)
        if len(rn) == 0 or abs(rn[j]) <= lnr_thr:
            break
        # A row whose residual moves in lockstep with another's (critical pair/set, Abur &
        # Gómez Expósito 2004, 5.7) cannot be told apart from it: the error is detectable but
        # not attributable, so remove nothing rather than guess.
        rho = np.abs(est.residual_correlation(j))
        rho[j] = 0.0
        if np.any((rho > 0.99) & (rn != 0)):
            break
        removed.append(int(idx[j]))
        active[idx[j]] = False
    assert first is not None and est is not None
    # Rows left out before the first estimate: how far each lies from the final state.
    out = np.flatnonzero(~start)
    if len(out):
        mm_out = rows.mm.subset(out)
        var = est.prediction_variance(jacobian(acn, mm_out, est.v))
        resid = rows.z[out] - measure(acn, mm_out, est.v)
        score[out] = resid / np.sqrt(rows.sigma[out] ** 2 + np.maximum(var, 0.0))
    return _LnrOutcome(
        final=est,
        removed=removed,
        chi2_threshold=chi2_thr,
        lnr_threshold=lnr_thr,
        first=first,
        first_rows=np.flatnonzero(start),
        score=score,
    )


def _forecast_voltages(
    model: GridModel, slot: int, acn: _acpf.AcNetwork
) -> npt.NDArray[np.complex128]:
    """Voltages of the power flow of the slot's forecast (the no-load state if it fails)."""
    flow = solve_fast(model, slot, model.net_injection_wh(slot))
    return flow.v if flow.converged else acn.v_start.copy()


def _leave_out_gross_errors(
    model: GridModel, slot: int, acn: _acpf.AcNetwork, rows: Rows, max_left_out: int
) -> npt.NDArray[np.bool_] | None:
    """Rows to keep so that the estimate converges, or None.

    Gross-error prefiltering: meter readings are ranked by how far they lie from the power
    flow of the slot's forecast, relative to the connection's capacity (1 % for voltages),
    and left out one by one, worst first, until an estimate converges; then every reading
    left out on the way but the last is tried back, so only readings the fit cannot take
    stay out (an honest reading is never left out merely for being ranked early).
    """
    v_ref = _forecast_voltages(model, slot, acn)
    h_ref = measure(acn, rows.mm, v_ref)
    scale = WH_PER_MW_SLOT * acn.base_mva
    cap = np.array([cp.capacity_w * 0.25 for cp in model.cps]) / scale
    cand = np.flatnonzero(rows.owner == METER)
    unit = np.where(rows.mm.kind[cand] == VM, 0.01, np.maximum(cap[rows.cp[cand]], 1e-12))
    dev = np.abs(rows.z[cand] - h_ref[cand]) / unit
    order = [int(cand[k]) for k in np.argsort(-dev, kind="stable")]

    def converges(mask: npt.NDArray[np.bool_]) -> bool:
        sub = rows.select(mask)
        try:
            estimate_state(acn, sub.mm, sub.z, sub.sigma, with_covariance=False)
        except GridError:
            return False
        return True

    keep = np.ones(rows.mm.m, dtype=bool)
    out: list[int] = []
    for j in order[: max(1, max_left_out)]:
        keep[j] = False
        if not is_observable(acn, rows.select(keep).mm):
            keep[j] = True  # critical for observability: cannot be left out
            continue
        out.append(j)
        if converges(keep):
            for k in out[:-1]:
                keep[k] = True
                if not converges(keep):
                    keep[k] = False
            return keep
    return None


# --------------------------------------------------------------------------- protected test


def _trusted(rows: Rows) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (rows.owner == SENSOR) | (rows.owner == VIRTUAL)
    return out


def _injections_wh(
    model: GridModel, acn: _acpf.AcNetwork, v: npt.NDArray[np.complex128]
) -> dict[str, int]:
    """Net active injection (Wh over the slot) of every cp for voltages ``v``: its bus's
    injection minus the known injections of other elements there (a generator's set-point)."""
    s = v * np.conj(acn.ybus @ v)
    p_wh = (s.real - acn.s_fixed.real)[acn.cp_bus] * WH_PER_MW_SLOT * acn.base_mva
    return {cp: int(round(float(x))) for cp, x in zip(model.cp_ids, p_wh, strict=True)}


def _protected_scores(
    model: GridModel, acn: _acpf.AcNetwork, rows: Rows, v0: npt.NDArray[np.complex128]
) -> tuple[FloatArray, list[int], npt.NDArray[np.complex128]] | None:
    """z-scores of every meter row against the state estimated from trusted rows only."""
    trusted = _trusted(rows)
    sub = rows.select(trusted)
    key = ("net:observable", sub.mm.labels)
    obs = model._cache.get(key)
    if obs is None:
        obs = is_observable(acn, sub.mm)
        model._cache[key] = obs
    if not obs:
        return None
    # Start from the all-rows estimate: the protected rows alone carry no injections to
    # build a power-flow start from, and the AC problem is not convex.
    # only the state and its factors are used here: no residual covariance (Omega) is computed
    est = estimate_state(acn, sub.mm, sub.z, sub.sigma, v0=v0, with_covariance=False)
    meter_rows = [int(i) for i in np.flatnonzero(rows.owner == METER)]
    mm_m = rows.mm.subset(meter_rows)
    pred = measure(acn, mm_m, est.v)
    hm = jacobian(acn, mm_m, est.v)
    var_pred = est.prediction_variance(hm)
    sd = np.sqrt(rows.sigma[meter_rows] ** 2 + np.maximum(var_pred, 0.0))
    z = np.zeros(rows.mm.m)
    z[meter_rows] = (rows.z[meter_rows] - pred) / sd
    return z, meter_rows, est.v


def choose_protected_set(model: GridModel, measurements: SlotMeasurements) -> tuple[str, ...]:
    """A minimal basic set among the DSO sensors: rows that with the exact zero-injection
    knowledge give H full column rank (Bobba et al. 2010), chosen greedily head-first.

    Raises ``GridError`` if all DSO sensors together are not enough.
    """
    acn = ac_network(model)
    rows = build_rows(model, measurements)
    hm = jacobian(acn, rows.mm, acn.v_start).toarray()
    n_state = hm.shape[1]
    basis = np.zeros((0, n_state))

    def add(vec: FloatArray) -> bool:
        nonlocal basis
        r = vec.copy()
        for _ in range(2):  # re-orthogonalise once (classical Gram-Schmidt is unstable)
            r = r - basis.T @ (basis @ r)
        nrm = float(np.linalg.norm(r))
        if nrm > 1e-8 * max(1.0, float(np.linalg.norm(vec))):
            basis = np.vstack([basis, r / nrm])
            return True
        return False

    for i in np.flatnonzero(rows.owner == VIRTUAL):
        add(hm[i])
    order = sorted(np.flatnonzero(rows.owner == SENSOR), key=lambda i: _priority(rows.mm.labels[i]))
    chosen: list[str] = []
    for i in order:
        if basis.shape[0] >= n_state:
            break
        if add(hm[i]):
            chosen.append(rows.mm.labels[i])
    if basis.shape[0] < n_state:
        raise GridError(
            f"the DSO sensors cannot form a basic measurement set: rank {basis.shape[0]} of "
            f"{n_state}; add flow sensors"
        )
    return tuple(chosen)


def _priority(label: str) -> tuple[int, int, str]:
    head, _, qty = label.partition(":")
    kind, _, num = head.partition("-")
    rank = {"trafo": 0, "bus": 1, "line": 2}.get(kind, 3)
    return (rank, int(num) if num.isdigit() else 0, qty)
