"""AC weighted-least-squares state estimation with bad-data statistics.

Textbook WLS (Abur & Gómez Expósito, *Power System State Estimation*, 2004, ch. 2 and 5):
state x = (voltage angles except the reference, all voltage magnitudes); Gauss-Newton on
J(x) = sum ((z - h(x)) / sigma)^2 with gain G = H^T W H. After convergence:

* chi-square test: J(x^) ~ chi2(m - n) without bad data (ch. 5.4);
* normalised residuals r_N,i = r_i / sqrt(Omega_ii) with Omega = R - H G^-1 H^T; the largest
  normalised residual identifies a single bad measurement (ch. 5.7).

Own implementation rather than ``pandapower.estimation`` because detection needs H, G^-1 and
Omega, and because it is several times faster (benchmarks/grid.md); tests check that both
estimators agree on the same measurements.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import stats

from gridledger.errors import GridError
from gridledger.grid import _acpf
from gridledger.grid._acpf import AcNetwork

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.int64]

# Measurement kinds (rows of the "all quantities" vector, see _all_values).
P_INJ, Q_INJ, VM, P_FROM, Q_FROM, P_TO, Q_TO = range(7)


@dataclass(frozen=True, eq=False)
class MeasurementModel:
    """Which quantity each measurement row observes: ``sign * quantity[kind][element]``."""

    kind: IntArray
    element: IntArray
    """Internal bus index for P_INJ/Q_INJ/VM, internal branch row for flows."""
    sign: FloatArray
    labels: tuple[str, ...]

    @property
    def m(self) -> int:
        return len(self.kind)

    def subset(self, rows: npt.ArrayLike) -> MeasurementModel:
        idx = np.asarray(rows, dtype=np.int64)
        return MeasurementModel(
            kind=self.kind[idx],
            element=self.element[idx],
            sign=self.sign[idx],
            labels=tuple(self.labels[i] for i in idx),
        )


class _Entries:
    """One admittance matrix's nonzeros in row order, each row followed by its diagonal
    term's slot (``end[row]``'s column): ``cols``, the source entry ``src`` (its index into
    ``y.data``, or -1 for the diagonal term) and ``ptr`` (row ``r``'s run is
    ``ptr[r]:ptr[r+1]``)."""

    def __init__(self, y: sp.csr_matrix, end: IntArray) -> None:
        y = sp.csr_matrix(y)
        y.sort_indices()
        rows = y.shape[0]
        counts = np.diff(y.indptr) + 1
        self.ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
        total = int(self.ptr[-1])
        self.cols = np.empty(total, dtype=np.int64)
        self.src = np.full(total, -1, dtype=np.int64)
        self.row = np.repeat(np.arange(rows, dtype=np.int64), counts)
        own = np.zeros(total, dtype=bool)
        own[self.ptr[1:] - 1] = True  # each row's last slot: its diagonal term
        self.cols[~own] = y.indices
        self.src[~own] = np.arange(y.nnz)
        self.cols[own] = end
        self.own = own
        self.y = y
        self.end = end


class _Structure:
    """Network matrices the measurement functions need (built once per network)."""

    def __init__(self, acn: AcNetwork) -> None:
        n = acn.n_bus
        nbr = acn.yf.shape[0]
        self.n = n
        self.nbr = nbr
        self.ref = int(acn.ref[0])
        self.non_ref = np.array([k for k in range(n) if k != self.ref], dtype=np.int64)
        self.n_state = len(self.non_ref) + n
        self.offsets = np.cumsum([0, n, n, n, nbr, nbr, nbr, nbr])
        # H's nonzeros, fixed by the network: for each admittance matrix (Ybus for
        # injections, Yf/Yt for flows) its entries in row order, plus the one diagonal term
        # per row that MATPOWER's formulas add (bus k for injections, the branch's own end
        # for flows). ``jacobian`` fills their values and gathers the measured rows' runs.
        self.parts = tuple(_Entries(y, end) for y, end in (
            (acn.ybus, np.arange(n, dtype=np.int64)), (acn.yf, acn.f_bus), (acn.yt, acn.t_bus)))
        col_va = np.full(n, -1, dtype=np.int64)
        col_va[self.non_ref] = np.arange(len(self.non_ref))
        self.col_va = col_va
        """Column of each bus's angle in H (-1: the reference's angle is not a state)."""


_STRUCT: dict[int, tuple[AcNetwork, _Structure]] = {}


def _structure(acn: AcNetwork) -> _Structure:
    hit = _STRUCT.get(id(acn))
    if hit is None or hit[0] is not acn:
        hit = (acn, _Structure(acn))
        _STRUCT[id(acn)] = hit
    return hit[1]


def state_to_voltage(acn: AcNetwork, x: FloatArray) -> ComplexArray:
    """State vector (angles except reference, magnitudes) -> complex voltages."""
    st = _structure(acn)
    va = np.full(st.n, np.angle(acn.v_start[st.ref]))
    va[st.non_ref] = x[: len(st.non_ref)]
    vm = x[len(st.non_ref) :]
    out: ComplexArray = np.asarray(vm * np.exp(1j * va), dtype=np.complex128)
    return out


def voltage_to_state(acn: AcNetwork, v: ComplexArray) -> FloatArray:
    """Complex voltages -> state vector."""
    st = _structure(acn)
    out: FloatArray = np.concatenate((np.angle(v)[st.non_ref], np.abs(v))).astype(np.float64, copy=False)
    return out


def _all_values(acn: AcNetwork, v: ComplexArray) -> FloatArray:
    s = v * np.conj(acn.ybus @ v)
    sf = v[acn.f_bus] * np.conj(acn.yf @ v)
    stt = v[acn.t_bus] * np.conj(acn.yt @ v)
    # np.concatenate, not np.r_ (the same array; r_'s parsing was ~1/8 of a detection)
    out: FloatArray = np.concatenate(
        (s.real, s.imag, np.abs(v), sf.real, sf.imag, stt.real, stt.imag)
    ).astype(np.float64, copy=False)
    return out


def measure(acn: AcNetwork, mm: MeasurementModel, v: ComplexArray) -> FloatArray:
    """h(V): the value every measurement row would read at voltages ``v`` (p.u.)."""
    st = _structure(acn)
    out: FloatArray = mm.sign * _all_values(acn, v)[st.offsets[mm.kind] + mm.element]
    return out


def jacobian(acn: AcNetwork, mm: MeasurementModel, v: ComplexArray) -> sp.csr_matrix:
    """H = dh/dx (m x n_state, sparse), MATPOWER's dSbus_dV / dSbr_dV formulas, entry by
    entry over the network's fixed sparsity (``_Structure.parts``; no sparse products: the
    estimator calls this every Gauss-Newton step, ~30 ms a call as sparse algebra on a
    39-cp feeder). For a row of Y (bus or branch end ``e``) and its entry ``(r, k)``:

    * dS/dVa[r, k] = j (conj(I_r) V_k [k = e] - V_e conj(Y_rk V_k))
    * dS/dVm[r, k] = V_e conj(Y_rk vn_k) + conj(I_r) vn_k [k = e]   (vn = V / |V|)

    P rows take the real part, Q rows the imaginary one; VM rows are 1 at the bus's
    magnitude."""
    st = _structure(acn)
    plan = _jacobian_plan(acn, mm)
    vn = v / np.abs(v)
    out_vals: list[FloatArray] = []
    for b in plan.blocks:
        part, k = b.part, b.k
        # current of each measured row: the whole product, then the rows (a row's sum runs
        # over its entries in the same order as in a product of the selected rows, without
        # the sparse fancy index that was a third of this function)
        i_r = (part.y @ v)[b.e]
        i_take = np.repeat(i_r, b.counts)
        ve = v[b.end]
        y_rk = b.y_rk
        d_va = 1j * (np.where(b.own, np.conj(i_take) * v[k], 0.0) - ve * np.conj(y_rk * v[k]))
        d_vm = ve * np.conj(y_rk * vn[k]) + np.where(b.own, np.conj(i_take) * vn[k], 0.0)
        va = np.where(b.is_q, d_va.imag, d_va.real)
        vm = np.where(b.is_q, d_vm.imag, d_vm.real)
        out_vals += [va[b.keep], vm]
    out_vals.append(np.ones(plan.n_vm))
    vals = np.concatenate(out_vals) * plan.sign
    if plan.order is None:  # SciPy's own assembly (a pattern the plan does not cover)
        h = sp.csr_matrix((vals, (plan.rows, plan.cols)), shape=(mm.m, st.n_state))
        h.sum_duplicates()
        return h
    data = np.add.reduceat(vals[plan.order], plan.starts) if len(vals) else vals
    return sp.csr_matrix((data, plan.indices, plan.indptr), shape=(mm.m, st.n_state))


@dataclass(frozen=True, eq=False)
class _JacBlock:
    """One admittance matrix's measured rows' entries (``jacobian``), fixed by the rows."""

    part: _Entries
    e: IntArray
    counts: IntArray
    k: IntArray
    end: IntArray
    own: npt.NDArray[np.bool_]
    y_rk: ComplexArray
    is_q: npt.NDArray[np.bool_]
    keep: npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class _JacPlan:
    """What ``jacobian`` needs of a measurement model besides the voltages: each block's
    entries, and how its COO entries become the canonical CSR SciPy's constructor and
    ``sum_duplicates`` give (``order``: the entries sorted by row and column, stably;
    ``starts``: where each (row, column) begins — at most two entries share one, the
    diagonal term and Y's own diagonal, so their sum is the same in either order)."""

    acn: AcNetwork
    mm: MeasurementModel
    blocks: tuple[_JacBlock, ...]
    n_vm: int
    sign: FloatArray
    rows: IntArray
    cols: IntArray
    order: IntArray | None
    starts: IntArray
    indices: IntArray
    indptr: IntArray


_PLANS: list[_JacPlan] = []
_PLANS_KEPT = 8
"""Plans kept (most recent first): an estimate's Gauss-Newton steps share one measurement
model, so a few cover the parts a detection works through in turn."""


def _jacobian_plan(acn: AcNetwork, mm: MeasurementModel) -> _JacPlan:
    for j, p in enumerate(_PLANS):
        if p.mm is mm and p.acn is acn:
            if j:
                _PLANS.insert(0, _PLANS.pop(j))
            return p
    plan = _build_jacobian_plan(acn, mm)
    _PLANS.insert(0, plan)
    del _PLANS[_PLANS_KEPT:]
    return plan


def _build_jacobian_plan(acn: AcNetwork, mm: MeasurementModel) -> _JacPlan:
    st = _structure(acn)
    kinds, elems = mm.kind, mm.element
    out_rows: list[IntArray] = []
    out_cols: list[IntArray] = []
    blocks: list[_JacBlock] = []
    n_va = len(st.non_ref)
    for part, (p_kind, q_kind) in zip(st.parts, ((P_INJ, Q_INJ), (P_FROM, Q_FROM), (P_TO, Q_TO)),
                                      strict=True):
        sel = np.flatnonzero((kinds == p_kind) | (kinds == q_kind))
        if not len(sel):
            continue
        e = elems[sel]
        starts, stops = part.ptr[e], part.ptr[e + 1]
        counts = stops - starts
        take = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
        meas_row = np.repeat(sel, counts)
        r = part.row[take]
        k = part.cols[take]
        src = part.src[take]
        own = part.own[take]
        cva = st.col_va[k]
        keep = cva >= 0
        blocks.append(_JacBlock(
            part=part, e=e, counts=counts, k=k, end=part.end[r], own=own,
            y_rk=np.where(own, 0.0, part.y.data[np.maximum(src, 0)]),
            is_q=kinds[meas_row] == q_kind, keep=keep))
        out_rows += [meas_row[keep], meas_row]
        out_cols += [cva[keep], n_va + k]
    vm_rows = np.flatnonzero(kinds == VM)
    out_rows.append(vm_rows)
    out_cols.append(n_va + elems[vm_rows])
    rows = np.concatenate(out_rows)
    cols = np.concatenate(out_cols)
    order = np.lexsort((cols, rows))
    r_s, c_s = rows[order], cols[order]
    new = np.r_[True, (r_s[1:] != r_s[:-1]) | (c_s[1:] != c_s[:-1])] if len(order) else \
        np.zeros(0, dtype=bool)
    starts_at = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts_at, len(order)])
    indptr = np.zeros(mm.m + 1, dtype=np.int64)
    np.cumsum(np.bincount(r_s[starts_at], minlength=mm.m), out=indptr[1:])
    return _JacPlan(
        acn=acn, mm=mm, blocks=tuple(blocks), n_vm=len(vm_rows), sign=mm.sign[rows],
        rows=rows, cols=cols,
        # three or more entries at one place would be summed in SciPy's order: not planned
        order=order if not len(sizes) or int(sizes.max()) <= 2 else None,
        starts=starts_at, indices=c_s[starts_at], indptr=indptr)


