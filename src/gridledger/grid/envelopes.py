"""Operating envelopes: per-connection-point import/export limits for one slot.

Method (docs/grid.md has the long form):

1. Linearise the AC power flow at an operating point (first the forecast, then the centre
   of the envelope box): voltage sensitivities dV/dP and branch-current sensitivities dI/dP
   for every connection point, from one LU factorisation of the Newton-Raphson Jacobian.
2. Share the network's headroom fairly: every cp gets the same fraction of its connection
   capacity, ``export_max = t_e * capacity``, ``import_max = t_m * capacity`` (equal-share
   allocation of dynamic operating envelopes, Petrou et al., "Ensuring distribution network
   integrity using dynamic operating limits for prosumers", IEEE Trans. Smart Grid 12(5), 2021).
3. Choose ``t_e, t_m`` by a small LP so that the *worst case over the whole box* of schedules
   stays inside an internally tightened band: for a linear function the worst case over a box
   is attained at a vertex and is itself linear in the limits (positive sensitivities take the
   export end, negative ones the import end); branch currents are bounded by the triangle
   inequality |I(x)| <= |I(x_lin)| + sum |dI/dP_i| |x_i - x_lin_i|.
4. Check the worst-case vertices with full AC power flows and tighten the violated constraint
   until they pass; round down to whole Wh.

So any schedule inside the envelopes keeps voltages inside the band and loading under the
limit, up to the linearisation error that the AC vertex checks and margins absorb (tests
draw random schedules in the box and run them through pandapower).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid.model import WH_PER_MW_SLOT, GridModel
from gridledger.grid.powerflow import (
    GridLimits,
    ac_network,
    cp_q_pu,
    fast_violations,
    schedule_array,
    solve_fast,
    wh_to_pu,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Envelope:
    """Import/export limits of one connection point for one slot (Wh, non-negative)."""

    import_max_wh: int
    export_max_wh: int

    def contains(self, net_injection_wh: int) -> bool:
        """True if a net injection (export > 0) lies inside the envelope."""
        return -self.import_max_wh <= net_injection_wh <= self.export_max_wh

    def clip(self, net_injection_wh: int) -> int:
        """The nearest net injection inside the envelope."""
        return max(-self.import_max_wh, min(self.export_max_wh, int(net_injection_wh)))

    def as_tuple(self) -> tuple[int, int]:
        """``(import_max_wh, export_max_wh)``, the form ``gridledger.market`` clears with."""
        return (self.import_max_wh, self.export_max_wh)


@dataclass(frozen=True)
class EnvelopeConfig:
    """Limits, internal margins and caps used to compute envelopes."""

    limits: GridLimits = field(default_factory=GridLimits)
    vm_margin_pu: float = 0.005
    """The LP keeps the linearised worst case this far inside the voltage band."""
    loading_margin_pct: float = 3.0
    """... and this far below the loading limit."""
    max_envelope_factor: float = 2.0
    """No envelope exceeds this multiple of the cp's connection capacity."""
    relinearise_rounds: int = 2
    ac_check_rounds: int = 12


@dataclass(frozen=True)
class EnvelopeReport:
    """Envelopes plus how they were found."""

    slot: int
    envelopes: dict[str, Envelope]
    export_factor: float
    """Share of connection capacity every cp may export (t_e)."""
    import_factor: float
    binding: tuple[str, ...]
    """Constraints at their limit in the final LP, e.g. ``"overvoltage bus 12"``."""
    worst_vm_max_pu: float
    """Highest voltage over the AC-checked vertices of the envelope box."""
    worst_vm_min_pu: float
    worst_loading_pct: float
    ac_checks: int


def compute_envelopes(
    model: GridModel,
    slot: int,
    *,
    forecast_wh_by_cp: Mapping[str, int] | None = None,
    config: EnvelopeConfig = EnvelopeConfig(),
) -> dict[str, Envelope]:
    """Per-cp import/export limits (integer Wh) for ``slot``.

    ``forecast_wh_by_cp`` (default: the model's profiles) is the first linearisation point.
    Any schedule with every cp inside its envelope keeps voltages within
    ``config.limits`` and branch loading below ``config.limits.max_loading_pct``.
    Raises ``GridError`` if even zero injection at every cp breaks the limits.
    """
    return compute_envelope_report(
        model, slot, forecast_wh_by_cp=forecast_wh_by_cp, config=config
    ).envelopes


