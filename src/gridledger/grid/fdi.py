"""False-data-injection detection for meter readings (THREATS.md row 1).

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import stats

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid.estimation import (
    P_INJ,
    MeasurementModel,
    Q_INJ,
    VM,
    WlsResult,
    estimate_state,
    is_observable,
    jacobian,
    measure,
    state_to_voltage,
    voltage_to_state,
)
from gridledger.grid.measurements import (
    METER,
    PSEUDO,
    SENSOR,
    VIRTUAL,
    MeterNoise,
    Rows,
    SensorPlan,
    SlotMeasurements,
    build_rows,
    measure_slot,
    sensor_catalogue,
)
from gridledger.grid.model import WH_PER_MW_SLOT, GridModel
from gridledger.grid.powerflow import ac_network

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


@dataclass(frozen=True)
class AreaBalance:
    """Energy balance of one metered area for one slot (Wh; gap > 0: energy unaccounted for)."""

    area: str
    cp_ids: tuple[str, ...]
    inflow_wh: int
    reported_consumption_wh: int
    losses_wh: int
    gap_wh: int
    tolerance_wh: int
    alarm: bool


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

    @property
    def corrected_wh_by_cp(self) -> dict[str, int]:
        """Replacement readings for the flagged meters (settlement correction)."""
        return {cp: int(self.estimated_wh_by_cp[cp]) for cp in sorted(self.flagged)}

    @property
    def alarm(self) -> bool:
        """Anything suspicious at all (a flag, a chi-square alarm or an area imbalance)."""
        return bool(self.flagged) or self.chi2_alarm or any(b.alarm for b in self.balances)


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
    Raises ``GridError`` if the readings leave the network unobservable (message names the
    buses) or name unknown meters/sensors.
    """
    slot = model.check_slot(slot)
    if measurements.slot != slot:
        raise GridError(f"measurements are for slot {measurements.slot}, not {slot}")
    acn = ac_network(model)
    rows = build_rows(model, measurements, config.noise)
    a_test = config.alpha / _N_TESTS

    # 1. classical WLS + chi2 + LNR with removal.
    est, removed, chi2_thr, lnr_thr, first, lnr_score = _lnr_loop(
        acn, rows, a_test, config.max_lnr_removals
    )
    rn_first = first.normalized_residuals()
    testable = (rows.owner == METER) | (rows.owner == SENSOR)
    max_rn = float(np.max(np.abs(rn_first[testable]), initial=0.0))
    removed_labels = tuple(rows.mm.labels[i] for i in removed)

    # 3. protected defence.
    prot_used = False
    prot_thr = math.inf
    scores: dict[str, float] = {}
    flagged: set[str] = set()
    suspect_sensors = tuple(rows.mm.labels[i] for i in removed if rows.owner[i] == SENSOR)
    if config.protected_defence:
        res = _protected_scores(model, acn, rows, first.v)
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
                    if _two_slot_score(z, previous.cp_scores.get(cp)) > two_thr:
                        flagged.add(cp)
    if not prot_used:
        estimated = _injections_wh(model, acn, est.v)
        # Classical identification: meters whose rows the LNR loop removed.
        for i in removed:
            if rows.owner[i] == METER:
                flagged.add(model.cp_ids[int(rows.cp[i])])
        for row in np.flatnonzero((rows.owner == METER) & (rows.mm.kind == P_INJ)):
            scores[model.cp_ids[int(rows.cp[row])]] = float(lnr_score[row])
        if config.two_slot and previous is not None and not previous.protected_used:
            n_p = len(scores)
            two_thr = float(stats.norm.isf(a_test / (2 * max(1, n_p))))
            for cp, z in scores.items():
                if _two_slot_score(z, previous.cp_scores.get(cp)) > two_thr:
                    flagged.add(cp)

    # 2. energy balances.
    balances = _balances(model, acn, rows, measurements, a_test, config.noise)
    return DetectionResult(
        slot=slot,
        flagged=frozenset(flagged),
        chi2=float(first.chi2),
        chi2_dof=int(first.dof),
        chi2_threshold=float(chi2_thr),
        chi2_alarm=bool(first.chi2 > chi2_thr),
        max_normalized_residual=max_rn,
        lnr_threshold=float(lnr_thr),
        lnr_removed=removed_labels,
        protected_used=prot_used,
        protected_threshold=prot_thr,
        cp_scores=dict(sorted(scores.items())),
        balances=balances,
        estimated_wh_by_cp=estimated,
        suspect_sensors=suspect_sensors,
    )