@dataclass(frozen=True, eq=False)
class WlsResult:
    """A converged WLS estimate with its bad-data statistics."""

    v: ComplexArray
    iterations: int
    residual: FloatArray
    """z - h(x^) per row (p.u.)."""
    sigma: FloatArray
    chi2: float
    dof: int
    omega: FloatArray
    """Residual variances Omega_ii (p.u.^2); ~0 for critical measurements."""
    h_mat: sp.csr_matrix
    lu: Any = field(repr=False)
    """SuperLU factors of the augmented matrix [[I, W^1/2 H], [H^T W^1/2, 0]] at x^."""

    @property
    def m(self) -> int:
        return len(self.residual)

    def testable(self) -> npt.NDArray[np.bool_]:
        """Rows whose residual carries information: Omega_ii > 1e-3 sigma_i^2.

        Below that a row is (nearly) critical: the others barely check it and an error would
        need > ~200 sigma to reach a normalised residual of 6.
        """
        out: npt.NDArray[np.bool_] = self.omega > 1e-3 * self.sigma**2
        return out

    def normalized_residuals(self) -> FloatArray:
        """r_i / sqrt(Omega_ii); 0 for rows that are not ``testable`` (critical rows)."""
        ok = self.testable()
        out = np.zeros_like(self.residual)
        out[ok] = self.residual[ok] / np.sqrt(self.omega[ok])
        return out

    def prediction_variance(self, h_rows: sp.csr_matrix) -> FloatArray:
        """Variance of h_j(x^) for other measurement rows h_j (p.u.^2): h_j^T G^-1 h_j.

        Solved through the augmented system as ||u||^2 with u = W^1/2 H G^-1 h_j, a sum of
        squares: never negative, and no G^-1 is formed (cond(G) reaches 1e17 with
        accurate flow sensors; the augmented matrix keeps cond(W^1/2 H) ~ 1e9).
        """
        rows = sp.csr_matrix(h_rows)
        rhs = np.zeros((self.m + rows.shape[1], rows.shape[0]))
        rhs[self.m :] = rows.toarray().T
        u = _acpf.solve_columns(self.lu, rhs)[: self.m]
        out: FloatArray = np.einsum("ij,ij->j", u, u)
        return out

    def residual_correlation(self, j: int) -> FloatArray:
        """Correlation of every row's residual with row ``j``'s.

        |rho| ~ 1 marks a critical pair: an error in one row is indistinguishable from an
        error in the other.
        """
        s_col = _projector_column(self.lu, self.m, j)
        s_diag = self.omega / self.sigma**2
        denom = np.sqrt(np.maximum(s_diag, 1e-300) * max(float(s_diag[j]), 1e-300))
        out: FloatArray = s_col / denom
        return out

    def chi2_p_value(self) -> float:
        """P(chi2(dof) >= J): small values mean bad data."""
        return float(stats.chi2.sf(self.chi2, self.dof)) if self.dof > 0 else 1.0