def compute_envelope_report(
    model: GridModel,
    slot: int,
    *,
    forecast_wh_by_cp: Mapping[str, int] | None = None,
    config: EnvelopeConfig = EnvelopeConfig(),
) -> EnvelopeReport:
    """``compute_envelopes`` with the diagnostics (factors, binding constraints, AC checks)."""
    slot = model.check_slot(slot)
    acn = ac_network(model)
    x_fore = (
        model.net_injection_wh(slot)
        if forecast_wh_by_cp is None
        else schedule_array(model, forecast_wh_by_cp, "forecast")
    )
    w_pu = wh_to_pu(model, np.array([cp.capacity_w for cp in model.cps]) * 0.25)
    q_pu = cp_q_pu(model, slot)
    lim = config.limits
    n_pq, n_mon = len(acn.pq), len(acn.mon_row)
    extra_up = np.zeros(n_pq)
    extra_lo = np.zeros(n_pq)
    extra_ld = np.zeros(n_mon)

    # Linearise on the ray x = d * capacity (the box centre always lies on it): the forecast
    # enters as its least-squares projection on that ray. On the ray, "export end or import
    # end is further from x_lin" is the same answer for every cp, which keeps the LP exact
    # in two variables (see _solve_lp).
    x_fore_pu = wh_to_pu(model, x_fore)
    d_lin = float(w_pu @ x_fore_pu / max(float(w_pu @ w_pu), 1e-30))
    d_lin = float(np.clip(d_lin, -config.max_envelope_factor, config.max_envelope_factor))
    lp: _Lp | None = None
    lin: _Lin | None = None
    for _ in range(max(1, config.relinearise_rounds)):
        lin = _linearise(acn, w_pu, d_lin, q_pu)
        lp = None if lin is None else _solve_lp(
            acn, lin, d_lin, w_pu, lim, config, extra_up, extra_lo, extra_ld
        )
        if lp is None and d_lin != 0.0:
            # The forecast point may be far outside the band; zero injection is the safe
            # anchor (the network is designed to be fine with nothing connected).
            d_lin = 0.0
            lin = _linearise(acn, w_pu, d_lin, q_pu)
            lp = None if lin is None else _solve_lp(
                acn, lin, d_lin, w_pu, lim, config, extra_up, extra_lo, extra_ld
            )
        if lp is None:
            _raise_base_infeasible(model, slot, lim)
        assert lp is not None
        d_lin = (lp.t_e - lp.t_m) / 2.0
    assert lp is not None and lin is not None
    checks = 0
    t_e, t_m = lp.t_e, lp.t_m
    for _ in range(config.ac_check_rounds):
        bad, worst, n = _check_vertices(model, slot, acn, lin, w_pu, t_e, t_m, lim)
        checks += n
        if not bad:
            break
        for kind, idx, excess in bad:
            pad = excess + 0.25 * (config.vm_margin_pu if kind != "ld" else config.loading_margin_pct)
            if kind == "up":
                extra_up[idx] += pad
            elif kind == "lo":
                extra_lo[idx] += pad
            else:
                extra_ld[idx] += pad
        new = _solve_lp(acn, lin, lin.d, w_pu, lim, config, extra_up, extra_lo, extra_ld)
        if new is None:
            t_e, t_m = 0.0, 0.0
            lp = _Lp(0.0, 0.0, ("no safe box after AC checks",))
        else:
            lp, t_e, t_m = new, new.t_e, new.t_m
    # Last resort: shrink uniformly until the AC vertices pass (never needed in the tests,
    # kept so the guarantee never rests on the LP alone).
    e_wh, m_wh = _to_wh(model, w_pu, t_e, t_m)
    for _ in range(60):
        bad, worst, n = _check_vertices_wh(model, slot, acn, lin, e_wh, m_wh, lim)
        checks += n
        if not bad:
            break
        e_wh = (e_wh * 9) // 10
        m_wh = (m_wh * 9) // 10
    else:
        _raise_base_infeasible(model, slot, lim)
    envelopes = {
        cp: Envelope(import_max_wh=int(m_wh[i]), export_max_wh=int(e_wh[i]))
        for i, cp in enumerate(model.cp_ids)
    }
    return EnvelopeReport(
        slot=slot,
        envelopes=envelopes,
        export_factor=float(t_e),
        import_factor=float(t_m),
        binding=lp.binding if lp is not None else (),
        worst_vm_max_pu=worst[0],
        worst_vm_min_pu=worst[1],
        worst_loading_pct=worst[2],
        ac_checks=checks,
    )


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Lin:
    d: float
    """Linearisation point x_lin = d * capacity."""
    v: npt.NDArray[np.complex128]
    vm: FloatArray
    i_f: FloatArray
    i_t: FloatArray
    s: _acpf.Sensitivities
    q_pu: FloatArray


@dataclass(frozen=True)
class _Lp:
    t_e: float
    t_m: float
    binding: tuple[str, ...]


