"""Fast AC network engine on pandapower's own matrices.

pandapower builds the admittance matrices (``Ybus``, ``Yf``, ``Yt``) and bus/branch lookups
once; envelopes, curtailment and state estimation then need hundreds of power flows and
Jacobians per slot, which this module does directly with scipy.sparse (a polar
Newton-Raphson as in MATPOWER's ``newtonpf``; Zimmerman et al., IEEE Trans. Power Syst. 2011).
Results agree with ``pandapower.runpp`` to solver tolerance (tests/grid/test_powerflow.py);
the public ``verify_schedule`` still runs pandapower itself.

Per-unit on ``base_mva``; complex bus injections in generator convention.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridledger.errors import GridError

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.int64]

# pandapower/pypower column indices (pandapower.pypower.idx_bus / idx_brch / idx_gen).
_BUS_TYPE, _PD, _QD, _VM, _VA, _BASE_KV = 1, 2, 3, 7, 8, 9
_REF, _PVB = 3, 2
_GEN_BUS, _PG, _QG, _GEN_STATUS = 0, 1, 2, 7


@dataclass(frozen=True, eq=False)
class _JacPattern:
    """Precomputed sparsity of the Newton Jacobian so each evaluation is one vector op."""

    row: IntArray
    """Ybus pattern (with the diagonal), as bus pairs (i, k)."""
    col: IntArray
    diag: npt.NDArray[np.bool_]
    src: IntArray
    """For each Jacobian entry (CSC order): index into the pattern ..."""
    part: npt.NDArray[np.int8]
    """... and which block: 0 Re dS/dVa, 1 Re dS/dVm, 2 Im dS/dVa, 3 Im dS/dVm."""
    indices: npt.NDArray[np.intc]
    indptr: npt.NDArray[np.intc]
    size: int
    y: ComplexArray
    """Ybus at (row, col) (a sparse fancy index was most of each evaluation)."""


def _jac_pattern(ybus: sp.csr_matrix, pv: IntArray, pq: IntArray) -> _JacPattern:
    n = ybus.shape[0]
    pat = sp.coo_matrix((ybus + sp.identity(n, format="csr")) != 0)
    row, col = pat.row.astype(np.int64), pat.col.astype(np.int64)
    pvpq = np.r_[pv, pq].astype(np.int64)
    npvpq = len(pvpq)
    pos_a = np.full(n, -1, dtype=np.int64)
    pos_a[pvpq] = np.arange(npvpq)
    pos_m = np.full(n, -1, dtype=np.int64)
    pos_m[pq] = np.arange(len(pq)) + npvpq
    rows, cols, srcs, parts = [], [], [], []
    for part, (rpos, cpos) in enumerate(((pos_a, pos_a), (pos_a, pos_m), (pos_m, pos_a), (pos_m, pos_m))):
        ok = (rpos[row] >= 0) & (cpos[col] >= 0)
        idx = np.flatnonzero(ok)
        rows.append(rpos[row[idx]])
        cols.append(cpos[col[idx]])
        srcs.append(idx)
        parts.append(np.full(len(idx), part, dtype=np.int8))
    r, c = np.concatenate(rows), np.concatenate(cols)
    src, prt = np.concatenate(srcs), np.concatenate(parts)
    size = npvpq + len(pq)
    order = np.lexsort((r, c))  # CSC: by column, then row
    r, c, src, prt = r[order], c[order], src[order], prt[order]
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.add.at(indptr, c + 1, 1)
    return _JacPattern(
        row=row,
        col=col,
        diag=row == col,
        src=src,
        part=prt,
        # SuperLU's own index type: the per-call CSC construction then neither scans the
        # index arrays nor converts them (the same matrix, ~half the construction cost)
        indices=r.astype(np.intc),
        indptr=np.cumsum(indptr).astype(np.intc),
        size=size,
        y=np.asarray(ybus[row, col], dtype=np.complex128).ravel(),
    )


@dataclass(frozen=True, eq=False)
class AcNetwork:
    """Admittances, bus types, fixed injections and branch limits of one network (ppci order)."""

    base_mva: float
    ybus: sp.csr_matrix
    yf: sp.csr_matrix
    yt: sp.csr_matrix
    f_bus: IntArray
    t_bus: IntArray
    ref: IntArray
    pv: IntArray
    pq: IntArray
    v_start: ComplexArray
    """Flat start with the ref/PV voltage set-points in place."""
    s_fixed: ComplexArray
    """Injections of elements that are not connection points (PV-bus generators), p.u."""
    cp_bus: IntArray
    """Internal bus of each connection point, in ``GridModel.cps`` order."""
    pd_bus: IntArray
    """pandapower bus index of each internal bus."""
    base_kv: FloatArray
    mon_row: IntArray
    """Internal branch row of each monitored line/transformer."""
    mon_kind: tuple[str, ...]
    mon_element: IntArray
    mon_kf: FloatArray
    mon_kt: FloatArray
    """Loading in percent = 100 * max(|I_from| * kf, |I_to| * kt) (pandapower's definition)."""
    jac: _JacPattern | None = None

    @property
    def n_bus(self) -> int:
        return int(self.ybus.shape[0])

    def mon_label(self, j: int) -> str:
        return f"{self.mon_kind[j]} {int(self.mon_element[j])}"

    def bus_label(self, k: int) -> str:
        """``"bus 12"`` (pandapower index), or ``"internal bus 7"`` for pandapower's aux buses."""
        pd = int(self.pd_bus[k])
        return f"bus {pd}" if pd >= 0 else f"internal bus {k}"

    def bus_tag(self, k: int) -> str:
        """Label stem for measurements at internal bus ``k``: ``"bus-12"`` or ``"ibus-7"``."""
        pd = int(self.pd_bus[k])
        return f"bus-{pd}" if pd >= 0 else f"ibus-{k}"


def pandapower_init_options(net: Any) -> dict[str, Any]:
    """pandapower's ``init="auto"`` start voltage, computed here: pandapower derives it with
    six ``DataFrame.query`` calls (~20 ms each, pandas' expression engine) on every run —
    a third of a small network's ``runpp``. Same value, same arithmetic order, so the same
    iterations and results; {} (pandapower decides) when no slack is in service."""
    vm = 0.0
    n = 0
    for table, col, slack_only in (("ext_grid", "vm_pu", False), ("gen", "vm_pu", False),
                                   ("vsc", "control_value_ac", True)):
        df = net.get(table)
        if df is None or len(df) == 0:
            continue
        mask = df["in_service"].to_numpy(dtype=bool)
        if slack_only:
            mask &= (df["control_mode_ac"] == "slack").to_numpy()
        vm = vm + df[col].to_numpy()[mask].sum()
        n += int(mask.sum())
    return {"init_vm_pu": vm / n} if n else {}


def build_ac_network(net: Any, cp_buses: list[int]) -> AcNetwork:
    """Run one pandapower power flow on ``net`` (all cp injections zero) and extract its matrices."""
    import pandapower as pp

    work = _copy_net(net)
    work.sgen["p_mw"] = 0.0
    work.sgen["q_mvar"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pp.runpp(work, numba=False, calculate_voltage_angles=True, **pandapower_init_options(work))
        except Exception as exc:
            raise GridError(f"base power flow of the network does not converge: {exc}") from None
    ppc = work._ppc
    ppci = ppc["internal"]
    base_mva = float(ppci["baseMVA"])
    ybus = sp.csr_matrix(ppci["Ybus"])
    yf = sp.csr_matrix(ppci["Yf"])
    yt = sp.csr_matrix(ppci["Yt"])
    bus = np.real(ppci["bus"])
    branch = ppci["branch"]
    n = bus.shape[0]
    lookup = np.asarray(work._pd2ppc_lookups["bus"], dtype=np.int64)
    pd_bus = np.full(n, -1, dtype=np.int64)
    for pd_idx in work.bus.index[::-1]:
        k = lookup[pd_idx] if pd_idx < len(lookup) else -1
        if 0 <= k < n:
            pd_bus[k] = int(pd_idx)
    cp_internal = np.array([lookup[b] for b in cp_buses], dtype=np.int64)
    if (cp_internal < 0).any() or (cp_internal >= n).any():
        lost = [b for b, k in zip(cp_buses, cp_internal, strict=True) if not 0 <= k < n]
        raise GridError(f"connection-point buses {lost[:5]} have no bus in pandapower's model")

    types = bus[:, _BUS_TYPE].astype(int)
    ref = np.flatnonzero(types == _REF).astype(np.int64)
    pv = np.flatnonzero(types == _PVB).astype(np.int64)
    pq = np.flatnonzero((types != _REF) & (types != _PVB)).astype(np.int64)
    if len(ref) == 0:
        raise GridError("network has no reference (slack) bus in service")
    # Warm start at the base solution: ref/PV set-points are exact there, and every bus already
    # carries its transformer phase shift (e.g. Dyn5's -150 deg), so Newton starts next door.
    v_start = (bus[:, _VM] * np.exp(1j * np.deg2rad(bus[:, _VA]))).astype(np.complex128)

    gen = np.real(ppci["gen"])
    s_fixed = -(bus[:, _PD] + 1j * bus[:, _QD]) / base_mva
    on = gen[:, _GEN_STATUS] > 0
    np.add.at(s_fixed, gen[on, _GEN_BUS].astype(int), (gen[on, _PG] + 1j * gen[on, _QG]) / base_mva)

    f_bus = np.real(branch[:, 0]).astype(np.int64)
    t_bus = np.real(branch[:, 1]).astype(np.int64)
    base_kv = bus[:, _BASE_KV].astype(np.float64)

    # Monitored branches: ppc row -> ppci row via the in-service mask pandapower keeps.
    branch_is = np.asarray(ppci["branch_is"], dtype=bool)
    ppci_row = np.cumsum(branch_is) - 1
    rows: list[int] = []
    kinds: list[str] = []
    elems: list[int] = []
    kf: list[float] = []
    kt: list[float] = []
    lookups = work._pd2ppc_lookups["branch"]
    sq3 = math.sqrt(3.0)
    if "line" in lookups:
        f0, _ = lookups["line"]
        for pos, (idx, row) in enumerate(work.line.iterrows()):
            r = f0 + pos
            if not branch_is[r]:
                continue
            i_max = float(row.max_i_ka) * float(row.get("df", 1.0)) * float(row.get("parallel", 1))
            if not i_max > 0:
                continue
            b = ppci_row[r]
            rows.append(int(b))
            kinds.append("line")
            elems.append(int(idx))
            kf.append(base_mva / (sq3 * base_kv[f_bus[b]]) / i_max)
            kt.append(base_mva / (sq3 * base_kv[t_bus[b]]) / i_max)
    if "trafo" in lookups:
        f0, _ = lookups["trafo"]
        for pos, (idx, row) in enumerate(work.trafo.iterrows()):
            r = f0 + pos
            if not branch_is[r]:
                continue
            denom = float(row.sn_mva) * float(row.get("parallel", 1)) * float(row.get("df", 1.0))
            b = ppci_row[r]
            rows.append(int(b))
            kinds.append("trafo")
            elems.append(int(idx))
            kf.append(base_mva * float(row.vn_hv_kv) / (base_kv[f_bus[b]] * denom))
            kt.append(base_mva * float(row.vn_lv_kv) / (base_kv[t_bus[b]] * denom))
    return AcNetwork(
        base_mva=base_mva,
        ybus=ybus,
        yf=yf,
        yt=yt,
        f_bus=f_bus,
        t_bus=t_bus,
        ref=ref,
        pv=pv,
        pq=pq,
        v_start=v_start,
        s_fixed=s_fixed,
        cp_bus=cp_internal,
        pd_bus=pd_bus,
        base_kv=base_kv,
        mon_row=np.array(rows, dtype=np.int64),
        mon_kind=tuple(kinds),
        mon_element=np.array(elems, dtype=np.int64),
        mon_kf=np.array(kf),
        mon_kt=np.array(kt),
        jac=_jac_pattern(ybus, pv, pq),
    )


def _copy_net(net: Any) -> Any:
    import copy

    return copy.deepcopy(net)


def bus_injection(acn: AcNetwork, p_cp_pu: FloatArray, q_cp_pu: FloatArray) -> ComplexArray:
    """Complex bus injections (p.u.) for cp active/reactive injections."""
    s = acn.s_fixed.copy()
    np.add.at(s, acn.cp_bus, p_cp_pu + 1j * q_cp_pu)
    return s


def ds_dv(ybus: sp.csr_matrix, v: ComplexArray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Partial derivatives of bus injections w.r.t. voltage angle and magnitude (MATPOWER dSbus_dV)."""
    ibus = ybus @ v
    diag_v = sp.diags(v)
    diag_i = sp.diags(ibus)
    diag_vn = sp.diags(v / np.abs(v))
    ds_dvm = diag_v @ (ybus @ diag_vn).conj() + diag_i.conj() @ diag_vn
    ds_dva = 1j * diag_v @ (diag_i - ybus @ diag_v).conj()
    return sp.csr_matrix(ds_dva), sp.csr_matrix(ds_dvm)


def _jacobian(acn: AcNetwork, v: ComplexArray, pvpq: IntArray) -> sp.csc_matrix:
    """Power-flow Jacobian over [angles(pvpq), magnitudes(pq)] (sparse, MATPOWER dSbus_dV).

    Sparse LU (SuperLU) rather than dense LAPACK: on a shared two-core machine multithreaded
    BLAS contends with other processes and a 256x256 dense solve can take 50 ms instead of 0.5.
    """
    pat = acn.jac
    assert pat is not None
    y = pat.y
    ibus = acn.ybus @ v
    vn = v / np.abs(v)
    i, k = pat.row, pat.col
    # off-diagonal parts, then the diagonal corrections (i == k)
    ds_dva = -1j * v[i] * np.conj(y * v[k])
    ds_dvm = v[i] * np.conj(y * vn[k])
    d = pat.diag
    ds_dva[d] += 1j * v[i[d]] * np.conj(ibus[i[d]])
    ds_dvm[d] += np.conj(ibus[i[d]]) * vn[i[d]]
    vals = np.stack([ds_dva.real, ds_dvm.real, ds_dva.imag, ds_dvm.imag])
    data = vals[pat.part, pat.src]
    return sp.csc_matrix((data, pat.indices, pat.indptr), shape=(pat.size, pat.size))


SOLVE_BLOCK = 16
"""Right-hand sides per SuperLU solve call in ``solve_columns``."""


def solve_columns(lu: Any, rhs: FloatArray) -> FloatArray:
    """``lu.solve`` of every column of ``rhs`` (n x k), SOLVE_BLOCK columns per call.

    One call per column pays the call's overhead k times (the state estimator's residual
    covariance was ~70 % of an estimate); SuperLU's multi-RHS solve of 64 or more columns
    is slower per column again (a 118-cp LV feeder's 631 rows, loaded: 64 columns 0.17 s,
    16 or 32 columns 0.02-0.03 s, one at a time 0.05-0.09 s; with or without BLAS
    threads). Same per-column results.
    """
    out = np.empty((rhs.shape[0], rhs.shape[1]), dtype=np.float64)
    for j in range(0, rhs.shape[1], SOLVE_BLOCK):
        out[:, j:j + SOLVE_BLOCK] = lu.solve(np.asfortranarray(rhs[:, j:j + SOLVE_BLOCK]))
    return out


def _solve(jac: sp.csc_matrix, rhs: FloatArray) -> FloatArray:
    """Solve J x = rhs (vector or matrix of right-hand sides, ``solve_columns``) with SuperLU."""
    lu = spla.splu(jac)
    if rhs.ndim == 1:
        return np.asarray(lu.solve(rhs), dtype=np.float64)
    return solve_columns(lu, rhs)


@dataclass(frozen=True)
class AcSolution:
    v: ComplexArray
    converged: bool
    iterations: int


def solve_pf(
    acn: AcNetwork,
    s_bus: ComplexArray,
    v0: ComplexArray | None = None,
    tol_pu: float = 1e-10,
    max_iter: int = 25,
) -> AcSolution:
    """Newton-Raphson power flow; ``s_bus`` are the specified injections (p.u.)."""
    v = (acn.v_start if v0 is None else v0).copy()
    pvpq = np.concatenate((acn.pv, acn.pq)).astype(np.int64)
    pq = acn.pq
    npvpq = len(pvpq)
    for it in range(max_iter + 1):
        mis = v * np.conj(acn.ybus @ v) - s_bus
        f = np.concatenate((mis[pvpq].real, mis[pq].imag))
        if not np.all(np.isfinite(f)):
            return AcSolution(v, False, it)
        if np.max(np.abs(f), initial=0.0) < tol_pu:
            return AcSolution(v, True, it)
        if it == max_iter:
            break
        jac = _jacobian(acn, v, pvpq)
        try:
            dx = _solve(jac, -f)
        except (RuntimeError, np.linalg.LinAlgError):
            return AcSolution(v, False, it)
        if not np.all(np.isfinite(dx)):
            return AcSolution(v, False, it)
        va = np.angle(v)
        vm = np.abs(v)
        va[pvpq] += dx[:npvpq]
        vm[pq] += dx[npvpq:]
        if np.any(vm <= 0.0):
            return AcSolution(v, False, it)
        v = vm * np.exp(1j * va)
    return AcSolution(v, False, max_iter)


CHORD_MAX_ITER = 12
"""Steps ``solve_pf_chord`` takes before it gives up (and the caller runs full Newton)."""
CHORD_RATE = 0.5
"""``solve_pf_chord`` gives up as soon as a step shrinks the largest mismatch by less than
this factor: the fixed Jacobian is too far from the solution's for the chord iteration to
pay (each step is ~1/6 of a Newton step's cost, so a slower rate would not)."""


def solve_pf_chord(
    acn: AcNetwork,
    s_bus: ComplexArray,
    lu: Any,
    v0: ComplexArray,
    tol_pu: float = 1e-10,
    max_iter: int = CHORD_MAX_ITER,
) -> AcSolution:
    """Chord ("dishonest") Newton power flow: every step solves with one factorisation
    ``lu`` of the Jacobian at a nearby operating point (``sensitivities(...).lu``) instead
    of factorising the Jacobian at each iterate (Tinney & Hart, "Power flow solution by
    Newton's method", IEEE Trans. PAS-86(11), 1967, on reusing factors; the chord method:
    Ortega & Rheinboldt, *Iterative Solution of Nonlinear Equations*, 1970, 7.1).

    The same equations and the same stopping test as ``solve_pf`` (largest mismatch below
    ``tol_pu``), so a converged result is a power-flow solution to the same tolerance; only
    the path differs (linear convergence rather than quadratic). Not converged — the
    caller then runs ``solve_pf`` — after ``max_iter`` steps, as soon as a step shrinks the
    largest mismatch by less than ``CHORD_RATE``, or on a non-finite value.
    """
    v = v0.copy()
    pvpq = np.concatenate((acn.pv, acn.pq)).astype(np.int64)
    pq = acn.pq
    npvpq = len(pvpq)
    before = math.inf
    for it in range(max_iter + 1):
        mis = v * np.conj(acn.ybus @ v) - s_bus
        f = np.concatenate((mis[pvpq].real, mis[pq].imag))
        worst = float(np.max(np.abs(f), initial=0.0))
        if not math.isfinite(worst):
            return AcSolution(v, False, it)
        if worst < tol_pu:
            return AcSolution(v, True, it)
        if it == max_iter or worst > CHORD_RATE * before:
            break
        before = worst
        dx = np.asarray(lu.solve(-f), dtype=np.float64)
        if not np.all(np.isfinite(dx)):
            break
        va = np.angle(v)
        vm = np.abs(v)
        va[pvpq] += dx[:npvpq]
        vm[pq] += dx[npvpq:]
        if np.any(vm <= 0.0):
            break
        v = vm * np.exp(1j * va)
    return AcSolution(v, False, it)


def branch_currents(acn: AcNetwork, v: ComplexArray) -> tuple[ComplexArray, ComplexArray]:
    """From- and to-end currents (p.u.) of the monitored branches."""
    i_f = (acn.yf @ v)[acn.mon_row]
    i_t = (acn.yt @ v)[acn.mon_row]
    return i_f, i_t


def loading_pct(acn: AcNetwork, v: ComplexArray) -> FloatArray:
    """Loading in percent of each monitored branch (max of both ends)."""
    i_f, i_t = branch_currents(acn, v)
    out: FloatArray = 100.0 * np.maximum(np.abs(i_f) * acn.mon_kf, np.abs(i_t) * acn.mon_kt)
    return out


@dataclass(frozen=True)
class Sensitivities:
    """Linear response to 1 p.u. of extra active injection at each connection point."""

    dvm: FloatArray
    """(n_bus, n_cp): d|V| / dP_cp."""
    dva: FloatArray
    """(n_bus, n_cp): d angle / dP_cp (rad)."""
    di_f: ComplexArray
    """(n_mon, n_cp): d I_from / dP_cp of monitored branches."""
    di_t: ComplexArray
    lu: Any = field(default=None, repr=False, compare=False)
    """SuperLU factors of the Jacobian at the linearisation point (``solve_pf_chord`` reuses
    them); None for a network without PQ or PV buses."""


_MON_ROWS: dict[int, tuple[AcNetwork, sp.csr_matrix, sp.csr_matrix]] = {}


def _monitored_rows(acn: AcNetwork) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``yf`` and ``yt``'s rows of the monitored branches (a sparse fancy index, made once
    per network instead of at every linearisation: the same matrices)."""
    hit = _MON_ROWS.get(id(acn))
    if hit is None or hit[0] is not acn:
        hit = (acn, acn.yf[acn.mon_row], acn.yt[acn.mon_row])
        _MON_ROWS[id(acn)] = hit
    return hit[1], hit[2]


def sensitivities(acn: AcNetwork, v: ComplexArray) -> Sensitivities:
    """Voltage and branch-current sensitivities from the power-flow Jacobian at ``v``.

    Solves J [dθ; d|V|] = [e_P(cp); 0] for all connection points with one LU factorisation.
    """
    pvpq = np.concatenate((acn.pv, acn.pq)).astype(np.int64)
    pq = acn.pq
    n, npvpq = acn.n_bus, len(pvpq)
    ncp = len(acn.cp_bus)
    jac = _jacobian(acn, v, pvpq)
    pos = np.full(n, -1, dtype=np.int64)
    pos[pvpq] = np.arange(npvpq)
    rhs = np.zeros((jac.shape[0], ncp))
    for j, b in enumerate(acn.cp_bus):
        if pos[b] >= 0:
            rhs[pos[b], j] = 1.0
    lu = spla.splu(jac) if jac.shape[0] else None
    sol = solve_columns(lu, rhs) if lu is not None else rhs
    dva = np.zeros((n, ncp))
    dvm = np.zeros((n, ncp))
    dva[pvpq] = sol[:npvpq]
    dvm[pq] = sol[npvpq:]
    vm = np.abs(v)
    dv = v[:, None] * (1j * dva + dvm / vm[:, None])
    yf_mon, yt_mon = _monitored_rows(acn)
    di_f = yf_mon @ dv
    di_t = yt_mon @ dv
    return Sensitivities(dvm=dvm, dva=dva, di_f=np.asarray(di_f), di_t=np.asarray(di_t), lu=lu)