def _projector_column(lu: Any, m: int, j: int) -> FloatArray:
    """Column j of S = I - W^1/2 H G^-1 H^T W^1/2 (the residual sensitivity, a projector).

    From the augmented system with right-hand side [e_j; 0]: u + H~ y = e_j, H~^T u = 0, so
    u = S e_j directly, without the cancellation in 1 - (leverage).
    """
    rhs = np.zeros(lu.shape[0])
    rhs[j] = 1.0
    out: FloatArray = np.asarray(lu.solve(rhs)[:m])
    return out


def _residual_sensitivity_diagonal(lu: Any, m: int) -> FloatArray:
    """S_ii for every row i (``_projector_column``'s diagonal entry, clipped at 0)."""
    out = np.empty(m)
    n = lu.shape[0]
    for j in range(0, m, _acpf.SOLVE_BLOCK):
        k = min(_acpf.SOLVE_BLOCK, m - j)
        rhs = np.zeros((n, k), order="F")
        rhs[np.arange(j, j + k), np.arange(k)] = 1.0
        out[j:j + k] = lu.solve(rhs)[np.arange(j, j + k), np.arange(k)]
    return np.maximum(out, 0.0)


def _scale_rows(hm: sp.csr_matrix, scale: FloatArray) -> sp.csr_matrix:
    """``sp.csr_matrix(sp.diags(scale) @ hm)`` without the sparse product's set-up (a
    diagonal matrix built, converted and multiplied every Gauss-Newton step): the same
    values (each ``scale[i] * h_ij``, products that are 0 left out) in the same order within
    a row — SciPy's product (``csr_matmat``) lists a row's entries in the reverse of their
    order in ``hm`` — so ``ht @ dx`` sums each row as before (tested against the product)."""
    m = hm.shape[0]
    indptr = hm.indptr.astype(np.int64)
    counts = np.diff(indptr)
    row = np.repeat(np.arange(m), counts)
    src = (indptr[:-1] + indptr[1:] - 1)[row] - np.arange(len(row))  # each row reversed
    vals = scale[row] * hm.data[src]
    keep = vals != 0.0
    kept = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[keep], minlength=m), out=kept[1:])
    return sp.csr_matrix((vals[keep], hm.indices[src][keep], kept), shape=hm.shape)