def _linearise(
    acn: _acpf.AcNetwork, w_pu: FloatArray, d: float, q_pu: FloatArray
) -> _Lin | None:
    sol = _acpf.solve_pf(acn, _acpf.bus_injection(acn, d * w_pu, q_pu))
    if not sol.converged:
        return None
    i_f, i_t = _acpf.branch_currents(acn, sol.v)
    return _Lin(
        d=d,
        v=sol.v,
        vm=np.abs(sol.v),
        i_f=np.abs(i_f),
        i_t=np.abs(i_t),
        s=_acpf.sensitivities(acn, sol.v),
        q_pu=q_pu,
    )


def _solve_lp(
    acn: _acpf.AcNetwork,
    lin: _Lin,
    d_lin: float,
    w: FloatArray,
    lim: GridLimits,
    cfg: EnvelopeConfig,
    extra_up: FloatArray,
    extra_lo: FloatArray,
    extra_ld: FloatArray,
) -> _Lp | None:
    """max t_e + t_m s.t. linearised worst cases over the box stay inside the tightened band.

    Box: x_i in [-t_m w_i, t_e w_i]; linearisation point x_lin = d_lin * w.
    Voltage at bus k: the worst case of sum_i S_ki (x_i - x_lin_i) over the box takes the
    export end where S_ki > 0 and the import end where S_ki < 0, which is linear in t.
    Current of branch b: |I(x)| <= |I(x_lin)| + sum_i |G_bi| max(t_e w_i - x_lin_i,
    t_m w_i + x_lin_i); because x_lin is proportional to w the same term of the max wins for
    every i, so "max <= c" is exactly the two linear rows below.
    """
    pq = acn.pq
    s = lin.s.dvm[pq]  # (n_pq, n_cp)
    s_pos, s_neg = np.clip(s, 0.0, None), np.clip(s, None, 0.0)
    x_lin = d_lin * w
    shift = s @ x_lin
    vmax = lim.vm_max_pu - cfg.vm_margin_pu - extra_up
    vmin = lim.vm_min_pu + cfg.vm_margin_pu + extra_lo
    a_up = np.column_stack([s_pos @ w, -(s_neg @ w)])
    b_up = vmax - lin.vm[pq] + shift
    a_lo = np.column_stack([-(s_neg @ w), s_pos @ w])
    b_lo = lin.vm[pq] - vmin - shift
    ld_max = (lim.max_loading_pct - cfg.loading_margin_pct - extra_ld) / 100.0
    gw_f = np.abs(lin.s.di_f) @ w
    gw_t = np.abs(lin.s.di_t) @ w
    zeros = np.zeros(len(acn.mon_row))
    a_ld = np.vstack(
        [
            np.column_stack([gw_f, zeros]),
            np.column_stack([zeros, gw_f]),
            np.column_stack([gw_t, zeros]),
            np.column_stack([zeros, gw_t]),
        ]
    )
    c_f = ld_max / acn.mon_kf - lin.i_f
    c_t = ld_max / acn.mon_kt - lin.i_t
    b_ld = np.r_[c_f + d_lin * gw_f, c_f - d_lin * gw_f, c_t + d_lin * gw_t, c_t - d_lin * gw_t]
    a_ub = np.vstack([a_up, a_lo, a_ld])
    b_ub = np.r_[b_up, b_lo, b_ld]
    # Scale rows so HiGHS sees O(1) coefficients (sensitivities span many decades).
    row_scale = np.maximum(np.abs(a_ub).max(axis=1), 1e-12)
    a_ub = a_ub / row_scale[:, None]
    b_ub = b_ub / row_scale
    t_cap = cfg.max_envelope_factor
    res = linprog(
        np.array([-1.0, -1.0]), A_ub=a_ub, b_ub=b_ub, bounds=[(0.0, t_cap)] * 2, method="highs"
    )
    if res.status != 0:
        return None
    t_e, t_m = float(res.x[0]), float(res.x[1])
    slack = b_ub - a_ub @ res.x
    labels: list[str] = []
    npq, nmon = len(pq), len(acn.mon_row)
    for r in np.flatnonzero(slack < 1e-9):
        if r < npq:
            labels.append(f"overvoltage {acn.bus_label(int(pq[r]))}")
        elif r < 2 * npq:
            labels.append(f"undervoltage {acn.bus_label(int(pq[r - npq]))}")
        else:
            labels.append(f"overload {acn.mon_label(int((r - 2 * npq) % nmon))}")
    if t_e >= t_cap - 1e-9:
        labels.append("export cap")
    if t_m >= t_cap - 1e-9:
        labels.append("import cap")
    return _Lp(t_e=t_e, t_m=t_m, binding=tuple(dict.fromkeys(labels)))


def _to_wh(model: GridModel, w_pu: FloatArray, t_e: float, t_m: float) -> tuple[IntArray, IntArray]:
    base = ac_network(model).base_mva * WH_PER_MW_SLOT
    # Floor: rounding never widens the box the LP and AC checks certified.
    e = np.floor(np.maximum(t_e, 0.0) * w_pu * base + 1e-9).astype(np.int64)
    m = np.floor(np.maximum(t_m, 0.0) * w_pu * base + 1e-9).astype(np.int64)
    return e, m