def _two_slot_score(now: float, before: float | None) -> float:
    """|z_t + z_(t-1)| / sqrt(2): persistent under-reporting adds up, honest noise does not."""
    return 0.0 if before is None else abs(now + before) / math.sqrt(2)


# --------------------------------------------------------------------------- classical tests


def _lnr_loop(
    acn: _acpf.AcNetwork, rows: Rows, a_test: float, max_removals: int
) -> tuple[WlsResult, list[int], float, float, WlsResult, FloatArray]:
    """WLS, then remove the largest normalised residual while it is significant.

    Returns (final estimate, removed rows, chi2 threshold, LNR threshold, first estimate,
    per-row normalised residual: at removal time for removed rows, final otherwise).
    """
    active = np.ones(rows.mm.m, dtype=bool)
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
            m_test = int(np.sum(ok_owner & est.testable()))
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
    return est, removed, chi2_thr, lnr_thr, first, score


# --------------------------------------------------------------------------- protected test


def _trusted(rows: Rows) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (rows.owner == SENSOR) | (rows.owner == VIRTUAL)
    return out


def _injections_wh(
    model: GridModel, acn: _acpf.AcNetwork, v: npt.NDArray[np.complex128]
) -> dict[str, int]:
    """Net active injection (Wh over the slot) at every cp bus for voltages ``v``."""
    s = v * np.conj(acn.ybus @ v)
    p_wh = s.real[acn.cp_bus] * WH_PER_MW_SLOT * acn.base_mva
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
    est = estimate_state(acn, sub.mm, sub.z, sub.sigma, v0=v0)
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


# --------------------------------------------------------------------------- energy balance