def _augmented(h_scaled: sp.csr_matrix, damping: FloatArray | None) -> sp.csc_matrix:
    """[[I, H~], [H~^T, -D]] in canonical CSC, assembled directly: entry for entry (stored
    zeros of H~ included, zeros of -D left out) the matrix ``sp.bmat`` gives, which cost
    half of each Gauss-Newton step's factorisation (issue 17). The matrix is symmetric, so
    column j < m is row j of H~ after the unit diagonal, and column m + k is column k of
    H~ followed by -d_k."""
    m, n = h_scaled.shape
    h = h_scaled if h_scaled.has_sorted_indices else h_scaled.sorted_indices()
    hc = h.tocsc()  # rows ascending within each column
    # columns 0..m-1: the unit diagonal, then H~'s row j at rows m + k
    top_ptr = np.concatenate(([0], np.cumsum(np.diff(h.indptr) + 1)))
    unit = np.zeros(int(top_ptr[-1]), dtype=bool)
    unit[top_ptr[:-1]] = True
    top_idx = np.empty(len(unit), dtype=np.int64)
    top_val = np.empty(len(unit), dtype=np.float64)
    top_idx[unit] = np.arange(m)
    top_val[unit] = 1.0
    top_idx[~unit] = h.indices + m
    top_val[~unit] = h.data
    # columns m..m+n-1: H~'s column k, then -d_k (where not zero, as a diagonal's COO form)
    low = np.zeros(n) if damping is None else -np.asarray(damping, dtype=np.float64)
    has = low != 0.0
    bot_ptr = np.concatenate(([0], np.cumsum(np.diff(hc.indptr) + has)))
    diag = np.zeros(int(bot_ptr[-1]), dtype=bool)
    diag[bot_ptr[1:][has] - 1] = True
    bot_idx = np.empty(len(diag), dtype=np.int64)
    bot_val = np.empty(len(diag), dtype=np.float64)
    bot_idx[diag] = m + np.flatnonzero(has)
    bot_val[diag] = low[has]
    bot_idx[~diag] = hc.indices
    bot_val[~diag] = hc.data
    indptr = np.concatenate((top_ptr, top_ptr[-1] + bot_ptr[1:]))
    out = sp.csc_matrix((np.concatenate((top_val, bot_val)),
                         np.concatenate((top_idx, bot_idx)), indptr), shape=(m + n, m + n))
    return out


