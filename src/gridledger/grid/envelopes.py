"""Operating envelopes: per-connection-point import/export limits for one slot.

Method (docs/grid.md has the long form):

1. **Forecast first, then fair shares of the headroom.** A cp's envelope is its forecast net
   injection (the hull [min(0, f), max(0, f)]) widened by an equal share of its connection
   capacity: ``export_max = s_e * max(0, f) + t_e * capacity``, ``import_max = s_m * max(0, -f)
   + t_m * capacity``. The network must carry what the cps are forecast to do anyway, so the
   envelope cuts a forecast (``s < 1``, the same fraction for every cp) only when the
   forecast hull itself would break a limit; the flexibility left (batteries, trading beyond
   the forecast) is shared out equally in proportion to capacity (equal-share allocation of
   dynamic operating envelopes, Petrou et al., "Ensuring distribution network integrity
   using dynamic operating limits for prosumers", IEEE Trans. Smart Grid 12(5), 2021).
2. **Linearise** the AC power flow at the centre of the box: voltage sensitivities dV/dP and
   branch-current sensitivities dI/dP for every connection point, from one LU factorisation
   of the Newton-Raphson Jacobian.
3. **Small LPs, lexicographically**: the largest common share of the forecast (``s_e = s_m``),
   then either direction's share up to 1, then the largest common headroom, then the largest
   total headroom, each keeping the *worst case over the whole box* inside an internally
   tightened band. For a linear function the worst case over a box is its value at the
   centre plus sum |sensitivity| * half-width, which is linear in the four shares.
4. **AC check** of the worst-case vertices with full power flows; a violated constraint is
   tightened and the LPs solved again; round down to whole Wh.

So any schedule inside the envelopes keeps voltages inside the band and loading under the
limit, up to the linearisation error that the AC vertex checks and margins absorb (tests
draw random schedules in the box and run them through pandapower). Each envelope report
names the constraint that limits exports and the one that limits imports: the cause of any
curtailment to the envelope.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid.area_workers import area_workers
from gridledger.grid.areas import Areas, boundary_vm_pu, substation_areas
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
    per_substation: bool | None = None
    """Envelopes per secondary substation (``grid.areas``): None = whenever the network has
    two or more LV areas behind MV/LV transformers; False = one problem for the whole network
    (dense sensitivities: O(cps^2) memory); True = required (``GridError`` otherwise)."""
    boundary_band_pu: float = 0.03
    """Per-substation envelopes: the share of the voltage band given to the MV level. Each
    LV busbar stays within this of its no-load voltage, and each LV area keeps its voltages
    this far inside the band on either side."""


@dataclass(frozen=True)
class EnvelopeReport:
    """Envelopes plus how they were found."""

    slot: int
    envelopes: dict[str, Envelope]
    export_factor: float
    """Headroom beyond the forecast every cp may export, as a share of its capacity (t_e)."""
    import_factor: float
    """... and import (t_m)."""
    binding: tuple[str, ...]
    """Constraints at their limit in the final LP, e.g. ``"overvoltage bus 12"``."""
    worst_vm_max_pu: float
    """Highest voltage over the AC-checked vertices of the envelope box."""
    worst_vm_min_pu: float
    worst_loading_pct: float
    ac_checks: int
    forecast_export_share: float = 1.0
    """Share of each cp's forecast export the envelope allows (s_e; 1 unless the network
    cannot carry the forecast)."""
    forecast_import_share: float = 1.0
    export_limited_by: str = ""
    """The constraint that stops exports growing (``"overload line 33"``,
    ``"overvoltage bus 12"``, ``"export cap"``): the cause of any curtailment to an export
    limit. Empty when nothing binds."""
    import_limited_by: str = ""
    areas: int = 1
    """Problems the envelopes were computed in: 1 (the whole network), or the MV level plus
    one per LV area (per-substation envelopes)."""
    limited_by_cp: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Per-substation envelopes: each cp's (export, import) bound, from its own area (the MV
    level's when the MV level's cap binds it); empty for a whole-network report."""

    def limited_by(self, cp_id: str, exporting: bool) -> str:
        """The constraint bounding ``cp_id``'s exports (``exporting``) or imports."""
        own = self.limited_by_cp.get(cp_id)
        if own is not None:
            return own[0] if exporting else own[1]
        return self.export_limited_by if exporting else self.import_limited_by