def _balances(
    model: GridModel,
    acn: _acpf.AcNetwork,
    rows: Rows,
    meas: SlotMeasurements,
    a_test: float,
    noise: MeterNoise,
) -> tuple[AreaBalance, ...]:
    """Feeder balance (cut at head meters) and, with line sensors, per metered area."""
    cat = sensor_catalogue(model)
    p_sensors = {lb: cat[lb] for lb in meas.sensor_readings if lb.endswith(":p_wh") and lb in cat}
    heads = {lb: d for lb, d in p_sensors.items() if lb.startswith("trafo-")}
    if not heads:
        return ()
    scale = WH_PER_MW_SLOT * acn.base_mva
    # Losses from a power flow of the reported injections (reported or forecast Q).
    p_pu = np.zeros(len(model.cps))
    q_pu = np.zeros(len(model.cps))
    for i, cp in enumerate(model.cp_ids):
        p_pu[i] = meas.reported_wh_by_cp.get(cp, 0) / scale
    qsel = (rows.mm.kind == Q_INJ) & ((rows.owner == METER) | (rows.owner == PSEUDO))
    for j in np.flatnonzero(qsel):
        bus = rows.mm.element[j]
        hits = np.flatnonzero(acn.cp_bus == bus)
        if len(hits):
            q_pu[hits[0]] = rows.z[j]
    sol = _acpf.solve_pf(acn, _acpf.bus_injection(acn, p_pu, q_pu))
    v = sol.v
    pf_ = (v[acn.f_bus] * np.conj(acn.yf @ v)).real
    pt_ = (v[acn.t_bus] * np.conj(acn.yt @ v)).real
    loss_wh = (pf_ + pt_) * scale
    out: list[AreaBalance] = []
    partitions = [("feeder", heads)]
    if len(p_sensors) > len(heads):
        partitions.append(("area", p_sensors))
    n_areas_total = 0
    prepared = []
    for name, cuts in partitions:
        areas = _areas(acn, {d.element for d in cuts.values()})
        prepared.append((name, cuts, areas))
        n_areas_total += len(areas)
    z_thr = float(stats.norm.isf(a_test / (2 * max(1, n_areas_total))))
    cp_of_bus = {int(b): i for i, b in enumerate(acn.cp_bus)}
    for name, cuts, areas in prepared:
        for members in areas:
            inflow = 0.0
            var = 0.0
            boundary_loss = 0.0
            tags: list[str] = []
            for lb, dev in sorted(cuts.items()):
                row = dev.element
                f, t = int(acn.f_bus[row]), int(acn.t_bus[row])
                val = float(meas.sensor_readings[lb])
                sd = float(np.sqrt((noise.sensor_p_rel * val) ** 2 + noise.sensor_p_abs_wh**2 + 1 / 12))
                if lb.startswith("trafo-"):  # reads energy into the LV (to) side
                    if t in members:
                        inflow += val
                    elif f in members:
                        inflow -= val
                        boundary_loss += loss_wh[row]
                    else:
                        continue
                else:  # reads energy from the from-bus into the line
                    if t in members:
                        inflow += val
                        boundary_loss += loss_wh[row]
                    elif f in members:
                        inflow -= val
                    else:
                        continue
                var += sd**2
                tags.append(lb.partition(":")[0])
            cps = sorted(cp_of_bus[b] for b in members if b in cp_of_bus)
            cp_ids = tuple(model.cp_ids[i] for i in cps)
            consumption = 0.0
            for cp in cp_ids:
                e = float(meas.reported_wh_by_cp.get(cp, 0))
                consumption -= e
                var += (noise.meter_p_rel * e) ** 2 + noise.meter_p_abs_wh**2 + 1 / 12
            internal = [
                r
                for r in range(len(acn.f_bus))
                if int(acn.f_bus[r]) in members and int(acn.t_bus[r]) in members
            ]
            losses = boundary_loss + float(loss_wh[internal].sum())
            var += (0.05 * abs(losses) + 0.5) ** 2  # loss model error (reported values, not truth)
            gap = inflow - consumption - losses
            tol = z_thr * math.sqrt(var)
            label = f"{name} " + "+".join(tags)
            out.append(
                AreaBalance(
                    area=label,
                    cp_ids=cp_ids,
                    inflow_wh=int(round(inflow)),
                    reported_consumption_wh=int(round(consumption)),
                    losses_wh=int(round(losses)),
                    gap_wh=int(round(gap)),
                    tolerance_wh=int(math.ceil(tol)),
                    alarm=abs(gap) > tol,
                )
            )
    return tuple(out)