def _factor_augmented(h_scaled: sp.csr_matrix, damping: FloatArray | None) -> Any:
    """SuperLU of [[I, H~], [H~^T, -D]] (Hachtel's augmented form of the normal equations)."""
    a = _augmented(h_scaled, damping)
    with warnings.catch_warnings():
        warnings.simplefilter("error", spla.MatrixRankWarning)
        return spla.splu(a)


class EstimationDiverged(GridError):
    """The readings are observable but no state fits them (Gauss-Newton and
    Levenberg-Marquardt both fail): gross bad data, e.g. a meter reporting an energy the
    network cannot carry. ``detect_bad_meters`` recovers by leaving readings out."""


def _singular(acn: AcNetwork, mm: MeasurementModel, it: int) -> GridError:
    """A singular step: unobservable rows, or (observable rows) an iterate gone astray."""
    if is_observable(acn, mm):
        return EstimationDiverged(
            f"state estimation diverged: singular gain matrix at iteration {it}"
        )
    return GridError(unobservable_message(acn, mm))


_GN_STEPS = 12

STATE_RESOLUTION = 1e-10
"""A Gauss-Newton step whose largest component (p.u. of voltage, radians of angle) is below
this is at the floating-point floor of the state: the objective is stationary. The
exact-knowledge rows (zero injections, weighted 100x above the best sensor) turn the
rounding of such a step into ~1e-4 of their tiny sigma on a loaded MV network (rural-all's
evening: max|dx| ~ 1e-12 moved a zero-injection row by 1.3-2.2e-4 sigmas, step after step),
so the reading test alone is never met there although the estimate does not move (issue
17). On the quantities a state holds (|V| ~ 1, angles < 1) 1e-10 is ~5e5 ulp."""