def compute_envelopes(
    model: GridModel,
    slot: int,
    *,
    forecast_wh_by_cp: Mapping[str, int] | None = None,
    config: EnvelopeConfig = EnvelopeConfig(),
) -> dict[str, Envelope]:
    """Per-cp import/export limits (integer Wh) for ``slot``.

    ``forecast_wh_by_cp`` (default: the model's profiles, PV + storage - load) is what the
    DSO expects each cp to inject without a market; the envelope contains it whenever the
    network can carry every forecast at once. Any schedule with every cp inside its envelope
    keeps voltages within ``config.limits`` and branch loading below
    ``config.limits.max_loading_pct``.
    Raises ``GridError`` if even zero injection at every cp breaks the limits, or for a
    forecast that misses or adds cps.
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
    """``compute_envelopes`` with the diagnostics (shares, binding constraints, AC checks).

    A network with two or more LV areas behind MV/LV transformers (``grid.areas``) gets its
    envelopes per secondary substation (``config.per_substation``; see ``_per_substation``).
    """
    slot = model.check_slot(slot)
    x_fore = (
        model.net_injection_wh(slot)
        if forecast_wh_by_cp is None
        else schedule_array(model, forecast_wh_by_cp, "forecast")
    )
    areas = None if config.per_substation is False else substation_areas(model)
    if areas is not None:
        return _per_substation(model, areas, slot, x_fore, config)
    if config.per_substation:
        raise GridError(f"{model.name} has fewer than two LV areas behind MV/LV transformers: "
                        "no per-substation envelopes (per_substation=None or False)")
    solved = _solve_box(model, slot, _box_of(model, x_fore), config.limits, config)
    return solved.report(model, slot)


def _box_of(model: GridModel, x_fore_wh: IntArray) -> _Box:
    f_pu = wh_to_pu(model, x_fore_wh)
    return _Box(
        f_exp=np.maximum(f_pu, 0.0),
        f_imp=np.maximum(-f_pu, 0.0),
        w=wh_to_pu(model, np.array([cp.capacity_w for cp in model.cps]) * 0.25),
    )


@dataclass(frozen=True, eq=False)
class _Solved:
    """One box solved: its shares, LP diagnostics, whole-Wh envelopes, AC-check figures."""

    shares: _Shares
    lp: _Lp
    e_wh: IntArray
    m_wh: IntArray
    worst: tuple[float, float, float]
    checks: int

    def report(self, model: GridModel, slot: int) -> EnvelopeReport:
        return EnvelopeReport(
            slot=slot,
            envelopes={cp: Envelope(import_max_wh=int(self.m_wh[i]), export_max_wh=int(self.e_wh[i]))
                       for i, cp in enumerate(model.cp_ids)},
            export_factor=float(self.shares.t_e),
            import_factor=float(self.shares.t_m),
            binding=self.lp.binding,
            worst_vm_max_pu=self.worst[0],
            worst_vm_min_pu=self.worst[1],
            worst_loading_pct=self.worst[2],
            ac_checks=self.checks,
            forecast_export_share=float(self.shares.s_e),
            forecast_import_share=float(self.shares.s_m),
            export_limited_by=self.lp.export_limited_by,
            import_limited_by=self.lp.import_limited_by,
        )


def _solve_box(
    model: GridModel,
    slot: int,
    box: _Box,
    lim: GridLimits,
    config: EnvelopeConfig,
    caps: _Shares | None = None,
    band: tuple[FloatArray, FloatArray] | None = None,
) -> _Solved:
    """Steps 2-4 of the module docstring for one network (or area) and its box.

    ``caps`` bound the four shares (default: forecast shares 1, headroom
    ``config.max_envelope_factor``); ``band`` = per-PQ-bus (highest, lowest) voltage (default:
    ``lim``'s band at every bus).
    """
    acn = ac_network(model)
    q_pu = cp_q_pu(model, slot)
    if band is None:
        band = (np.full(len(acn.pq), lim.vm_max_pu), np.full(len(acn.pq), lim.vm_min_pu))
    cap = caps if caps is not None else _Shares(1.0, 1.0, config.max_envelope_factor,
                                                config.max_envelope_factor)
    pads = _Pads(np.zeros(len(acn.pq)), np.zeros(len(acn.pq)), np.zeros(len(acn.mon_row)))

    shares = _Shares(min(1.0, cap.s_e), min(1.0, cap.s_m), 0.0, 0.0)  # first linearisation point
    lp: _Lp | None = None
    lin: _Lin | None = None
    for _ in range(max(1, config.relinearise_rounds)):
        lin = _linearise(acn, box.centre(shares), q_pu)
        lp = None if lin is None else _solve_shares(acn, lin, box, lim, config, pads, cap, band)
        if lp is None:
            # The centre may lie far outside the band (a forecast the network cannot carry);
            # zero injection is the safe anchor (the network is designed to be fine with
            # nothing connected).
            lin = _linearise(acn, np.zeros(len(model.cps)), q_pu)
            lp = None if lin is None else _solve_shares(acn, lin, box, lim, config, pads, cap, band)
        if lp is None:
            _raise_base_infeasible(model, slot, lim)
        assert lp is not None
        shares = lp.shares
    assert lp is not None and lin is not None
    checks = 0
    # the last vertex check and its box: when the rounds end on a passing box, the last
    # resort's first check below is of that same box (same lin, limits, band) and is this
    # result again — computed once, counted as before
    last: tuple[IntArray, IntArray, _Checked] | None = None
    for _ in range(config.ac_check_rounds):
        e_wh, m_wh = _to_wh(model, box, shares)
        got = _check_vertices_wh(model, slot, acn, lin, e_wh, m_wh, lim, band)
        last = (e_wh, m_wh, got)
        bad, worst, n = got
        checks += n
        if not bad:
            break
        for kind, idx, excess in bad:
            pad = excess + 0.25 * (config.vm_margin_pu if kind != "ld" else config.loading_margin_pct)
            getattr(pads, kind)[idx] += pad
        new = _solve_shares(acn, lin, box, lim, config, pads, cap, band)
        if new is None:
            lp = _Lp(_Shares(0.0, 0.0, 0.0, 0.0), ("no safe box after AC checks",), "", "")
        else:
            lp = new
        shares = lp.shares
    # Last resort: shrink uniformly until the AC vertices pass (never needed in the tests,
    # kept so the guarantee never rests on the LP alone).
    e_wh, m_wh = _to_wh(model, box, shares)
    for _ in range(60):
        if last is not None and np.array_equal(last[0], e_wh) and np.array_equal(last[1], m_wh):
            bad, worst, n = last[2]
        else:
            bad, worst, n = _check_vertices_wh(model, slot, acn, lin, e_wh, m_wh, lim, band)
        last = None
        checks += n
        if not bad:
            break
        e_wh = (e_wh * 9) // 10
        m_wh = (m_wh * 9) // 10
    else:
        _raise_base_infeasible(model, slot, lim)
    return _Solved(shares, lp, e_wh, m_wh, (worst[0], worst[1], worst[2]), checks)


def _per_substation(
    model: GridModel, areas: Areas, slot: int, x_fore_wh: IntArray, config: EnvelopeConfig
) -> EnvelopeReport:
    """Envelopes per secondary substation, the MV level as each LV area's boundary.

    1. **MV level**: the MV network with each LV area as one aggregate cp at its busbar (its
       box = the sum of its cps' boxes: forecast exports, imports and capacities add up, so at
       equal shares the aggregate's envelope is exactly the sum of the area's envelopes). The
       same LP as a whole network, with one more limit per busbar: its voltage stays within
       ``config.boundary_band_pu`` of its no-load value ``v0`` (the band split between the
       voltage levels that DSOs plan with). Gives the MV cps' envelopes and the MV shares.
    2. **Each LV area**: its own network with the slack at the busbar held at ``v0`` and the
       voltage band narrowed by how far the busbar may move (``boundary_band_pu``, less where
       the band's edge is nearer to ``v0``) on each side, its shares capped at the MV
       level's, so its cps' envelopes add up to no more than the aggregate the MV level
       certified.
    3. **Whole-network AC check** (the decomposition is conservative, not exact: a busbar's
       voltage moves an LV voltage one for one only to first order): power flows of the whole
       network at the all-export and all-import vertices; a broken limit shrinks every
       envelope by 10 % and checks again.
    """
    lim = config.limits
    mv = areas.mv
    n_mv = len(areas.mv_rows)
    box_full = _box_of(model, x_fore_wh)
    box_mv = _Box(
        f_exp=np.r_[box_full.f_exp[areas.mv_rows], [box_full.f_exp[a.rows].sum() for a in areas.lv]],
        f_imp=np.r_[box_full.f_imp[areas.mv_rows], [box_full.f_imp[a.rows].sum() for a in areas.lv]],
        w=np.r_[box_full.w[areas.mv_rows], [box_full.w[a.rows].sum() for a in areas.lv]],
    )
    acn_mv = ac_network(mv)
    hi = np.full(len(acn_mv.pq), lim.vm_max_pu)
    lo = np.full(len(acn_mv.pq), lim.vm_min_pu)
    pos = {int(k): j for j, k in enumerate(acn_mv.pq)}
    d = config.boundary_band_pu
    for a in areas.lv:
        k = pos.get(int(acn_mv.cp_bus[a.mv_index]))
        if k is not None:
            v0 = boundary_vm_pu(a)
            hi[k], lo[k] = min(hi[k], v0 + d), max(lo[k], v0 - d)
    top = _solve_box(mv, slot, box_mv, lim, config, band=(hi, lo))
    e_wh = np.zeros(len(model.cps), dtype=np.int64)
    m_wh = np.zeros(len(model.cps), dtype=np.int64)
    e_wh[areas.mv_rows] = top.e_wh[:n_mv]
    m_wh[areas.mv_rows] = top.m_wh[:n_mv]
    jobs: list[tuple[int, _Box, GridLimits, EnvelopeConfig, _Shares]] = []
    for a in areas.lv:
        # the busbar may move from v0 to min(v0 + d, vm_max) and down to max(v0 - d, vm_min):
        # the LV area keeps that far inside the band (so its no-load state is always inside)
        v0 = boundary_vm_pu(a)
        lv_lim = GridLimits(vm_min_pu=lim.vm_min_pu + min(d, max(0.0, v0 - lim.vm_min_pu)),
                            vm_max_pu=lim.vm_max_pu - min(d, max(0.0, lim.vm_max_pu - v0)),
                            max_loading_pct=lim.max_loading_pct)
        box_a = _Box(f_exp=box_full.f_exp[a.rows], f_imp=box_full.f_imp[a.rows], w=box_full.w[a.rows])
        jobs.append((slot, box_a, lv_lim, config, top.shares))
    # the LV areas are independent once the MV level has capped them: on every core
    pool = area_workers(model)
    got_all: list[_Solved] = (pool.map(_solve_area, jobs) if pool is not None
                              else [_solve_area(a.model, *j) for a, j in zip(areas.lv, jobs,
                                                                             strict=True)])
    solved = list(zip(areas.lv, got_all, strict=True))
    for a, got in solved:
        e_wh[a.rows] = got.e_wh
        m_wh[a.rows] = got.m_wh
    worst, checks = _check_whole(model, slot, e_wh, m_wh, lim)
    parts = [top, *(s for _a, s in solved)]
    # every cp's bound is its own area's; the report's headline factors are the smallest
    low_e = min(parts, key=lambda p: (p.shares.s_e, p.shares.t_e))
    low_m = min(parts, key=lambda p: (p.shares.s_m, p.shares.t_m))
    per_cp: dict[str, tuple[str, str]] = {}
    ids = model.cp_ids
    for i in areas.mv_rows:
        per_cp[ids[int(i)]] = (top.lp.export_limited_by, top.lp.import_limited_by)
    for a, s in solved:
        # an area bounded by the MV level's cap names the MV level's constraint
        exp = s.lp.export_limited_by if s.shares.t_e < top.shares.t_e - 1e-9 or \
            s.shares.s_e < top.shares.s_e - 1e-9 else top.lp.export_limited_by
        imp = s.lp.import_limited_by if s.shares.t_m < top.shares.t_m - 1e-9 or \
            s.shares.s_m < top.shares.s_m - 1e-9 else top.lp.import_limited_by
        for i in a.rows:
            per_cp[ids[int(i)]] = (exp, imp)
    return EnvelopeReport(
        slot=slot,
        envelopes={cp: Envelope(import_max_wh=int(m_wh[i]), export_max_wh=int(e_wh[i]))
                   for i, cp in enumerate(ids)},
        export_factor=float(low_e.shares.t_e),
        import_factor=float(low_m.shares.t_m),
        binding=tuple(dict.fromkeys(b for p in parts for b in p.lp.binding)),
        worst_vm_max_pu=max(worst[0], *(p.worst[0] for p in parts)),
        worst_vm_min_pu=min(worst[1], *(p.worst[1] for p in parts)),
        worst_loading_pct=max(worst[2], *(p.worst[2] for p in parts)),
        ac_checks=checks + sum(p.checks for p in parts),
        forecast_export_share=float(low_e.shares.s_e),
        forecast_import_share=float(low_m.shares.s_m),
        export_limited_by=low_e.lp.export_limited_by,
        import_limited_by=low_m.lp.import_limited_by,
        areas=1 + len(areas.lv),
        limited_by_cp=per_cp,
    )


def _solve_area(model: GridModel, slot: int, box: _Box, lim: GridLimits, config: EnvelopeConfig,
                caps: _Shares) -> _Solved:
    """One LV area's box under the MV level's caps (``grid.area_workers`` runs it anywhere)."""
    return _solve_box(model, slot, box, lim, config, caps=caps)


def _check_whole(
    model: GridModel, slot: int, e_wh: IntArray, m_wh: IntArray, lim: GridLimits
) -> tuple[tuple[float, float, float], int]:
    """Whole-network AC flows at the all-export and all-import vertices; shrinks ``e_wh`` and
    ``m_wh`` in place by 10 % until both pass. Returns (vmax, vmin, loading) and the count."""
    checks = 0
    for _ in range(60):
        worst = [-math.inf, math.inf, 0.0]
        ok = True
        for x in (e_wh, -m_wh):
            flow = solve_fast(model, slot, x)
            checks += 1
            if flow.converged:
                worst[0] = max(worst[0], float(flow.vm_pu.max()))
                worst[1] = min(worst[1], float(flow.vm_pu.min()))
                worst[2] = max(worst[2], float(flow.loading_pct.max(initial=0.0)))
            else:
                worst[1] = 0.0
            ok = ok and not fast_violations(model, flow, lim)
        if ok:
            return (worst[0], worst[1], worst[2]), checks
        e_wh[:] = (e_wh * 9) // 10
        m_wh[:] = (m_wh * 9) // 10
    _raise_base_infeasible(model, slot, lim)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Shares:
    """The four numbers that define every envelope of a slot."""

    s_e: float
    """Share of the forecast export allowed (<= 1)."""
    s_m: float
    t_e: float
    """Headroom beyond the forecast, as a share of connection capacity."""
    t_m: float


@dataclass(frozen=True, eq=False)
class _Box:
    """Per-cp forecast hull and capacity (p.u.); export_max = s_e f_exp + t_e w, etc."""

    f_exp: FloatArray
    f_imp: FloatArray
    w: FloatArray

    def export_max(self, y: _Shares) -> FloatArray:
        out: FloatArray = y.s_e * self.f_exp + y.t_e * self.w
        return out

    def import_max(self, y: _Shares) -> FloatArray:
        out: FloatArray = y.s_m * self.f_imp + y.t_m * self.w
        return out

    def centre(self, y: _Shares) -> FloatArray:
        out: FloatArray = (self.export_max(y) - self.import_max(y)) / 2.0
        return out

    def row(self, a: FloatArray, b: FloatArray) -> FloatArray:
        """LP coefficients over (s_e, s_m, t_e, t_m) of sum_i a_i export_i + b_i import_i."""
        return np.array([a @ self.f_exp, b @ self.f_imp, a @ self.w, b @ self.w])


@dataclass(frozen=True)
class _Pads:
    """Extra tightening per constraint after failed AC checks (p.u. / percent)."""

    up: FloatArray
    lo: FloatArray
    ld: FloatArray


@dataclass(frozen=True)
class _Lin:
    x: FloatArray
    """Linearisation point (cp injections, p.u.)."""
    v: npt.NDArray[np.complex128]
    vm: FloatArray
    i_f: npt.NDArray[np.complex128]
    i_t: npt.NDArray[np.complex128]
    s: _acpf.Sensitivities


@dataclass(frozen=True)
class _Lp:
    shares: _Shares
    binding: tuple[str, ...]
    export_limited_by: str
    import_limited_by: str


def _linearise(acn: _acpf.AcNetwork, x_pu: FloatArray, q_pu: FloatArray) -> _Lin | None:
    sol = _acpf.solve_pf(acn, _acpf.bus_injection(acn, x_pu, q_pu))
    if not sol.converged:
        return None
    i_f, i_t = _acpf.branch_currents(acn, sol.v)
    return _Lin(
        x=x_pu, v=sol.v, vm=np.abs(sol.v), i_f=i_f, i_t=i_t, s=_acpf.sensitivities(acn, sol.v)
    )


@dataclass(frozen=True, eq=False)
class _Rows:
    """Linearised constraints ``a @ (s_e, s_m, t_e, t_m) <= b``, each with its label."""

    a: FloatArray
    b: FloatArray
    labels: tuple[str, ...]


def _constraints(
    acn: _acpf.AcNetwork,
    lin: _Lin,
    box: _Box,
    lim: GridLimits,
    cfg: EnvelopeConfig,
    pads: _Pads,
    band: tuple[FloatArray, FloatArray],
) -> _Rows:
    """The linearised worst case over the box, as rows over y = (s_e, s_m, t_e, t_m).

    A linear function h(x) = h(x_lin) + g (x - x_lin) reaches over the box at most
    h(x_lin) + g (c - x_lin) + |g| r, with centre c = (e - m) / 2 and half-width
    r = (e + m) / 2; as e and m are linear in y, so is the bound:
    sum_i (|g_i| + g_i) / 2 * e_i + (|g_i| - g_i) / 2 * m_i <= limit - h(x_lin) + g x_lin.
    Voltages use dV/dP. A branch current is projected on the direction injections move it
    (u): along u it is linear in the injections and may reverse (noon export, evening
    import), so both signs are bounded; across u sits the part injections barely move
    (mostly reactive current), kept at its value at the linearisation point.
    """
    pq = acn.pq
    x_lin = lin.x
    blocks_e: list[FloatArray] = []
    blocks_m: list[FloatArray] = []
    rhs: list[FloatArray] = []
    labels: list[str] = []
    sv = lin.s.dvm[pq]
    base = lin.vm[pq] - sv @ x_lin
    pos, neg = np.clip(sv, 0.0, None), -np.clip(sv, None, 0.0)
    # highest voltage: exports where dV/dP > 0, imports where < 0; lowest: the other way
    blocks_e += [pos, neg]
    blocks_m += [neg, pos]
    rhs += [band[0] - cfg.vm_margin_pu - pads.up - base,
            base - band[1] - cfg.vm_margin_pu - pads.lo]
    over, under, overload = _row_labels(acn)
    labels += over + under
    ld_max = (lim.max_loading_pct - cfg.loading_margin_pct - pads.ld) / 100.0
    for i0, di, kk in ((lin.i_f, lin.s.di_f, acn.mon_kf), (lin.i_t, lin.s.di_t, acn.mon_kt)):
        d = di @ box.w
        keep = np.flatnonzero(np.abs(d) > 1e-12)
        if not len(keep):
            continue
        u_conj = np.conj(d[keep]) / np.abs(d[keep])
        g = np.real(u_conj[:, None] * di[keep])
        along = np.real(u_conj * i0[keep])
        across = np.imag(u_conj * i0[keep])
        limit = np.sqrt(np.maximum((ld_max[keep] / kk[keep]) ** 2 - across**2, 0.0))
        spread = np.abs(g)
        shift = g @ x_lin
        for sign in (1.0, -1.0):
            blocks_e.append((spread + sign * g) / 2.0)
            blocks_m.append((spread - sign * g) / 2.0)
            rhs.append(limit - sign * (along - shift))
            labels += [overload[int(j)] for j in keep]
    a_e = np.vstack(blocks_e)
    a_m = np.vstack(blocks_m)
    a = np.column_stack([a_e @ box.f_exp, a_m @ box.f_imp, a_e @ box.w, a_m @ box.w])
    b_vec = np.concatenate(rhs)
    # Scale rows to O(1) coefficients (sensitivities span many decades).
    scale = np.maximum(np.abs(a).max(axis=1, initial=0.0), 1e-12)
    return _Rows(a / scale[:, None], b_vec / scale, tuple(labels))


_LABELS: dict[int, tuple[_acpf.AcNetwork, list[str], list[str], list[str]]] = {}


def _row_labels(acn: _acpf.AcNetwork) -> tuple[list[str], list[str], list[str]]:
    """The constraint rows' labels — overvoltage and undervoltage per PQ bus, overload per
    monitored branch — formatted once per network (every LP round built them again)."""
    hit = _LABELS.get(id(acn))
    if hit is None or hit[0] is not acn:
        bus = [acn.bus_label(int(k)) for k in acn.pq]
        hit = (acn, [f"overvoltage {b}" for b in bus], [f"undervoltage {b}" for b in bus],
               [f"overload {acn.mon_label(j)}" for j in range(len(acn.mon_row))])
        _LABELS[id(acn)] = hit
    return hit[1], hit[2], hit[3]


_FULL = 1.0 - 1e-6
_TOL = 1e-12


def _raise(rows: _Rows, y: FloatArray, d: FloatArray, hi: float) -> tuple[float, int] | None:
    """Largest step lam in [0, hi] keeping rows.a @ (y + lam d) <= rows.b, and the row that
    stops it (-1: hi). None if ``y`` itself breaks a row."""
    slack = rows.b - rows.a @ y
    if np.any(slack < -_TOL):
        return None
    rate = rows.a @ d
    up = np.flatnonzero(rate > 1e-15)
    if not len(up):
        return hi, -1
    ratio = np.maximum(slack[up], 0.0) / rate[up]
    k = int(np.argmin(ratio))
    return (float(ratio[k]), int(up[k])) if ratio[k] < hi else (hi, -1)


_KEEP_OF_COMMON = 0.9
"""After the common share, neither direction keeps less than this fraction of it."""
_BALANCE_WEIGHT = 0.01
"""Tie-break towards equal export and import shares among equally large totals."""


_LP_TOL = math.sqrt(1e-9) * 10
"""The feasibility tolerance ``linprog`` checks HiGHS' solution with (``_check_result``:
``sqrt(tol) * 10`` with its default ``tol`` 1e-9)."""


def _linprog_highs_x(c: FloatArray, a_ub: FloatArray, b_ub: FloatArray,
                     bounds: list[tuple[float, float]]) -> FloatArray | None:
    """``x`` of ``linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")`` when its
    status is 0, else None: the same HiGHS (SciPy's own build, ``scipy.optimize._highspy``),
    the same model and the same options, so the same solution bit for bit (tested against
    ``linprog``). SciPy's wrapper checked every option by building HiGHS' options table
    once per option (five per LP, ~3/4 of a 3-variable LP's time: issue 17); a SciPy
    without that module gets ``linprog`` itself."""
    if _HIGHS is None:
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
        return np.asarray(res.x, dtype=np.float64) if res.status == 0 else None
    h = _HIGHS
    from scipy.sparse import csc_array

    lb = np.array([b[0] for b in bounds], dtype=np.float64)
    ub = np.array([b[1] for b in bounds], dtype=np.float64)
    a = csc_array(np.asarray(a_ub, dtype=np.float64))
    rhs = np.array(b_ub, dtype=np.float64)
    lhs = np.full(len(rhs), -h.kHighsInf)  # linprog's -inf, as its _replace_inf gives it
    for v in (rhs, lb, ub):  # finite here; as linprog passes an infinite one
        inf = np.isinf(v)
        v[inf] = np.sign(v[inf]) * h.kHighsInf
    lp = h.HighsLp()
    lp.num_col_ = len(c)
    lp.num_row_ = len(rhs)
    lp.a_matrix_.num_col_ = len(c)
    lp.a_matrix_.num_row_ = len(rhs)
    lp.a_matrix_.format_ = h.MatrixFormat.kColwise
    lp.col_cost_ = np.asarray(c, dtype=np.float64)
    lp.col_lower_ = lb
    lp.col_upper_ = ub
    lp.row_lower_ = lhs
    lp.row_upper_ = rhs
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    highs = h._Highs()
    opts = h.HighsOptions()
    # the options linprog(method="highs") sets (scipy.optimize._linprog_highs), all others
    # at HiGHS' defaults as there
    opts.presolve = "on"
    opts.highs_debug_level = h.HighsDebugLevel.kHighsDebugLevelNone
    opts.log_to_console = False
    opts.output_flag = False
    opts.simplex_strategy = h.simplex_constants.SimplexStrategy.kSimplexStrategyDual
    if highs.passOptions(opts) == h.HighsStatus.kError \
            or highs.passModel(lp) == h.HighsStatus.kError \
            or highs.run() == h.HighsStatus.kError \
            or highs.getModelStatus() != h.HighsModelStatus.kOptimal:
        return None
    sol = highs.getSolution()
    x = np.array(sol.col_value)
    slack = rhs - sol.row_value
    # linprog's _check_result: an optimal x outside the bounds or constraints by more than
    # its tolerance (or with NaNs) is status 4
    fun = highs.getInfo().objective_function_value
    if np.isnan(x).any() or np.isnan(fun) or np.isnan(slack).any() \
            or not np.all((x >= lb - _LP_TOL) & (x <= ub + _LP_TOL)) or (slack < -_LP_TOL).any():
        return None
    return x


def _load_highs() -> Any:
    try:
        from scipy.optimize._highspy import _core
    except ImportError:  # pragma: no cover - a SciPy that moved it: linprog then
        return None
    return _core


_HIGHS: Any = _load_highs()
"""SciPy's HiGHS module (``scipy.optimize._highspy._core``), or None."""


def _raise_pair(rows: _Rows, y: FloatArray, cols: tuple[int, int], hi: tuple[float, float]) -> bool:
    """Raise ``y[cols]`` (both equal on entry) fairly, in place; False if ``y`` is infeasible.

    First both together to the largest common value tau (max-min fairness); then the largest
    total with neither below ``_KEEP_OF_COMMON * tau`` (a constraint that is nearly all
    export must not freeze imports at tau), ties broken towards balance. The second step is
    a 3-variable LP (HiGHS); if it fails the common value stands.
    """
    c0, c1 = cols
    d = np.zeros(4)
    d[[c0, c1]] = 1.0
    got = _raise(rows, y, d, min(hi) - y[c0])
    if got is None:
        return False
    y += got[0] * d
    tau = float(y[c0])
    if tau >= max(hi) - 1e-12:
        return True
    others = [c for c in range(4) if c not in cols]
    b_rest = rows.b - rows.a[:, others] @ y[others]
    # variables (y_c0, y_c1, z): max y_c0 + y_c1 + w z with z <= y_c0, z <= y_c1
    a_ub = np.vstack([
        np.column_stack([rows.a[:, c0], rows.a[:, c1], np.zeros(len(rows.b))]),
        [[-1.0, 0.0, 1.0], [0.0, -1.0, 1.0]],
    ])
    b_ub = np.r_[b_rest + 1e-12, 0.0, 0.0]
    low = max(0.0, _KEEP_OF_COMMON * tau)
    x = _linprog_highs_x(np.array([-1.0, -1.0, -_BALANCE_WEIGHT]), a_ub, b_ub,
                         [(low, hi[0]), (low, hi[1]), (0.0, max(hi))])
    if x is not None:
        cand = y.copy()
        cand[[c0, c1]] = np.clip(x[:2], low, np.array(hi))
        if float(cand[c0] + cand[c1]) > 2 * tau and np.all(rows.a @ cand <= rows.b + 1e-9):
            y[:] = cand
    return True


def _solve_shares(
    acn: _acpf.AcNetwork,
    lin: _Lin,
    box: _Box,
    lim: GridLimits,
    cfg: EnvelopeConfig,
    pads: _Pads,
    cap: _Shares,
    band: tuple[FloatArray, FloatArray],
) -> _Lp | None:
    """The stages of the module docstring; None if even the empty box breaks the
    linearised limits.

    1. forecast shares (s_e, s_m) <= 1, raised fairly (``_raise_pair``), no headroom;
    2. headroom (t_e, t_m) for the directions whose whole forecast fits: both fairly, or
       the one alone (a ratio test).
    """
    rows = _constraints(acn, lin, box, lim, cfg, pads, band)
    t_caps = (cap.t_e, cap.t_m)
    y = np.zeros(4)
    if not _raise_pair(rows, y, (0, 1), (min(1.0, cap.s_e), min(1.0, cap.s_m))):
        return None
    open_e, open_m = bool(y[0] >= _FULL), bool(y[1] >= _FULL)
    if open_e and open_m:
        _raise_pair(rows, y, (2, 3), t_caps)
    elif open_e or open_m:
        col = 2 if open_e else 3
        d = np.zeros(4)
        d[col] = 1.0
        got = _raise(rows, y, d, t_caps[col - 2])
        if got is not None:
            y += got[0] * d
    shares = _Shares(s_e=float(y[0]), s_m=float(y[1]), t_e=float(y[2]), t_m=float(y[3]))
    slack = rows.b - rows.a @ y
    tight = np.flatnonzero(slack < 1e-7)
    binding = [rows.labels[r] for r in tight]

    def limited_by(s_col: int, t_col: int, cap_label: str) -> str:
        col = s_col if y[s_col] < _FULL else t_col
        if col == t_col and y[t_col] >= t_caps[t_col - 2] - 1e-9:
            return cap_label
        hits = [int(r) for r in tight if rows.a[r, col] > 1e-9]
        return rows.labels[max(hits, key=lambda r: rows.a[r, col])] if hits else ""

    for col, cap_label in ((2, "export cap"), (3, "import cap")):
        if y[col] >= t_caps[col - 2] - 1e-9:
            binding.append(cap_label)
    return _Lp(
        shares,
        tuple(dict.fromkeys(binding)),
        limited_by(0, 2, "export cap"),
        limited_by(1, 3, "import cap"),
    )


def _to_wh(model: GridModel, box: _Box, y: _Shares) -> tuple[IntArray, IntArray]:
    base = ac_network(model).base_mva * WH_PER_MW_SLOT
    # Floor: rounding never widens the box the LP and AC checks certified.
    e = np.floor(np.maximum(box.export_max(y), 0.0) * base + 1e-9).astype(np.int64)
    m = np.floor(np.maximum(box.import_max(y), 0.0) * base + 1e-9).astype(np.int64)
    return e, m


def _vertex_patterns(acn: _acpf.AcNetwork, lin: _Lin, n_cp: int) -> list[npt.NDArray[np.bool_]]:
    """Worst-case vertices (True = export end) of the box for voltage and loading constraints."""
    pats: dict[bytes, npt.NDArray[np.bool_]] = {}
    pats[b"exp"] = np.ones(n_cp, dtype=bool)
    pats[b"imp"] = np.zeros(n_cp, dtype=bool)
    s = lin.s.dvm[acn.pq]
    # Meshed networks and mixed schedules can have mixed-sign sensitivities: take the worst
    # vertex of the voltage rows with the largest spread, and of each monitored branch's
    # current.
    if s.size:
        spread = np.abs(s).sum(axis=1)
        for r in np.argsort(-spread)[:4]:
            for sign in (1.0, -1.0):
                p = sign * s[r] >= 0
                pats.setdefault(p.tobytes(), p)
    if len(acn.mon_row):
        direction = np.real(np.conj(lin.i_f)[:, None] * lin.s.di_f)
        for r in np.argsort(-np.abs(direction).sum(axis=1))[:4]:
            for sign in (1.0, -1.0):
                p = sign * direction[r] >= 0
                pats.setdefault(p.tobytes(), p)
    return list(pats.values())


_Checked = tuple[list[tuple[str, int, float]], tuple[float, float, float], int]
"""``_check_vertices_wh``'s result: (violations, (vmax, vmin, loading), count)."""


def _check_vertices_wh(
    model: GridModel,
    slot: int,
    acn: _acpf.AcNetwork,
    lin: _Lin,
    e_wh: IntArray,
    m_wh: IntArray,
    lim: GridLimits,
    band: tuple[FloatArray, FloatArray],
) -> _Checked:
    """AC power flows at the worst vertices; returns (violations, (vmax, vmin, loading), count)."""
    bad: dict[tuple[str, int], float] = {}
    worst = [-math.inf, math.inf, 0.0]
    pats = _vertex_patterns(acn, lin, len(e_wh))
    # Newton starts at the linearisation's own prediction of each vertex (first order in the
    # injections): ~1 iteration fewer than from the linearisation point (a Jacobian
    # factorisation each), the same fixed point to the solver's tolerance. And it first
    # steps with the linearisation's own factorisation (chord Newton, ``solve_pf_chord``:
    # the box's vertices lie close enough that it contracts fast), full Newton only where
    # that does not converge: a vertex is then a mismatch solve and a triangular solve per
    # step, not a Jacobian and a factorisation (same equations, same tolerance).
    dv = lin.v[:, None] * (1j * lin.s.dva + lin.s.dvm / lin.vm[:, None])
    for pat in pats:
        x = np.where(pat, e_wh, -m_wh)
        flow = solve_fast(model, slot, x, v0=lin.v + dv @ (wh_to_pu(model, x) - lin.x),
                          chord=lin.s.lu)
        if not flow.converged:
            flow = solve_fast(model, slot, x, v0=lin.v)
        if not flow.converged:
            flow = solve_fast(model, slot, x)
        if not flow.converged:
            # Collapse at the import vertex: treat as undervoltage at every PQ bus.
            for k in range(len(acn.pq)):
                bad[("lo", k)] = max(bad.get(("lo", k), 0.0), 0.05)
            worst[1] = 0.0
            continue
        worst[0] = max(worst[0], float(flow.vm_pu.max()))
        worst[1] = min(worst[1], float(flow.vm_pu.min()))
        worst[2] = max(worst[2], float(flow.loading_pct.max(initial=0.0)))
        over = flow.vm_pu[acn.pq] - band[0]
        under = band[1] - flow.vm_pu[acn.pq]
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