def _areas(acn: _acpf.AcNetwork, cut_rows: set[int]) -> list[set[int]]:
    """Connected bus sets after cutting the sensored branches, minus the slack's area."""
    parent = list(range(acn.n_bus))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r in range(len(acn.f_bus)):
        if r in cut_rows:
            continue
        a, b = find(int(acn.f_bus[r])), find(int(acn.t_bus[r]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, set[int]] = {}
    for k in range(acn.n_bus):
        groups.setdefault(find(k), set()).add(k)
    ref = {find(int(k)) for k in acn.ref}
    touching = set()
    for r in cut_rows:
        touching.add(find(int(acn.f_bus[r])))
        touching.add(find(int(acn.t_bus[r])))
    return [g for root, g in sorted(groups.items()) if root not in ref and root in touching]


# --------------------------------------------------------------------------- attacks


def under_report(measurements: SlotMeasurements, hidden_wh_by_cp: Mapping[str, int]) -> SlotMeasurements:
    """The ``fdi-meter`` attack: each named meter hides ``hidden_wh`` of its consumption
    (reports that much less import, or more export)."""
    return measurements.with_reported(
        {cp: int(measurements.reported_wh_by_cp[cp]) + int(h) for cp, h in hidden_wh_by_cp.items()}
    )


def craft_stealthy_attack(
    model: GridModel,
    measurements: SlotMeasurements,
    target_cp: str,
    hidden_wh: int,
    *,
    attacker_can_modify_sensors: bool = True,
    noise: MeterNoise = MeterNoise(),
) -> SlotMeasurements:
    """The ``fdi-stealthy`` attack: hide ``hidden_wh`` of ``target_cp``'s consumption with a
    coordinated, physically consistent change of every reading the attacker controls.

    The attacker estimates the state x^ from the honest readings, picks the smallest state
    change c that raises the target's injection by ``hidden_wh`` and leaves every other
    connection point's P and Q (and the substation voltage) unchanged, and adds
    a = h(x^ + c) - h(x^) to the readings (the exact AC form of a = H c; Hug & Giampapa,
    IEEE Trans. Smart Grid 3(3), 2012). With ``attacker_can_modify_sensors=False`` the DSO
    sensors keep their honest values (the protected-measurement defence).
    """
    acn = ac_network(model)
    ti = model.cp_index(target_cp)
    rows = build_rows(model, measurements, noise)
    est = estimate_state(acn, rows.mm, rows.z, rows.sigma, with_covariance=False)
    x_hat = voltage_to_state(acn, est.v)
    scale = WH_PER_MW_SLOT * acn.base_mva
    # Constraint rows: P and Q at every cp bus and every zero-injection bus, |V| at the slack.
    ref_set = {int(r) for r in acn.ref}
    kinds, elems, target = [], [], []
    for k in range(acn.n_bus):
        if k in ref_set:
            kinds.append(VM)
            elems.append(k)
            target.append(0.0)
            continue
        kinds += [P_INJ, Q_INJ]
        elems += [k, k]
        is_t = k == int(acn.cp_bus[ti])
        target += [hidden_wh / scale if is_t else 0.0, 0.0]
    if len(acn.pv):
        pv_set = set(int(k) for k in acn.pv)
        keep = [
            i
            for i, (kd, e) in enumerate(zip(kinds, elems, strict=True))
            if not (kd == Q_INJ and e in pv_set)
        ]
        kinds = [kinds[i] for i in keep]
        elems = [elems[i] for i in keep]
        target = [target[i] for i in keep]
    cm = MeasurementModel(
        np.array(kinds), np.array(elems), np.ones(len(kinds)), tuple(f"c{i}" for i in range(len(kinds)))
    )
    b = np.array(target)
    h0 = measure(acn, cm, est.v)
    a_mat = sp.csr_matrix(jacobian(acn, cm, est.v))
    c = np.zeros(len(x_hat))
    for _ in range(4):  # Newton on the nonlinear constraints h_c(x^ + c) - h_c(x^) = b
        g = measure(acn, cm, state_to_voltage(acn, x_hat + c)) - h0 - b
        if np.max(np.abs(g)) < 1e-13:
            break
        c = c - _min_norm_solve(a_mat, g)
    v_att = state_to_voltage(acn, x_hat + c)
    a = measure(acn, rows.mm, v_att) - measure(acn, rows.mm, est.v)
    return _apply_attack(model, measurements, rows, a * rows.unit_scale, attacker_can_modify_sensors)


def _min_norm_solve(a_mat: sp.csr_matrix, g: FloatArray) -> FloatArray:
    """argmin ||d|| with A d = g (A has full row rank here)."""
    aat = sp.csc_matrix(a_mat @ a_mat.T)
    try:
        y = spla.splu(aat).solve(g)
        out = np.asarray(a_mat.T @ y)
        if np.all(np.isfinite(out)):
            return out
    except RuntimeError:
        pass
    return np.asarray(spla.lsqr(a_mat, g, atol=1e-15, btol=1e-15, iter_lim=10_000)[0])


def _apply_attack(
    model: GridModel,
    meas: SlotMeasurements,
    rows: Rows,
    a_units: FloatArray,
    modify_sensors: bool,
) -> SlotMeasurements:
    wh = dict(meas.reported_wh_by_cp)
    varh = dict(meas.reported_varh_by_cp)
    vm = dict(meas.vm_pu_by_cp)
    sensors = dict(meas.sensor_readings)
    for i, lb in enumerate(rows.mm.labels):
        delta = float(a_units[i])
        owner = rows.owner[i]
        if owner == METER:
            cp, _, qty = lb.partition(":")
            if qty == "p_wh":
                wh[cp] = int(round(wh[cp] + delta))
            elif qty == "q_varh":
                varh[cp] = int(round(varh[cp] + delta))
            elif qty == "vm_pu":
                vm[cp] = round(vm[cp] + delta, 6)
        elif owner == SENSOR and modify_sensors:
            if lb.endswith(":vm_pu"):
                sensors[lb] = round(sensors[lb] + delta, 6)
            else:
                sensors[lb] = float(int(round(sensors[lb] + delta)))
    return replace(
        meas, reported_wh_by_cp=wh, reported_varh_by_cp=varh, vm_pu_by_cp=vm, sensor_readings=sensors
    )


# --------------------------------------------------------------------------- measured rates


@dataclass(frozen=True)
class DetectionRate:
    """One cell of the detection report."""

    attack: str
    """``"random"`` (only the target meter lies) or ``"stealthy"`` (a = H c)."""
    magnitude: float
    """Share of the target's consumption hidden."""
    defence: str
    """``"classical"`` (chi2 + LNR + balance) or ``"protected"``."""
    trials: int
    alarm_rate: float
    """Any alarm raised in the attacked slot."""
    tpr: float
    """Target meter flagged in the attacked slot."""
    tpr_2slot: float
    """Target flagged in the attacked slot or the next one (attack persists)."""
    wrong_flag_rate: float
    """Trials in which an honest meter was flagged."""


@dataclass(frozen=True)
class FdiReport:
    """Measured detection and false-positive rates."""

    network: str
    rates: tuple[DetectionRate, ...]
    honest_slots: int
    fpr_classical: float
    """Honest slots with any flagged meter, classical detector."""
    fpr_protected: float
    alarm_rate_classical_honest: float
    alarm_rate_protected_honest: float
    min_consumption_wh: int

    def as_dict(self) -> dict[str, object]:
        return {
            "network": self.network,
            "honest_slots": self.honest_slots,
            "fpr_classical": self.fpr_classical,
            "fpr_protected": self.fpr_protected,
            "alarm_rate_classical_honest": self.alarm_rate_classical_honest,
            "alarm_rate_protected_honest": self.alarm_rate_protected_honest,
            "min_consumption_wh": self.min_consumption_wh,
            "rates": [r.__dict__ for r in self.rates],
        }


def fdi_detection_report(
    model: GridModel,
    *,
    magnitudes: Sequence[float] = (0.1, 0.2, 0.5),
    attacks: Sequence[str] = ("random", "stealthy"),
    trials: int = 40,
    honest_slots: int = 96,
    seed: int = 0,
    days: Sequence[int] | None = None,
    min_consumption_wh: int = 100,
    plan: SensorPlan = SensorPlan(),
    config: DetectionConfig = DetectionConfig(),
) -> FdiReport:
    """True- and false-positive rates of both detectors over seeded random trials.

    Each trial picks a slot (evening or daytime of ``days``), a target cp consuming at least
    ``min_consumption_wh`` in that slot and its next, takes honest readings, injects the
    attack into two consecutive slots and runs the detector (classical: attacker may alter
    DSO sensors too; protected: it may not).
    """
    rng = np.random.default_rng(seed)
    day_list = list(days) if days is not None else list(range(0, model.n_slots // 96, 7))
    classical = replace(config, protected_defence=False)
    protected = replace(config, protected_defence=True)
    rates: list[DetectionRate] = []
    for attack in attacks:
        if attack not in ("random", "stealthy"):
            raise GridError(f"unknown attack {attack!r}: use 'random' or 'stealthy'")
        for mag in magnitudes:
            for defence, cfg in (("classical", classical), ("protected", protected)):
                al = tp = tp2 = wrong = 0
                for _ in range(trials):
                    slot, cp = _pick_target(model, rng, day_list, min_consumption_wh)
                    prev: DetectionResult | None = None
                    hit = hit2 = alarm = bad = False
                    for s in (slot, slot + 1):
                        honest = measure_slot(
                            model, s, model.forecast_wh_by_cp(s), rng=rng, plan=plan, noise=cfg.noise
                        )
                        hidden = int(round(mag * model.load_wh[model.cp_index(cp), s]))
                        if attack == "random":
                            m = under_report(honest, {cp: hidden})
                        else:
                            m = craft_stealthy_attack(
                                model, honest, cp, hidden,
                                attacker_can_modify_sensors=defence == "classical", noise=cfg.noise,
                            )
                        res = detect_bad_meters(model, s, m, config=cfg, previous=prev)
                        if s == slot:
                            hit = cp in res.flagged
                            alarm = res.alarm
                        hit2 = hit2 or cp in res.flagged
                        bad = bad or bool(res.flagged - {cp})
                        prev = res
                    al += alarm
                    tp += hit
                    tp2 += hit2
                    wrong += bad
                rates.append(
                    DetectionRate(
                        attack=attack,
                        magnitude=float(mag),
                        defence=defence,
                        trials=trials,
                        alarm_rate=al / trials,
                        tpr=tp / trials,
                        tpr_2slot=tp2 / trials,
                        wrong_flag_rate=wrong / trials,
                    )
                )
    fp_c = fp_p = al_c = al_p = 0
    prev_c: DetectionResult | None = None
    prev_p: DetectionResult | None = None
    start = int(rng.integers(0, max(1, model.n_slots - honest_slots)))
    for s in range(start, start + honest_slots):
        honest = measure_slot(model, s, model.forecast_wh_by_cp(s), rng=rng, plan=plan, noise=config.noise)
        rc = detect_bad_meters(model, s, honest, config=classical, previous=prev_c)
        rp = detect_bad_meters(model, s, honest, config=protected, previous=prev_p)
        fp_c += bool(rc.flagged)
        fp_p += bool(rp.flagged)
        al_c += rc.alarm
        al_p += rp.alarm
        prev_c, prev_p = rc, rp
    n = max(1, honest_slots)
    return FdiReport(
        network=model.name,
        rates=tuple(rates),
        honest_slots=honest_slots,
        fpr_classical=fp_c / n,
        fpr_protected=fp_p / n,
        alarm_rate_classical_honest=al_c / n,
        alarm_rate_protected_honest=al_p / n,
        min_consumption_wh=min_consumption_wh,
    )


def _pick_target(
    model: GridModel, rng: np.random.Generator, days: list[int], min_wh: int
) -> tuple[int, str]:
    for _ in range(1000):
        day = int(rng.choice(days))
        slot = day * 96 + int(rng.integers(0, 95))
        if slot + 1 >= model.n_slots:
            continue
        ok = np.flatnonzero(
            (model.load_wh[:, slot] >= min_wh) & (model.load_wh[:, slot + 1] >= min_wh)
        )
        if len(ok):
            return slot, model.cp_ids[int(rng.choice(ok))]
    raise GridError(f"no connection point of {model.name} consumes {min_wh} Wh in a slot")