def _gauss_newton(
    acn: AcNetwork,
    mm: MeasurementModel,
    z: FloatArray,
    inv_sigma: FloatArray,
    x_start: FloatArray,
    tol: float,
    max_iter: int,
    *,
    lm: bool,
) -> tuple[FloatArray, int, bool]:
    """Gauss-Newton iterations (``lm``: with Levenberg-Marquardt damping). Returns the best
    state seen, the iterations used, and whether it converged."""
    n_state = len(x_start)
    x = x_start
    r = z - measure(acn, mm, state_to_voltage(acn, x))
    obj = float(np.sum((r * inv_sigma) ** 2))
    best_x, best_obj = x, obj
    lam = 0.0
    for it in range(1, max_iter + 1):
        hm = jacobian(acn, mm, state_to_voltage(acn, x))
        ht = _scale_rows(hm, inv_sigma)
        g_diag: FloatArray | None = None  # the damping's scale, only once damping is on
        rhs = np.concatenate((r * inv_sigma, np.zeros(n_state)))
        for _ in range(40):
            if lam != 0.0 and g_diag is None:
                g_diag = np.asarray(ht.multiply(ht).sum(axis=0)).ravel()
            damping = None if g_diag is None or lam == 0.0 else lam * np.maximum(g_diag, 1e-30)
            try:
                lu = _factor_augmented(ht, damping)
            except (RuntimeError, spla.MatrixRankWarning):
                raise _singular(acn, mm, it) from None
            dx = lu.solve(rhs)[mm.m :]
            if not np.all(np.isfinite(dx)):
                raise _singular(acn, mm, it)
            r_new = z - measure(acn, mm, state_to_voltage(acn, x + dx))
            obj_new = float(np.sum((r_new * inv_sigma) ** 2))
            # Converged when an (at most lightly damped) update moves no predicted reading by
            # more than tol sigmas (a state-space tolerance like 1e-4 would be too loose for LV,
            # where dP/dtheta is ~1e2 p.u.); there the objective only jitters in its last
            # digits. Or when the update is at the state's floating-point floor: a stationary
            # point, which the reading test cannot see through the stiff exact rows' rounding.
            if lam <= 1e-4 and (float(np.max(np.abs(ht @ dx))) < tol
                                or float(np.max(np.abs(dx), initial=0.0)) < STATE_RESOLUTION):
                return x + dx, it, True
            if not lm or (np.isfinite(obj_new) and obj_new <= obj * (1 + 1e-6)):
                break
            lam = 1e-4 if lam == 0.0 else 10.0 * lam
        else:
            return best_x, it, False
        if not np.isfinite(obj_new):
            return best_x, it, False
        x, r, obj = x + dx, r_new, obj_new
        if obj < best_obj:
            best_x, best_obj = x, obj
        lam = 0.0 if lam <= 1e-4 else lam / 10.0
    return best_x, max_iter, False