def _vertex_patterns(acn: _acpf.AcNetwork, lin: _Lin, n_cp: int) -> list[npt.NDArray[np.bool_]]:
    """Worst-case vertices (True = export end) of the box for voltage and loading constraints."""
    pats: dict[bytes, npt.NDArray[np.bool_]] = {}
    pats[b"exp"] = np.ones(n_cp, dtype=bool)
    pats[b"imp"] = np.zeros(n_cp, dtype=bool)
    s = lin.s.dvm[acn.pq]
    # Meshed networks can have mixed-sign sensitivities: take the worst vertex of the
    # voltage rows with the largest spread, and of each monitored branch's current.
    if s.size:
        spread = np.abs(s).sum(axis=1)
        for r in np.argsort(-spread)[:4]:
            for sign in (1.0, -1.0):
                p = sign * s[r] >= 0
                pats.setdefault(p.tobytes(), p)
    if len(acn.mon_row):
        i0 = (acn.yf @ lin.v)[acn.mon_row]
        direction = np.real(np.conj(i0)[:, None] * lin.s.di_f)
        for r in np.argsort(-np.abs(direction).sum(axis=1))[:4]:
            for sign in (1.0, -1.0):
                p = sign * direction[r] >= 0
                pats.setdefault(p.tobytes(), p)
    return list(pats.values())


def _check_vertices(
    model: GridModel,
    slot: int,
    acn: _acpf.AcNetwork,
    lin: _Lin,
    w_pu: FloatArray,
    t_e: float,
    t_m: float,
    lim: GridLimits,
) -> tuple[list[tuple[str, int, float]], tuple[float, float, float], int]:
    e_wh, m_wh = _to_wh(model, w_pu, t_e, t_m)
    return _check_vertices_wh(model, slot, acn, lin, e_wh, m_wh, lim)


def _check_vertices_wh(
    model: GridModel,
    slot: int,
    acn: _acpf.AcNetwork,
    lin: _Lin,
    e_wh: IntArray,
    m_wh: IntArray,
    lim: GridLimits,
) -> tuple[list[tuple[str, int, float]], tuple[float, float, float], int]:
    """AC power flows at the worst vertices; returns (violations, (vmax, vmin, loading), count)."""
    bad: dict[tuple[str, int], float] = {}
    worst = [-math.inf, math.inf, 0.0]
    pats = _vertex_patterns(acn, lin, len(e_wh))
    pq_pos = np.full(acn.n_bus, -1, dtype=np.int64)
    pq_pos[acn.pq] = np.arange(len(acn.pq))
    for pat in pats:
        x = np.where(pat, e_wh, -m_wh)
        flow = solve_fast(model, slot, x, v0=lin.v)
        if not flow.converged:
            # Collapse at the import vertex: treat as undervoltage at every PQ bus.
            for k in range(len(acn.pq)):
                bad[("lo", k)] = max(bad.get(("lo", k), 0.0), 0.05)
            worst[1] = 0.0
            continue
        worst[0] = max(worst[0], float(flow.vm_pu.max()))
        worst[1] = min(worst[1], float(flow.vm_pu.min()))
        worst[2] = max(worst[2], float(flow.loading_pct.max(initial=0.0)))
        over = flow.vm_pu[acn.pq] - lim.vm_max_pu
        under = lim.vm_min_pu - flow.vm_pu[acn.pq]
        for kk in np.flatnonzero(over > 0):
            bad[("up", int(kk))] = max(bad.get(("up", int(kk)), 0.0), float(over[kk]))
        for kk in np.flatnonzero(under > 0):
            bad[("lo", int(kk))] = max(bad.get(("lo", int(kk)), 0.0), float(under[kk]))
        ld = flow.loading_pct - lim.max_loading_pct
        for j in np.flatnonzero(ld > 0):
            bad[("ld", int(j))] = max(bad.get(("ld", int(j)), 0.0), float(ld[j]))
    return [(k, i, v) for (k, i), v in sorted(bad.items())], (worst[0], worst[1], worst[2]), len(pats)


def _raise_base_infeasible(model: GridModel, slot: int, lim: GridLimits) -> None:
    flow = solve_fast(model, slot, np.zeros(len(model.cps), dtype=np.int64))
    viol = fast_violations(model, flow, lim)
    what = ", ".join(f"{v.kind} at {v.element} ({v.value:.3f})" for v in viol[:3]) or "none found"
    raise GridError(
        f"no operating envelope exists for slot {slot} of {model.name}: the network breaks its "
        f"limits even with every connection point at zero ({what})"
    )