def estimate_state(
    acn: AcNetwork,
    mm: MeasurementModel,
    z: FloatArray,
    sigma: FloatArray,
    *,
    v0: ComplexArray | None = None,
    tol: float = 1e-4,
    max_iter: int = 30,
    with_covariance: bool = True,
) -> WlsResult:
    """WLS estimate of the state from rows ``mm`` with readings ``z`` and errors ``sigma``.

    Gauss-Newton steps are solved in Hachtel's augmented form, whose conditioning is that
    of W^1/2 H rather than its square (Abur & Gómez Expósito 2004, ch. 3.4); a step that
    does not lower the objective is retried with Levenberg-Marquardt damping. Starts at the
    power flow of the measured injections unless ``v0`` is given.
    Raises ``GridError`` if the rows leave the state unobservable (naming the buses) and its
    subclass ``EstimationDiverged`` if the iteration does not converge.
    """
    st = _structure(acn)
    if mm.m < st.n_state:
        raise GridError(unobservable_message(acn, mm))
    x0 = voltage_to_state(acn, _power_flow_start(acn, mm, z) if v0 is None else v0)
    inv_sigma = 1.0 / sigma
    # Plain Gauss-Newton first: from a good start it converges in a few steps even when a
    # step raises the objective on the way (accurate sensors make the problem stiff). If it
    # has not converged after _GN_STEPS, restart from the best point with Levenberg-Marquardt
    # damping (Marquardt 1963), which only accepts steps that lower the objective.
    x, it, converged = _gauss_newton(acn, mm, z, inv_sigma, x0, tol, min(_GN_STEPS, max_iter), lm=False)
    if not converged:
        x, it2, converged = _gauss_newton(acn, mm, z, inv_sigma, x, tol, max_iter, lm=True)
        it += it2
    if not converged:
        raise EstimationDiverged(f"state estimation did not converge in {it} iterations")
    v = state_to_voltage(acn, x)
    hm = jacobian(acn, mm, v)
    r = z - measure(acn, mm, v)
    ht = _scale_rows(hm, inv_sigma)
    try:
        lu = _factor_augmented(ht, None)
    except (RuntimeError, spla.MatrixRankWarning):
        raise _singular(acn, mm, it) from None
    omega = np.zeros(mm.m)
    if with_covariance:
        # Omega_ii / sigma_i^2 = S_ii: the augmented solve of e_i (``_projector_column``),
        # every row's at once in blocks (``_acpf.solve_columns``: not on BLAS threads)
        omega = _residual_sensitivity_diagonal(lu, mm.m) * sigma**2
    return WlsResult(
        v=v,
        iterations=it,
        residual=r,
        sigma=sigma,
        chi2=float(np.sum((r * inv_sigma) ** 2)),
        dof=mm.m - st.n_state,
        omega=omega,
        h_mat=hm,
        lu=lu,
    )


def _power_flow_start(acn: AcNetwork, mm: MeasurementModel, z: FloatArray) -> ComplexArray:
    """Start at the power flow of the measured bus injections (0 where none is measured).

    From the no-load state Gauss-Newton needs several overshooting steps to reach a loaded
    feeder; from this point it converges in two or three monotone ones.
    """
    from gridledger.grid._acpf import solve_pf

    s_bus = acn.s_fixed.copy()
    p_rows = (mm.kind == P_INJ) & (mm.sign == 1.0)
    q_rows = (mm.kind == Q_INJ) & (mm.sign == 1.0)
    s_bus[mm.element[p_rows]] = z[p_rows] + 1j * s_bus[mm.element[p_rows]].imag
    s_bus[mm.element[q_rows]] = s_bus[mm.element[q_rows]].real + 1j * z[q_rows]
    sol = solve_pf(acn, s_bus)
    return sol.v if sol.converged else acn.v_start


def _rank_analysis(acn: AcNetwork, mm: MeasurementModel) -> tuple[int, FloatArray]:
    """Numerical rank of H (rows normalised) at the no-load state, and its null space."""
    hm = jacobian(acn, mm, acn.v_start).toarray()
    norms = np.linalg.norm(hm, axis=1)
    hm = hm[norms > 0] / norms[norms > 0, None]
    n = hm.shape[1]
    if hm.shape[0] == 0:
        return 0, np.eye(n)
    _, sv, vt = np.linalg.svd(hm, full_matrices=True)
    tol = max(hm.shape) * np.finfo(float).eps * float(sv[0]) * 1e3
    rank = int(np.sum(sv > tol))
    return rank, vt[rank:]


def unobservable_message(acn: AcNetwork, mm: MeasurementModel) -> str:
    """Name the buses whose voltage the measurement rows cannot determine."""
    st = _structure(acn)
    rank, null = _rank_analysis(acn, mm)
    weight = np.sum(null**2, axis=0)
    nva = len(st.non_ref)
    bus_weight = np.zeros(st.n)
    bus_weight[st.non_ref] += weight[:nva]
    bus_weight += weight[nva:]
    buses = [acn.bus_label(int(k)) for k in np.argsort(-bus_weight) if bus_weight[k] > 1e-6]
    return (
        f"measurement set is unobservable: {st.n_state - rank} of {st.n_state} state variables "
        f"cannot be estimated; affected: {', '.join(buses[:8])}"
        + (" ..." if len(buses) > 8 else "")
        + " (add P/Q meters or flow sensors there)"
    )


def is_observable(acn: AcNetwork, mm: MeasurementModel) -> bool:
    """Numerical observability: H has full column rank (checked by SVD; cache the answer)."""
    st = _structure(acn)
    if mm.m < st.n_state:
        return False
    return _rank_analysis(acn, mm)[0] == st.n_state
